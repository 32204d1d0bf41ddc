package siemtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"
)

// Webhook is an HTTPS receiver of SIEM webhook batches on loopback, with
// the PKI's server certificate, requiring a client certificate of its CA.
// It answers 500 to the first Fails requests, then 429 with Retry-After:
// 1 to the next Throttles, then 200, each after Delay; it checks each
// accepted batch's HMAC-SHA256 signature under Secret.
type Webhook struct {
	URL string
	srv *httptest.Server

	mu                      sync.Mutex
	fails, throttles, calls int
	delay                   time.Duration
	secret                  string
	accepted                []json.RawMessage
	batches                 []string
	badSignatures           int
	throttledAt, resumedAt  time.Time
}

// WebhookOptions script a Webhook's answers.
type WebhookOptions struct {
	Fails, Throttles int
	Delay            time.Duration
	Secret           string
}

// Header names, as internal/siem sends them (kept apart so a test checks
// the wire, not the sender's constant).
const (
	signatureHeader = "X-Isolationd-Signature-256"
	batchHeader     = "X-Isolationd-Batch"
)

// StartWebhook starts a receiver; the test's cleanup stops it.
func StartWebhook(t testing.TB, pki PKI, o WebhookOptions) *Webhook {
	t.Helper()
	w := &Webhook{fails: o.Fails, throttles: o.Throttles, delay: o.Delay, secret: o.Secret}
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(w.serve))
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	w.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	w.srv.StartTLS()
	t.Cleanup(w.srv.Close)
	w.URL = w.srv.URL
	return w
}

func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if w.delay > 0 {
		t := time.NewTimer(w.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	switch {
	case w.calls <= w.fails:
		rw.WriteHeader(http.StatusInternalServerError)
		return
	case w.calls <= w.fails+w.throttles:
		w.throttledAt = time.Now()
		rw.Header().Set("Retry-After", "1")
		rw.WriteHeader(http.StatusTooManyRequests)
		return
	}
	if w.resumedAt.IsZero() && w.throttles > 0 {
		w.resumedAt = time.Now()
	}
	m := hmac.New(sha256.New, []byte(w.secret))
	m.Write(body)
	if w.secret != "" && r.Header.Get(signatureHeader) != "sha256="+hex.EncodeToString(m.Sum(nil)) {
		w.badSignatures++
	}
	var recs []json.RawMessage
	if err := json.Unmarshal(body, &recs); err != nil {
		rw.WriteHeader(http.StatusBadRequest)
		return
	}
	w.accepted = append(w.accepted, recs...)
	w.batches = append(w.batches, r.Header.Get(batchHeader))
}

// Accepted are the records of every batch answered 200, in order.
func (w *Webhook) Accepted() []json.RawMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]json.RawMessage(nil), w.accepted...)
}

// Batches are the batch headers of the batches answered 200.
func (w *Webhook) Batches() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.batches...)
}

// BadSignatures counts accepted batches whose signature was wrong.
func (w *Webhook) BadSignatures() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.badSignatures
}

// RetryWait is how long after the last 429 the next request came.
func (w *Webhook) RetryWait() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resumedAt.Sub(w.throttledAt)
}

// Calls counts requests answered so far.
func (w *Webhook) Calls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls
}

// BySeq reads the accepted records as OCSF: the ids (metadata.uid) of
// each sequence's copies, and the sequences in the order accepted.
func (w *Webhook) BySeq() (ids map[int64][]string, order []int64, err error) {
	ids = map[int64][]string{}
	for _, raw := range w.Accepted() {
		var ev struct {
			Metadata struct {
				UID      string `json:"uid"`
				Sequence int64  `json:"sequence"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, nil, err
		}
		ids[ev.Metadata.Sequence] = append(ids[ev.Metadata.Sequence], ev.Metadata.UID)
		order = append(order, ev.Metadata.Sequence)
	}
	return ids, order, nil
}
