package client_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
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

// adminClient is a client of srv's admin token that talks to it directly.
func adminClient(t *testing.T, srv *server.Server) *client.Client {
	t.Helper()
	return newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
}

// losingFirstAnswer is an admin client of srv through a proxy that loses
// the answer to the first request matching lose; the client retries at
// once, so the retry meets the server's record of the lost one.
func losingFirstAnswer(t *testing.T, srv *server.Server, lose func(*http.Request) bool) (*clienttest.LossyProxy, *client.Client) {
	t.Helper()
	proxy := clienttest.NewLossyProxy(t, srv.URL(), clienttest.First(lose))
	return proxy, newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond})
}

func TestCreate_RetryAfterALostAnswerReplaysInsteadOfDuplicating(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy, c := losingFirstAnswer(t, srv, func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Path == "/v1/projects"
	})
	p, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatalf("create through a lossy network: %v", err)
	}

	direct := adminClient(t, srv)
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
	direct := adminClient(t, srv)
	p, err := direct.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	proxy, c := losingFirstAnswer(t, srv, func(r *http.Request) bool {
		return r.Method == http.MethodPatch
	})
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
	c := adminClient(t, srv)
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

func TestTokens_CreateUseListRevoke(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	admin := adminClient(t, srv)
	ctx := t.Context()
	p, err := admin.Projects().Create(ctx, apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := admin.Tokens().Create(ctx, apiv1.TokenCreate{Name: "ci", Role: apiv1.RoleViewer, ProjectID: p.ID})
	if err != nil || tc.Secret == "" || tc.ETag == "" {
		t.Fatalf("create: %+v %v", tc, err)
	}
	viewer := newClient(t, client.Config{Endpoint: srv.URL(), Token: tc.Secret, MaxRetries: -1})
	if _, err := viewer.Projects().Get(ctx, p.ID); err != nil {
		t.Fatalf("the new token cannot read its project: %v", err)
	}
	// Lacking the role, the error says which role is needed.
	_, err = viewer.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"})
	if client.StatusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "requires role editor") {
		t.Fatalf("viewer creating an environment: %v", err)
	}
	if strings.Contains(err.Error(), tc.Secret) {
		t.Fatal("the error holds the secret")
	}
	got, err := admin.Tokens().Get(ctx, tc.ID)
	if err != nil || got.Name != "ci" || got.ProjectID != p.ID {
		t.Fatalf("get: %+v %v", got, err)
	}
	list, err := admin.Tokens().List(ctx, client.ListOptions{ProjectID: p.ID})
	if err != nil || len(list) != 1 || list[0].ID != tc.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := admin.Tokens().Delete(ctx, tc.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := viewer.Projects().Get(ctx, p.ID); client.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("revoked token: %v, want 401", err)
	}
	if _, err := admin.Tokens().Get(ctx, tc.ID); !client.IsNotFound(err) {
		t.Fatalf("get revoked: %v, want 404", err)
	}
}

func TestTokens_CreateAfterALostAnswerRevokesTheSecretlessTokenAndMakesAnother(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy, c := losingFirstAnswer(t, srv, func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Path == "/v1/tokens"
	})
	tc, err := c.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: "pipeline", Role: apiv1.RoleAuditor})
	if err != nil || tc.Secret == "" {
		t.Fatalf("create through a lossy network: %+v %v", tc, err)
	}
	all, err := c.Tokens().List(t.Context(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, tok := range all {
		if tok.Name == "pipeline" {
			named = append(named, tok.ID)
		}
	}
	if len(named) != 1 || named[0] != tc.ID {
		t.Fatalf("live tokens named pipeline: %v, want only %s (the secretless one revoked)", named, tc.ID)
	}
	works := newClient(t, client.Config{Endpoint: srv.URL(), Token: tc.Secret})
	if _, err := works.Projects().List(t.Context(), client.ListOptions{}); err != nil {
		t.Fatalf("the secret returned does not work: %v", err)
	}
	if lost := proxy.Lost(); len(lost) != 1 {
		t.Fatalf("lost %v: the test proved nothing", lost)
	}
}

func TestFaultProxy_CreatesThroughEveryKindOfFaultLandOnceEach(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy := clienttest.NewFaultProxy(t, srv.URL(), 7, clienttest.Mixed(0.35))
	c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), RetryWaitMin: time.Millisecond, RetryWaitMax: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const n = 60
	for i := range n {
		if _, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: fmt.Sprintf("p-%d", i)}); err != nil {
			t.Fatalf("create %d through the fault proxy: %v", i, err)
		}
	}
	direct := adminClient(t, srv)
	all, err := direct.Projects().List(ctx, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("server holds %d projects after %d creates: duplicates or losses", len(all), n)
	}
	got := proxy.Counts()
	if got.Unavailable == 0 || got.RateLimited == 0 || got.LostAnswers == 0 || got.Delayed == 0 {
		t.Fatalf("counts %+v: every kind of fault must have been injected", got)
	}
	if got.Requests < n+got.Faulty() {
		t.Fatalf("counts %+v: fewer requests than creates plus their faulty attempts", got)
	}
	t.Logf("%d creates: %+v", n, got)
}

