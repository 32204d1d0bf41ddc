// Package clienttest holds test helpers for code that talks to isolationd
// through the client: a proxy that loses answers, the failure a retrying
// client must survive without doing anything twice.
package clienttest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// LossyProxy forwards requests to a server. For each request that lose
// matches, it lets the server handle it, then drops the connection without
// answering: the server did the work, the client never heard.
type LossyProxy struct {
	*httptest.Server
	lose func(*http.Request) bool

	mu       sync.Mutex
	lost     []string      // "METHOD path" of each answer thrown away
	answered []http.Header // headers of each answer passed on
}

// NewLossyProxy starts a proxy to backend; it is closed with the test.
// lose may be nil: then nothing is lost. It is called with the proxy's
// lock held, one request at a time.
func NewLossyProxy(t testing.TB, backend string, lose func(*http.Request) bool) *LossyProxy {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &LossyProxy{lose: lose}
	forward := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		p.mu.Lock()
		drop := p.lose != nil && p.lose(r)
		p.mu.Unlock()
		forward.ServeHTTP(rec, r)
		p.mu.Lock()
		if drop {
			p.lost = append(p.lost, r.Method+" "+r.URL.Path)
		} else {
			p.answered = append(p.answered, rec.Header().Clone())
		}
		p.mu.Unlock()
		if drop {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, rec.Body)
	}))
	t.Cleanup(p.Close)
	return p
}

// Lost lists the requests whose answers were thrown away.
func (p *LossyProxy) Lost() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lost...)
}

// Answered lists the headers of every answer passed on to the client.
func (p *LossyProxy) Answered() []http.Header {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]http.Header(nil), p.answered...)
}

// First matches only the first request that match matches, so a retry of
// it goes through.
func First(match func(*http.Request) bool) func(*http.Request) bool {
	done := false
	return func(r *http.Request) bool {
		if done || !match(r) {
			return false
		}
		done = true
		return true
	}
}
