package api_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, to scan a PostgreSQL store

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/logbuf"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func bearer(secret string) []string { return []string{"Authorization", "Bearer " + secret} }

func (h *harness) apiToken(name, role, projectID string) apiv1.TokenCreated {
	h.t.Helper()
	var tc apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: name, Role: role, ProjectID: projectID}).json(h.t, 201, &tc)
	return tc
}

func TestTokens_SecretIsShownOnceAndOnlyItsHashIsStored(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	r := h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "ci", Role: apiv1.RoleEditor, ProjectID: p.ID, ExpiresAt: &exp})
	var tc apiv1.TokenCreated
	r.json(t, 201, &tc)
	if !strings.HasPrefix(tc.Secret, auth.SecretPrefix) || tc.ID == "" || tc.Role != apiv1.RoleEditor || tc.ProjectID != p.ID || !tc.ExpiresAt.Equal(exp) {
		t.Fatalf("created %+v", tc)
	}
	if r.header.Get("Location") != "/v1/tokens/"+tc.ID || r.header.Get("ETag") != tc.ETag {
		t.Fatalf("headers %v", r.header)
	}

	// The secret works, and is never shown again.
	h.do("GET", "/v1/environments", nil, bearer(tc.Secret)...).json(t, 200, nil)
	got := h.do("GET", "/v1/tokens/"+tc.ID, nil)
	var read apiv1.Token
	got.json(t, 200, &read)
	if diff := cmp.Diff(tc.Token, read); diff != "" {
		t.Errorf("read differs from created (-created +read):\n%s", diff)
	}
	var list apiv1.List[apiv1.Token]
	h.do("GET", "/v1/tokens?project_id="+p.ID, nil).json(t, 200, &list)
	if len(list.Items) != 1 || list.Items[0].ID != tc.ID {
		t.Fatalf("list %+v", list.Items)
	}
	for _, b := range [][]byte{got.body, h.do("GET", "/v1/tokens", nil).body} {
		if bytes.Contains(b, []byte(tc.Secret)) || bytes.Contains(b, []byte(`"secret"`)) {
			t.Fatalf("a read shows the secret: %s", b)
		}
	}

	// The store keeps the SHA-256 and nothing from which the secret follows.
	rec, err := h.srv.Store().GetToken(context.Background(), tc.ID)
	must(t, err)
	if rec.Hash != auth.HashSecret(tc.Secret) {
		t.Fatalf("stored hash %q is not the SHA-256 of the secret", rec.Hash)
	}
	h.assertNotStored(t, tc.Secret, h.token)
}

// assertNotStored scans every file the server wrote (the database and
// its WAL included; the admin token file, which exists to hold the
// admin's secret, aside) and, on a PostgreSQL store, every row of every
// table, for the secrets in clear text (or, in a BYTEA column's text, in
// hex).
func (h *harness) assertNotStored(t *testing.T, secrets ...string) {
	t.Helper()
	err := filepath.Walk(h.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Base(path) == server.AdminTokenFile {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a token secret in clear text", path)
			}
		}
		return nil
	})
	must(t, err)
	if h.dsn == "" {
		return
	}
	db, err := sql.Open("pgx", h.dsn)
	must(t, err)
	defer db.Close()
	var tables []string
	rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)
	must(t, err)
	for rows.Next() {
		var name string
		must(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	must(t, rows.Err())
	rows.Close()
	if len(tables) == 0 {
		t.Fatal("the PostgreSQL store has no tables to scan")
	}
	for _, table := range tables {
		rows, err := db.Query("SELECT t::text FROM " + pgx.Identifier{table}.Sanitize() + " AS t") //nolint:gosec // G202: a table name from information_schema, quoted by pgx.Identifier
		must(t, err)
		for rows.Next() {
			var row string
			must(t, rows.Scan(&row))
			for _, s := range secrets {
				if strings.Contains(row, s) || strings.Contains(row, hex.EncodeToString([]byte(s))) {
					t.Errorf("table %s of the PostgreSQL store holds a token secret in clear text", table)
				}
			}
		}
		must(t, rows.Err())
		rows.Close()
	}
}

func TestTokens_RevocationRefusesTheVeryNextRequest(t *testing.T) {
	h := newHarness(t)
	tc := h.apiToken("doomed", apiv1.RoleAuditor, "")
	// Warm the authentication cache, then hammer the API with the token
	// while it is revoked (bounded: 100 requests before, 100 after): a
	// request sent after DELETE answered must be refused, whatever the
	// cache held or was filling in.
	h.do("GET", "/v1/projects", nil, bearer(tc.Secret)...).json(t, 200, nil)
	var revoked atomic.Bool
	var sent, sentAfter, lateSuccesses atomic.Int64
	warm := make(chan struct{})
	var warmOnce sync.Once
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 400 {
				if sentAfter.Load() >= 100 {
					return
				}
				after := revoked.Load()
				req, _ := http.NewRequest("GET", h.url+"/v1/projects", nil)
				req.Header.Set("Authorization", "Bearer "+tc.Secret)
				res, err := h.client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				if sent.Add(1) == 100 {
					warmOnce.Do(func() { close(warm) })
				}
				if after {
					if res.StatusCode != http.StatusUnauthorized {
						lateSuccesses.Add(1)
					}
					sentAfter.Add(1)
				}
			}
		}()
	}
	<-warm
	h.do("DELETE", "/v1/tokens/"+tc.ID, nil).json(t, 204, nil)
	revoked.Store(true)
	h.do("GET", "/v1/projects", nil, bearer(tc.Secret)...).problem(t, 401, "unauthorized", "")
	wg.Wait()
	if n := lateSuccesses.Load(); n > 0 {
		t.Fatalf("%d requests sent after the revocation answered were served", n)
	}
	h.do("GET", "/v1/tokens/"+tc.ID, nil).problem(t, 404, "not-found", "")
	h.do("DELETE", "/v1/tokens/"+tc.ID, nil).problem(t, 404, "not-found", "")
	var list apiv1.List[apiv1.Token]
	h.do("GET", "/v1/tokens", nil).json(t, 200, &list)
	for _, tok := range list.Items {
		if tok.ID == tc.ID {
			t.Fatal("a revoked token is still listed")
		}
	}
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=token.revoke&resource_id="+tc.ID, nil).json(t, 200, &evs)
	if len(evs.Items) != 1 || evs.Items[0].Actor.Name != server.BootstrapTokenName {
		t.Fatalf("revocation events %+v", evs.Items)
	}
}

