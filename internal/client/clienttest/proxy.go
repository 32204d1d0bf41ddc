// Package clienttest holds test helpers for code that talks to isolationd
// through the client: proxies that lose answers, refuse requests and add
// latency, the failures a retrying client must survive without doing
// anything twice.
package clienttest

import (
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
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
	forward := reverseProxy(t, backend)
	p := &LossyProxy{lose: lose}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		drop := p.lose != nil && p.lose(r)
		p.mu.Unlock()
		rec := serve(forward, r)
		p.mu.Lock()
		if drop {
			p.lost = append(p.lost, r.Method+" "+r.URL.Path)
		} else {
			p.answered = append(p.answered, rec.Header().Clone())
		}
		p.mu.Unlock()
		if drop {
			hangUp(w)
			return
		}
		relay(w, rec)
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

// Faults are the rates (each 0 to 1) at which a FaultProxy injects each
// kind of fault into the requests it sees.
type Faults struct {
	// Unavailable requests are answered 503 without reaching the server.
	Unavailable float64
	// RateLimited requests are answered 429 with a Retry-After of 0 to
	// MaxRetryAfter seconds, without reaching the server.
	RateLimited float64
	// LostAnswer requests reach the server, which does the work; then the
	// connection is dropped without an answer.
	LostAnswer float64
	// Delayed requests wait up to MaxLatency before being forwarded. A
	// delay comes on top of the other faults, drawn apart from them.
	Delayed    float64
	MaxLatency time.Duration
	// MaxRetryAfter is the longest Retry-After of a 429, in seconds
	// (0 means 1).
	MaxRetryAfter int
	// Hold, when set, matches requests that reach the server and whose
	// answer is then held until the client hangs up: the server did the
	// work, and the client's deadline fires while it waits.
	Hold func(*http.Request) bool
}

// Mixed is rate of requests refused or answered lost, in equal shares of
// 503, 429 and lost answers, and a tenth of requests delayed up to 20ms.
func Mixed(rate float64) Faults {
	return Faults{Unavailable: rate / 3, RateLimited: rate / 3, LostAnswer: rate / 3, Delayed: 0.1, MaxLatency: 20 * time.Millisecond}
}

// FaultCounts is what a FaultProxy saw and did.
type FaultCounts struct {
	Requests    int // every request that reached the proxy
	Unavailable int // answered 503
	RateLimited int // answered 429
	LostAnswers int // done by the server, answer dropped
	Delayed     int
	Held        int
}

// Faulty is how many requests got a fault that failed them.
func (c FaultCounts) Faulty() int { return c.Unavailable + c.RateLimited + c.LostAnswers + c.Held }

// FaultProxy forwards requests to a server, injecting Faults drawn from a
// seeded source: the same seed draws the same sequence of faults, dealt
// to requests in the order they arrive.
type FaultProxy struct {
	*httptest.Server
	faults Faults

	mu     sync.Mutex
	rnd    *rand.Rand
	counts FaultCounts
}

// fault is what the proxy does to one request.
type fault int

const (
	pass fault = iota
	unavailable
	rateLimited
	lostAnswer
	held
)

// NewFaultProxy starts a fault-injecting proxy to backend; it is closed
// with the test.
func NewFaultProxy(t testing.TB, backend string, seed uint64, f Faults) *FaultProxy {
	t.Helper()
	if f.MaxRetryAfter <= 0 {
		f.MaxRetryAfter = 1
	}
	forward := reverseProxy(t, backend)
	p := &FaultProxy{faults: f, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		what, delay, retryAfter := p.draw(r)
		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-r.Context().Done():
				timer.Stop()
				return
			}
		}
		switch what {
		case unavailable:
			problem(w, http.StatusServiceUnavailable, "unavailable", "Service unavailable", "")
			return
		case rateLimited:
			problem(w, http.StatusTooManyRequests, "rate-limited", "Too many requests", strconv.Itoa(retryAfter))
			return
		}
		rec := serve(forward, r)
		switch what {
		case lostAnswer:
			hangUp(w)
		case held:
			<-r.Context().Done()
			hangUp(w)
		default:
			relay(w, rec)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

// draw deals one request its fault, under the lock so the seeded
// sequence is consumed one request at a time.
func (p *FaultProxy) draw(r *http.Request) (what fault, delay time.Duration, retryAfter int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Requests++
	f := p.faults
	if f.Hold != nil && f.Hold(r) {
		p.counts.Held++
		return held, 0, 0
	}
	x := p.rnd.Float64()
	switch {
	case x < f.Unavailable:
		what = unavailable
		p.counts.Unavailable++
	case x < f.Unavailable+f.RateLimited:
		what = rateLimited
		retryAfter = p.rnd.IntN(f.MaxRetryAfter + 1)
		p.counts.RateLimited++
	case x < f.Unavailable+f.RateLimited+f.LostAnswer:
		what = lostAnswer
		p.counts.LostAnswers++
	}
	if f.MaxLatency > 0 && p.rnd.Float64() < f.Delayed {
		delay = time.Duration(p.rnd.Int64N(int64(f.MaxLatency) + 1))
		p.counts.Delayed++
	}
	return what, delay, retryAfter
}

// Counts returns what the proxy has seen and injected so far.
func (p *FaultProxy) Counts() FaultCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts
}

func reverseProxy(t testing.TB, backend string) *httputil.ReverseProxy {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	return httputil.NewSingleHostReverseProxy(u)
}

// serve lets the server handle r in full, keeping its answer.
func serve(forward http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	forward.ServeHTTP(rec, r)
	return rec
}

// relay passes a kept answer on to the client.
func relay(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = io.Copy(w, rec.Body)
}

// hangUp closes the client's connection without an answer.
func hangUp(w http.ResponseWriter) {
	if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
		conn.Close()
	}
}

// problem answers as isolationd would, in its problem format.
func problem(w http.ResponseWriter, status int, slug, title, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"type":"https://isolationhq.dev/problems/`+slug+`","title":"`+title+`","status":`+strconv.Itoa(status)+`,"detail":"injected by the fault proxy"}`+"\n")
}