func TestFaultProxy_TheSameSeedDealsTheSameFaults(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	run := func(seed uint64) clienttest.FaultCounts {
		proxy := clienttest.NewFaultProxy(t, srv.URL(), seed, clienttest.Mixed(0.5))
		// No retries: one request per call, in order, so the faults line up.
		c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), MaxRetries: -1})
		for range 40 {
			_, _ = c.Projects().List(t.Context(), client.ListOptions{})
		}
		return proxy.Counts()
	}
	a, b, other := run(11), run(11), run(12)
	if a != b {
		t.Fatalf("seed 11 dealt %+v, then %+v", a, b)
	}
	if a == other {
		t.Fatalf("seeds 11 and 12 dealt the same faults %+v: the seed does nothing", a)
	}
}

func TestFaultProxy_HoldKeepsTheAnswerUntilTheClientGivesUp(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy := clienttest.NewFaultProxy(t, srv.URL(), 1, clienttest.Faults{Hold: func(r *http.Request) bool { return r.Method == http.MethodPost }})
	c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken()})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "held"})
	key, unknown := client.UnknownOutcome(err)
	if !unknown {
		t.Fatalf("create = %v, want an unknown outcome", err)
	}
	// The server did it: the key says so, with the project made.
	direct := adminClient(t, srv)
	rec, err := direct.IdempotencyKeys().WaitSettled(t.Context(), key)
	if err != nil || rec.State != apiv1.IdempotencyCommitted || rec.ResourceID == "" {
		t.Fatalf("key %s: %+v, %v; want committed with the project", key, rec, err)
	}
	if p, err := direct.Projects().Get(t.Context(), rec.ResourceID); err != nil || p.Name != "held" {
		t.Fatalf("project %s = %+v, %v", rec.ResourceID, p, err)
	}
	if got := proxy.Counts(); got.Held != 1 {
		t.Fatalf("counts %+v, want one held answer", got)
	}
}

func TestWhoAmI_NamesTheTokensRoleAndScopeAndTheServerWithItsDriverAndRuntime(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	admin := adminClient(t, srv)
	who, err := admin.WhoAmI(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if who.Role != apiv1.RoleAdmin || who.ProjectID != "" || who.Server.Name != "isolationd" || who.Server.Version == "" ||
		who.Server.Driver != apiv1.DriverSimulate || who.Server.Runtime != apiv1.RuntimeSimulate {
		t.Errorf("admin whoami = %+v", who)
	}

	p, err := admin.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "scope"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: "viewer", Role: apiv1.RoleViewer, ProjectID: p.ID})
	if err != nil {
		t.Fatal(err)
	}
	viewer := newClient(t, client.Config{Endpoint: srv.URL(), Token: tok.Secret})
	if who, err = viewer.WhoAmI(t.Context()); err != nil || who.TokenID != tok.ID || who.ProjectID != p.ID || who.Role != apiv1.RoleViewer {
		t.Errorf("viewer whoami = %+v, %v; want token %s of project %s", who, err, tok.ID, p.ID)
	}
}

func TestWhoAmI_ARefusedTokenIs401(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	c := newClient(t, client.Config{Endpoint: srv.URL(), Token: "isot_nobody-was-given-this", MaxRetries: -1})
	_, err := c.WhoAmI(t.Context())
	if client.StatusCode(err) != http.StatusUnauthorized || errors.Is(err, client.ErrNotIsolationd) {
		t.Fatalf("err = %v, want a 401 from isolationd", err)
	}
}