func TestTokens_RevocationEndsTheWaitsAndWatchesTheTokenOpened(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	env := h.environment(p.ID, "web", nil)
	h.wait(env.ID, "ready")
	tc := h.apiToken("watcher", apiv1.RoleViewer, p.ID)
	watchEnded, waited := h.openLongRequests(env.ID, tc.Secret)
	h.do("DELETE", "/v1/tokens/"+tc.ID, nil).json(t, 204, nil)
	if a := <-waited; a.status != http.StatusUnauthorized {
		t.Fatalf("a wait_for of the revoked token answered %d, want 401 as soon as it was revoked", a.status)
	}
	if err := <-watchEnded; err != nil {
		t.Fatalf("the watch of the revoked token did not end cleanly: %v", err)
	}
}

func TestTokens_ExpiredTokensAreRefused(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().UTC())
	h := newHarness(t, func(c *server.Config) { c.Clock = clock })
	exp := clock.Now().Add(1500 * time.Millisecond)
	tc := h.apiToken("brief", apiv1.RoleAuditor, "")
	var brief apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "briefer", Role: apiv1.RoleAuditor, ExpiresAt: &exp}).json(t, 201, &brief)
	h.do("GET", "/v1/projects", nil, bearer(brief.Secret)...).json(t, 200, nil)
	clock.Advance(1500 * time.Millisecond) // the token's lifetime
	h.do("GET", "/v1/projects", nil, bearer(brief.Secret)...).problem(t, 401, "unauthorized", "")
	h.do("GET", "/v1/projects", nil, bearer(tc.Secret)...).json(t, 200, nil)

	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=auth.denied", nil).json(t, 200, &evs)
	if len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Reason, "expired") || evs.Items[0].StatusCode != 401 {
		t.Fatalf("denials %+v", evs.Items)
	}
}

