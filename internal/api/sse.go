package api

import (
	"fmt"
	"net/http"
	"time"
)

// sseStream is one Server-Sent Events answer, with what every watch
// shares: the headers, a comment every 15 s to keep proxies from closing
// the stream, and its ends (the server closing, the client gone, the
// token revoked or expired).
type sseStream struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	done      <-chan struct{}
	closing   <-chan struct{}
	revoked   <-chan struct{}
	expired   <-chan time.Time
	keepalive *time.Ticker
	stop      func() bool
}

// startSSE writes the stream's headers; close releases its timers.
func (a *API) startSSE(w http.ResponseWriter, r *http.Request) *sseStream {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	s := &sseStream{w: w, rc: http.NewResponseController(w), done: r.Context().Done(), closing: a.closing,
		revoked: a.revocation(r), keepalive: time.NewTicker(15 * time.Second)}
	s.expired, s.stop = a.expiry(r)
	return s
}

func (s *sseStream) close() {
	s.keepalive.Stop()
	s.stop()
}

// send writes events and flushes them; false means the client is gone.
func (s *sseStream) send(events []byte) bool {
	if _, err := s.w.Write(events); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// wait blocks until changed fires (true) or the stream must end (false),
// sending keepalive comments meanwhile.
func (s *sseStream) wait(changed <-chan struct{}) bool {
	for {
		select {
		case <-changed:
			return true
		case <-s.keepalive.C:
			if !s.send([]byte(": keepalive\n\n")) {
				return false
			}
		case <-s.closing:
			return false
		case <-s.done:
			return false
		case <-s.revoked:
			return false
		case <-s.expired:
			return false
		}
	}
}

// sseEvent formats one event; id is left out when "".
func sseEvent(name, id string, data []byte) []byte {
	if id != "" {
		return fmt.Appendf(nil, "event: %s\nid: %s\ndata: %s\n\n", name, id, data)
	}
	return fmt.Appendf(nil, "event: %s\ndata: %s\n\n", name, data)
}
