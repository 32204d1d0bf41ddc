package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// These tests run the client against the real isolationd, in-process on a
// loopback listener with its SQLite store in a temporary directory.

func startServer(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	srv, err := server.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("starting isolationd: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// lossyProxy forwards to the server, but for the first request matching
// lose it throws the server's answer away and drops the connection: the
// server did the work, the client never heard of it.
type lossyProxy struct {
	*httptest.Server
	mu   sync.Mutex
	lost bool
	seen []http.Header // response headers the client did receive
	lose func(*http.Request) bool
}

func newLossyProxy(t *testing.T, backend string, lose func(*http.Request) bool) *lossyProxy {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{lose: lose}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		drop := !p.lost && p.lose(r)
		if drop {
			p.lost = true
		}
		p.mu.Unlock()
		if drop {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r) // the server handles it...
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // ...and the answer is lost
			}
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		p.mu.Lock()
		p.seen = append(p.seen, rec.Header().Clone())
		p.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, rec.Body)
	}))
	t.Cleanup(p.Close)
	return p
}

func TestCreate_RetryAfterALostAnswerReplaysInsteadOfDuplicating(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy := newLossyProxy(t, srv.URL(), func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Path == "/v1/projects"
	})
	c, err := client.New(client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatalf("create through a lossy network: %v", err)
	}

	direct, err := client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	if err != nil {
		t.Fatal(err)
	}
	all, err := direct.Projects().List(t.Context(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].ID != p.ID {
		t.Fatalf("server holds %d projects %+v, want exactly the one created (%s)", len(all), all, p.ID)
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if len(proxy.seen) != 1 || proxy.seen[0].Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the retried create was not answered by an idempotent replay: %v", proxy.seen)
	}
}

func TestDo_RateLimitedClientWaitsRetryAfterAndSucceeds(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{RateLimit: 2, RateBurst: 1})
	proxy := newLossyProxy(t, srv.URL(), func(*http.Request) bool { return false })
	c, err := client.New(client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), MaxRetries: 5, RetryWaitMin: time.Millisecond, RetryWaitMax: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.Projects().List(t.Context(), client.ListOptions{}); err != nil {
			t.Fatalf("list %d under a rate limit: %v", i, err)
		}
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	var limited int
	for _, h := range proxy.seen {
		if h.Get("Retry-After") != "" {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("the server never rate-limited the client; the test proved nothing")
	}
}

func TestEnvironments_WaitForRidesTheServersLongPoll(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	c, err := client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "wait"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := c.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	ready, err := c.Environments().WaitFor(ctx, env.ID, apiv1.StateReady)
	if err != nil || ready.State != apiv1.StateReady || ready.Enforcement.Address == "" {
		t.Fatalf("WaitFor = %+v, %v", ready, err)
	}
	if err := c.Environments().Delete(ctx, env.ID, ready.ETag); err != nil {
		t.Fatal(err)
	}
	if err := c.Environments().WaitDeleted(ctx, env.ID); err != nil {
		t.Fatalf("WaitDeleted: %v", err)
	}
	if _, err := c.Environments().Get(ctx, env.ID); !client.IsNotFound(err) {
		t.Fatalf("Get after WaitDeleted = %v, want 404", err)
	}
	if err := c.Projects().Delete(ctx, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ready.ETag, `"`) {
		t.Fatalf("ETag %q is not a quoted strong ETag", ready.ETag)
	}
}