func TestTokens_BadInputIsRejectedNamingTheFieldAndChangesNothing(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	past := time.Now().Add(-time.Second)
	before := h.snapshot() + tokenSnapshot(h)
	cases := []struct {
		name   string
		body   any
		status int
		slug   string
		field  string
	}{
		{"unknown role", apiv1.TokenCreate{Name: "t", Role: "owner"}, 400, "validation", "role"},
		{"editor without project", apiv1.TokenCreate{Name: "t", Role: apiv1.RoleEditor}, 400, "validation", "project_id"},
		{"admin with a project", apiv1.TokenCreate{Name: "t", Role: apiv1.RoleAdmin, ProjectID: p.ID}, 400, "validation", "project_id"},
		{"bad name", apiv1.TokenCreate{Name: "Not A Name", Role: apiv1.RoleAuditor}, 400, "validation", "name"},
		{"expiry in the past", apiv1.TokenCreate{Name: "t", Role: apiv1.RoleAuditor, ExpiresAt: &past}, 400, "validation", "expires_at"},
		{"missing project", apiv1.TokenCreate{Name: "t", Role: apiv1.RoleViewer, ProjectID: "prj_missing"}, 404, "not-found", "project_id"},
		{"unknown field", `{"name":"t","role":"auditor","secret":"mine"}`, 400, "malformed-request", "secret"},
		{"wrong type", `{"name":"t","role":"auditor","expires_at":5}`, 400, "malformed-request", "expires_at"},
		{"not a time", `{"name":"t","role":"auditor","expires_at":"tomorrow"}`, 400, "malformed-request", "expires_at"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.do("POST", "/v1/tokens", tc.body).problem(t, tc.status, tc.slug, tc.field)
		})
	}
	if after := h.snapshot() + tokenSnapshot(h); after != before {
		t.Fatalf("rejected requests changed the store:\nbefore %s\nafter  %s", before, after)
	}
}

func tokenSnapshot(h *harness) string {
	recs, _, err := h.srv.Store().ListTokens(context.Background(), store.ListQuery{Limit: store.MaxLimit})
	must(h.t, err)
	b, _ := json.Marshal(recs)
	return string(b)
}

func TestTokens_IdempotentReplayAnswersTheTokenWithoutItsSecret(t *testing.T) {
	h := newHarness(t)
	body := apiv1.TokenCreate{Name: "pipeline", Role: apiv1.RoleAuditor}
	var first, again apiv1.TokenCreated
	h.do("POST", "/v1/tokens", body, "Idempotency-Key", "tk1").json(t, 201, &first)
	r := h.do("POST", "/v1/tokens", body, "Idempotency-Key", "tk1")
	r.json(t, 201, &again)
	if r.header.Get("Idempotent-Replayed") != "true" || again.ID != first.ID || again.Secret != "" || again.Note != api.SecretNote {
		t.Fatalf("replay %s %v", r.body, r.header)
	}
	if first.Secret == "" || first.Note != "" {
		t.Fatalf("first answer %+v", first)
	}
	var list apiv1.List[apiv1.Token]
	h.do("GET", "/v1/tokens", nil).json(t, 200, &list)
	if n := len(list.Items); n != 2 { // the bootstrap admin and pipeline
		t.Fatalf("%d tokens after a replay, want 2: %+v", n, list.Items)
	}
	rec, err := h.srv.Store().GetIdempotency(context.Background(), tokenIDOf(t, h, server.BootstrapTokenName), "tk1")
	must(t, err)
	if bytes.Contains(rec.Body, []byte(first.Secret)) {
		t.Fatal("the idempotency record stores the secret")
	}
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "other", Role: apiv1.RoleAuditor}, "Idempotency-Key", "tk1").problem(t, 422, "idempotency-mismatch", "")
}

func tokenIDOf(t *testing.T, h *harness, name string) string {
	t.Helper()
	var list apiv1.List[apiv1.Token]
	h.do("GET", "/v1/tokens", nil).json(t, 200, &list)
	for _, tok := range list.Items {
		if tok.Name == name {
			return tok.ID
		}
	}
	t.Fatalf("no token named %s", name)
	return ""
}

