package client_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/client/clienttest"
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

// newClient is a client of cfg, failing the test if the config is refused.
func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCreate_RetryAfterALostAnswerReplaysInsteadOfDuplicating(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy := clienttest.NewLossyProxy(t, srv.URL(), clienttest.First(func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Path == "/v1/projects"
	}))
	c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond})
	p, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatalf("create through a lossy network: %v", err)
	}

	direct := newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	all, err := direct.Projects().List(t.Context(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].ID != p.ID {
		t.Fatalf("server holds %d projects %+v, want exactly the one created (%s)", len(all), all, p.ID)
	}
	if lost, answered := proxy.Lost(), proxy.Answered(); len(lost) != 1 || len(answered) != 1 || answered[0].Get("Idempotent-Replayed") != "true" {
		t.Fatalf("lost %v, then answered %v: want one lost create and one idempotent replay", lost, answered)
	}
}

func TestUpdate_RetryAfterALostAnswerReplaysInsteadOfFailingItsOwnIfMatch(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	direct := newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	p, err := direct.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	proxy := clienttest.NewLossyProxy(t, srv.URL(), clienttest.First(func(r *http.Request) bool {
		return r.Method == http.MethodPatch
	}))
	c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond})
	desc := "card payments"
	got, err := c.Projects().Update(t.Context(), p.ID, apiv1.ProjectPatch{Description: &desc}, p.ETag)
	if err != nil {
		t.Fatalf("update through a lossy network: %v", err)
	}
	if got.Description != desc || got.Generation != p.Generation+1 {
		t.Fatalf("answer %+v, want the description changed once (generation %d)", got, p.Generation+1)
	}
	now, err := direct.Projects().Get(t.Context(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if now.Generation != p.Generation+1 {
		t.Fatalf("server at generation %d, want %d: the retry changed it again", now.Generation, p.Generation+1)
	}
	if lost, answered := proxy.Lost(), proxy.Answered(); len(lost) != 1 || len(answered) != 1 || answered[0].Get("Idempotent-Replayed") != "true" {
		t.Fatalf("lost %v, then answered %v: want one lost update and one idempotent replay", lost, answered)
	}
}

func TestDo_RateLimitedClientWaitsRetryAfterAndSucceeds(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{RateLimit: 2, RateBurst: 1})
	proxy := clienttest.NewLossyProxy(t, srv.URL(), nil)
	c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), MaxRetries: 5, RetryWaitMin: time.Millisecond, RetryWaitMax: 2 * time.Millisecond})
	for i := range 3 {
		if _, err := c.Projects().List(t.Context(), client.ListOptions{}); err != nil {
			t.Fatalf("list %d under a rate limit: %v", i, err)
		}
	}
	var limited int
	for _, h := range proxy.Answered() {
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
	c := newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
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