func TestWhoAmI_AnEndpointThatIsNotIsolationdIsErrNotIsolationd(t *testing.T) {
	t.Parallel()
	const secret = "isot_secret-that-must-not-leak"
	site := fstest.MapFS{
		"v1":         {Mode: fs.ModeDir | 0o755},
		"index.html": {Data: []byte("<html><body>hello</body></html>")},
	}
	// The handlers ignore write errors: what reaches the client is what the
	// test judges.
	cases := map[string]http.Handler{
		// A plain file server: its 404 is text, not a problem document.
		"static file server": http.FileServerFS(site),
		// A site whose every page is the same HTML with 200.
		"HTML for every path": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<!doctype html><title>Welcome</title>"))
		}),
		// Another JSON API.
		"another JSON API": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"42","status":"ok"}`))
		}),
		// An endpoint that echoes the request, token included, in its 404.
		"echoing 404": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "not found: "+r.Header.Get("Authorization"), http.StatusNotFound)
		}),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := httptest.NewServer(h)
			t.Cleanup(fake.Close)
			c := newClient(t, client.Config{Endpoint: fake.URL, Token: secret, MaxRetries: -1})
			who, err := c.WhoAmI(t.Context())
			if !errors.Is(err, client.ErrNotIsolationd) {
				t.Fatalf("WhoAmI = %+v, %v; want ErrNotIsolationd", who, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error shows the token: %v", err)
			}
			t.Log(err)
		})
	}
}

// The provider shows a refused token's error as the client renders it, so
// the server's word for why (revoked, unknown) reaches the user, and never
// the secret.
func TestErrors_A401SaysWhyTheTokenWasRefused(t *testing.T) {
	srv := startServer(t, server.Config{})
	ctx := context.Background()
	admin := adminClient(t, srv)
	tc, err := admin.Tokens().Create(ctx, apiv1.TokenCreate{Name: "ci", Role: apiv1.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Tokens().Delete(ctx, tc.ID, ""); err != nil {
		t.Fatal(err)
	}
	for secret, want := range map[string]string{
		tc.Secret: "token revoked",
		"isot_nobody-issued-this-secret-0123456789": "unknown token",
	} {
		_, err := newClient(t, client.Config{Endpoint: srv.URL(), Token: secret}).Projects().List(ctx, client.ListOptions{})
		if client.StatusCode(err) != 401 || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), secret) {
			t.Fatalf("error %v, want a 401 saying %q without the secret", err, want)
		}
	}
}

func TestEnvironments_CarryTheWorkloadAndMaxProcessesAndAPatchReplacesOrRemovesTheWorkload(t *testing.T) {
	t.Parallel()
	c := adminClient(t, startServer(t, server.Config{}))
	ctx := t.Context()
	p, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "work"})
	if err != nil {
		t.Fatal(err)
	}
	procs := int64(64)
	env, err := c.Environments().Create(ctx, apiv1.EnvironmentCreate{
		ProjectID: p.ID, Name: "app", Resources: &apiv1.ResourcesSpec{MaxProcesses: &procs},
		Workload: &apiv1.WorkloadSpec{Image: "busybox", Command: []string{"sh", "-c", "sleep 60"}, Env: map[string]string{"A": "1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ready, err := c.Environments().WaitFor(ctx, env.ID, apiv1.StateReady)
	if err != nil {
		t.Fatal(err)
	}
	w := ready.Workload
	if w == nil || w.Image != "busybox" || len(w.Command) != 3 || w.Env["A"] != "1" || w.Restart != apiv1.RestartAlways ||
		w.State != apiv1.WorkloadNotRun || ready.Resources.MaxProcesses != 64 || ready.Enforcement.Runtime != apiv1.RuntimeSimulate {
		t.Fatalf("created = %+v (workload %+v), want the workload recorded, not run, and max_processes 64", ready, w)
	}

	// A new spec replaces the old one whole: the command goes with it.
	replaced, err := c.Environments().Update(ctx, env.ID, apiv1.EnvironmentPatch{Workload: apiv1.Some(apiv1.WorkloadSpec{Image: "busybox:2"})}, ready.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if w := replaced.Workload; w == nil || w.Image != "busybox:2" || w.Command != nil {
		t.Fatalf("replaced workload = %+v, want busybox:2 and no command", w)
	}
	if ready, err = c.Environments().WaitFor(ctx, env.ID, apiv1.StateReady); err != nil {
		t.Fatal(err)
	}
	// An absent workload keeps it; null removes it.
	desc := "kept"
	kept, err := c.Environments().Update(ctx, env.ID, apiv1.EnvironmentPatch{Description: &desc}, ready.ETag)
	if err != nil || kept.Workload == nil || kept.Workload.Image != "busybox:2" {
		t.Fatalf("after a patch without workload: %+v, %v; want the workload kept", kept, err)
	}
	if ready, err = c.Environments().WaitFor(ctx, env.ID, apiv1.StateReady); err != nil {
		t.Fatal(err)
	}
	removed, err := c.Environments().Update(ctx, env.ID, apiv1.EnvironmentPatch{Workload: apiv1.Null[apiv1.WorkloadSpec]()}, ready.ETag)
	if err != nil || removed.Workload != nil {
		t.Fatalf("after a patch with workload null: %+v, %v; want no workload", removed, err)
	}
}