func TestTokens_ListsAreScopedToWhatTheTokenMaySee(t *testing.T) {
	h := newHarness(t)
	a, b := h.project("alpha"), h.project("beta")
	h.environment(a.ID, "a1", nil)
	h.environment(b.ID, "b1", nil)
	viewer := h.apiToken("alpha-viewer", apiv1.RoleViewer, a.ID)
	auditor := h.apiToken("auditor", apiv1.RoleAuditor, "")

	names := func(secret, path string) []string {
		var envs apiv1.List[apiv1.Environment]
		h.do("GET", path, nil, bearer(secret)...).json(t, 200, &envs)
		var out []string
		for _, e := range envs.Items {
			out = append(out, e.Name)
		}
		return out
	}
	if got := names(viewer.Secret, "/v1/environments"); !cmp.Equal(got, []string{"a1"}) {
		t.Errorf("viewer of alpha lists %v", got)
	}
	// Listing another project's environments is the 404 of reading it.
	h.do("GET", "/v1/environments?project_id="+b.ID, nil, bearer(viewer.Secret)...).problem(t, 404, "not-found", "project_id")
	if got := names(auditor.Secret, "/v1/environments"); len(got) != 2 {
		t.Errorf("auditor lists %v", got)
	}
	var projects apiv1.List[apiv1.Project]
	h.do("GET", "/v1/projects", nil, bearer(viewer.Secret)...).json(t, 200, &projects)
	if len(projects.Items) != 1 || projects.Items[0].ID != a.ID {
		t.Errorf("viewer of alpha lists projects %+v", projects.Items)
	}
	var tokens apiv1.List[apiv1.Token]
	h.do("GET", "/v1/tokens?project_id="+a.ID, nil, bearer(auditor.Secret)...).json(t, 200, &tokens)
	if len(tokens.Items) != 1 || tokens.Items[0].ID != viewer.ID {
		t.Errorf("tokens of alpha %+v", tokens.Items)
	}
	// Organization-wide tokens do not exist for a project's tokens.
	adminID := tokenIDOf(t, h, server.BootstrapTokenName)
	h.do("GET", "/v1/tokens/"+adminID, nil, bearer(viewer.Secret)...).problem(t, 404, "not-found", "")
	h.do("DELETE", "/v1/tokens/"+adminID, nil, bearer(viewer.Secret)...).problem(t, 404, "not-found", "")
	h.do("GET", "/v1/tokens/"+adminID, nil, bearer(auditor.Secret)...).json(t, 200, nil)
	h.do("DELETE", "/v1/tokens/"+adminID, nil, bearer(auditor.Secret)...).problem(t, 403, "forbidden", "")
	// Creating in another project looks exactly like naming a project that
	// does not exist.
	editor := h.apiToken("alpha-editor", apiv1.RoleEditor, a.ID)
	other := h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: b.ID, Name: "x"}, bearer(editor.Secret)...)
	missing := h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: "prj_nope", Name: "x"}, bearer(editor.Secret)...)
	po, pm := other.problem(t, 404, "not-found", "project_id"), missing.problem(t, 404, "not-found", "project_id")
	if strings.ReplaceAll(po.Detail, b.ID, "ID") != strings.ReplaceAll(pm.Detail, "prj_nope", "ID") {
		t.Errorf("another project %q and a missing one %q answer differently", po.Detail, pm.Detail)
	}
}

func TestRateLimit_IsPerRoleWithRetryAfterFromTheBucketAndAudited(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().UTC().Truncate(time.Minute))
	h := newHarness(t, func(c *server.Config) {
		c.RateLimit, c.RateBurst = 0, 0 // no limit unless the role has one
		c.RoleRateLimits = map[string]api.RateLimit{apiv1.RoleViewer: {PerSecond: 0.2, Burst: 2}}
		c.Clock = clock
	})
	p := h.project("payments")
	viewer := h.apiToken("v", apiv1.RoleViewer, p.ID)
	for range 2 {
		h.do("GET", "/v1/environments", nil, bearer(viewer.Secret)...).json(t, 200, nil)
	}
	r := h.do("GET", "/v1/environments", nil, bearer(viewer.Secret)...)
	r.problem(t, 429, "rate-limited", "")
	// One request every 5 s, on the server's clock, which has not moved:
	// the bucket refills in exactly 5 s.
	if ra := r.header.Get("Retry-After"); ra != "5" {
		t.Fatalf("Retry-After %q, want 5 (the bucket's delay, rounded up)", ra)
	}
	clock.Advance(5 * time.Second)
	h.do("GET", "/v1/environments", nil, bearer(viewer.Secret)...).json(t, 200, nil)
	// The admin's role has no limit.
	for range 20 {
		h.do("GET", "/v1/projects", nil).json(t, 200, nil)
	}
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=auth.denied", nil).json(t, 200, &evs)
	if len(evs.Items) != 1 || evs.Items[0].StatusCode != 429 || evs.Items[0].Actor.TokenID != viewer.ID || !strings.Contains(evs.Items[0].Reason, "viewer") {
		t.Fatalf("rate limit denials %+v", evs.Items)
	}
}

// TestSecrets_NeverInLogsAuditEventsOrResponses runs token creation, use,
// denials of every kind and revocation with debug logging, and scans the
// server's log, the audit sink, the stored audit trail, every response
// (but the one creation answer that must hold it) and the data directory
// for every secret.
func TestSecrets_NeverInLogsAuditEventsOrResponses(t *testing.T) {
	var logs, sink logbuf.Buffer
	h := newHarness(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.AuditLog = &sink
		c.RoleRateLimits = map[string]api.RateLimit{apiv1.RoleViewer: {PerSecond: 0.01, Burst: 1}}
	})
	var bodies [][]byte
	keep := func(r resp) resp { bodies = append(bodies, r.body); return r }
	secrets := []string{h.token}

	a, b := h.project("alpha"), h.project("beta")
	made := map[string]apiv1.TokenCreated{}
	for _, spec := range []apiv1.TokenCreate{
		{Name: "auditor", Role: apiv1.RoleAuditor},
		{Name: "editor", Role: apiv1.RoleEditor, ProjectID: a.ID},
		{Name: "viewer", Role: apiv1.RoleViewer, ProjectID: a.ID},
		{Name: "admin2", Role: apiv1.RoleAdmin},
	} {
		var tc apiv1.TokenCreated
		h.do("POST", "/v1/tokens", spec, "Idempotency-Key", "k-"+spec.Name).json(t, 201, &tc) // holds the secret: not kept
		keep(h.do("POST", "/v1/tokens", spec, "Idempotency-Key", "k-"+spec.Name)).json(t, 201, nil)
		made[spec.Name] = tc
		secrets = append(secrets, tc.Secret)
	}
	ed, vw := made["editor"].Secret, made["viewer"].Secret
	env := apiv1.Environment{}
	keep(h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: a.ID, Name: "e1"}, bearer(ed)...)).json(t, 202, &env)
	keep(h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: b.ID, Name: "e2"}, bearer(ed)...)).problem(t, 404, "not-found", "")
	keep(h.do("PATCH", "/v1/projects/"+a.ID, apiv1.ProjectPatch{Description: ptr("x")}, bearer(ed)...)).problem(t, 403, "forbidden", "")
	keep(h.do("GET", "/v1/environments/"+env.ID, nil, bearer(vw)...)).json(t, 200, nil)
	keep(h.do("GET", "/v1/environments/"+env.ID, nil, bearer(vw)...)).problem(t, 429, "rate-limited", "")
	keep(h.do("GET", "/v1/audit-events", nil, bearer(made["auditor"].Secret)...)).json(t, 200, nil)
	keep(h.do("GET", "/v1/tokens", nil, bearer(made["admin2"].Secret)...)).json(t, 200, nil)
	keep(h.do("DELETE", "/v1/tokens/"+made["admin2"].ID, nil)).json(t, 204, nil)
	keep(h.do("GET", "/v1/tokens", nil, bearer(made["admin2"].Secret)...)).problem(t, 401, "unauthorized", "")
	keep(h.do("GET", "/v1/tokens", nil, bearer(made["admin2"].Secret+"x")...)).problem(t, 401, "unauthorized", "")
	keep(h.do("GET", "/v1/tokens", nil, "Authorization", "Basic "+made["auditor"].Secret)).problem(t, 401, "unauthorized", "")
	keep(h.do("GET", "/metrics", nil))

	var stored []byte
	evs, _, err := h.srv.Store().ListAudit(context.Background(), store.AuditQuery{Limit: store.MaxLimit})
	must(t, err)
	stored, _ = json.Marshal(evs)
	if len(evs) < 10 || !strings.Contains(logs.String(), "request denied") || !strings.Contains(sink.String(), "token.create") {
		t.Fatalf("the run left too little to scan: %d events, %d bytes of logs, %d of sink", len(evs), len(logs.String()), len(sink.String()))
	}
	places := map[string][]byte{"server log": []byte(logs.String()), "audit sink": []byte(sink.String()), "stored audit trail": stored}
	for i, body := range bodies {
		places["response "+strconv.Itoa(i)] = body
	}
	for where, data := range places {
		for i, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("secret %d appears in the %s", i, where)
			}
		}
	}
	h.assertNotStored(t, secrets...)
}

func TestTokens_DeletingAProjectRevokesItsTokens(t *testing.T) {
	h := newHarness(t)
	p := h.project("short-lived")
	other := h.project("stays")
	editor := h.apiToken("editor-of-short-lived", apiv1.RoleEditor, p.ID)
	keeper := h.apiToken("viewer-of-stays", apiv1.RoleViewer, other.ID)
	// Warm the authentication cache: revocation must reach past it.
	h.do("GET", "/v1/projects/"+p.ID, nil, bearer(editor.Secret)...).json(t, 200, nil)

	h.do("DELETE", "/v1/projects/"+p.ID, nil).json(t, 204, nil)

	h.do("GET", "/v1/environments", nil, bearer(editor.Secret)...).problem(t, 401, "unauthorized", "")
	h.do("GET", "/v1/tokens/"+editor.ID, nil).problem(t, 404, "not-found", "")
	h.do("GET", "/v1/projects/"+other.ID, nil, bearer(keeper.Secret)...).json(t, 200, nil)

	var events apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=project.delete", nil).json(t, 200, &events)
	if len(events.Items) != 1 || !strings.Contains(string(mustJSON(t, events.Items[0].Changes)), editor.ID) {
		t.Fatalf("the project.delete event does not name the revoked token: %+v", events.Items)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
