package api_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// mintSession mints a session token of environment envID as secret.
func (h *harness) mintSession(secret, envID string, in apiv1.SessionTokenCreate) (apiv1.TokenCreated, resp) {
	h.t.Helper()
	var tc apiv1.TokenCreated
	r := h.do("POST", "/v1/environments/"+envID+"/session-tokens", in, bearer(secret)...)
	r.json(h.t, 201, &tc)
	return tc, r
}

func TestSessionTokens_ExecIntoOneEnvironmentAndDoNothingElse(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	env, other := h.environment(p.ID, "web", nil), h.environment(p.ID, "db", nil)
	elsewhere := h.environment(h.project("billing").ID, "web", nil)
	var dev apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID}).json(t, 201, &dev)

	before := time.Now()
	s, r := h.mintSession(dev.Secret, env.ID, apiv1.SessionTokenCreate{})
	if !strings.HasPrefix(s.Secret, auth.SecretPrefix) || s.Role != apiv1.RoleSession || s.EnvironmentID != env.ID || s.ParentID != dev.ID ||
		s.ProjectID != p.ID || s.Name != "alice" || s.ExpiresAt == nil ||
		s.ExpiresAt.Before(before.Add(15*time.Minute).Add(-time.Second)) || s.ExpiresAt.After(time.Now().Add(15*time.Minute)) {
		t.Fatalf("minted %+v, want a session token of %s by %s expiring in 15 minutes", s.Token, env.ID, dev.ID)
	}
	if loc := r.header.Get("Location"); loc != "/v1/environments/"+env.ID+"/session-tokens/"+s.ID {
		t.Errorf("Location %q", loc)
	}

	// It says who it is, and its project's name, which it may not read.
	var who apiv1.WhoAmI
	h.do("GET", "/v1/whoami", nil, bearer(s.Secret)...).json(t, 200, &who)
	if who.TokenID != s.ID || who.Role != apiv1.RoleSession || who.EnvironmentID != env.ID || who.ProjectID != p.ID || who.ProjectName != "payments" {
		t.Errorf("whoami %+v", who)
	}
	// Everything else about its environment is 403, any other
	// environment 404, as if it did not exist.
	for _, path := range []string{"/v1/environments/" + env.ID, "/v1/environments/" + env.ID + "/status", "/v1/projects/" + p.ID, "/v1/environments", "/v1/policies"} {
		p := h.do("GET", path, nil, bearer(s.Secret)...).problem(t, 403, "forbidden", "")
		if !strings.Contains(p.Detail, "role session may not") {
			t.Errorf("GET %s: 403 detail %q", path, p.Detail)
		}
	}
	for _, id := range []string{other.ID, elsewhere.ID} {
		h.do("GET", "/v1/environments/"+id, nil, bearer(s.Secret)...).problem(t, 404, "not-found", "")
		h.do("POST", "/v1/environments/"+id+"/session-tokens", apiv1.SessionTokenCreate{}, bearer(s.Secret)...).problem(t, 404, "not-found", "")
	}
	p403 := h.do("POST", "/v1/environments/"+env.ID+"/session-tokens", apiv1.SessionTokenCreate{}, bearer(s.Secret)...).problem(t, 403, "forbidden", "")
	if p403.Detail != "requires role developer: role session may not mint session tokens for environments" {
		t.Errorf("a session token minting one: %q", p403.Detail)
	}

	// Admins see session tokens among the tokens; their secrets nowhere.
	var list apiv1.List[apiv1.Token]
	h.do("GET", "/v1/tokens?project_id="+p.ID, nil).json(t, 200, &list)
	found := false
	for _, tok := range list.Items {
		found = found || (tok.ID == s.ID && tok.Role == apiv1.RoleSession && tok.EnvironmentID == env.ID && tok.ParentID == dev.ID)
	}
	if !found {
		t.Errorf("GET /v1/tokens lacks the session token: %+v", list.Items)
	}
	rec, err := h.srv.Store().GetToken(context.Background(), s.ID)
	must(t, err)
	if rec.Hash != auth.HashSecret(s.Secret) {
		t.Error("the store does not keep the session token's secret as its hash")
	}
	h.assertNotStored(t, s.Secret, dev.Secret, h.token)
}

func TestSessionTokens_ExpireAfterTheirTTLButNeverAfterTheTokenThatMintedThem(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	env := h.environment(p.ID, "web", nil)
	exp := time.Now().Add(30 * time.Minute).UTC().Truncate(time.Second)
	var viewer apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "bob", Role: apiv1.RoleViewer, ProjectID: p.ID, Developer: true, ExpiresAt: &exp}).json(t, 201, &viewer)
	if !viewer.Developer {
		t.Fatalf("a token made with developer: true: %+v", viewer.Token)
	}
	var who apiv1.WhoAmI
	h.do("GET", "/v1/whoami", nil, bearer(viewer.Secret)...).json(t, 200, &who)
	if !who.Developer || who.ProjectName != "payments" || who.EnvironmentID != "" {
		t.Errorf("whoami of a viewer granted developer: %+v", who)
	}

	if s, _ := h.mintSession(viewer.Secret, env.ID, apiv1.SessionTokenCreate{TTL: "24h"}); !s.ExpiresAt.Equal(exp) {
		t.Errorf("a 24h session token of a token expiring at %s expires at %s", exp, s.ExpiresAt)
	}
	start := time.Now()
	if s, _ := h.mintSession(viewer.Secret, env.ID, apiv1.SessionTokenCreate{TTL: "2m"}); s.ExpiresAt.Before(start.Add(2*time.Minute-time.Second)) || s.ExpiresAt.After(time.Now().Add(2*time.Minute)) {
		t.Errorf("a 2m session token expires at %s", s.ExpiresAt)
	}
	for ttl, msg := range map[string]string{
		"30s": "must be between 1m and 24h, got 30s",
		"2d":  `must be a duration such as 15m or 1h30m, got "2d"`,
	} {
		e := h.do("POST", "/v1/environments/"+env.ID+"/session-tokens", apiv1.SessionTokenCreate{TTL: ttl}, bearer(viewer.Secret)...).
			problem(t, 400, "validation", "ttl")
		if e.Errors[0].Message != msg {
			t.Errorf("ttl %s: %q, want %q", ttl, e.Errors[0].Message, msg)
		}
	}
	// A viewer without the grant may not.
	var plain apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "carol", Role: apiv1.RoleViewer, ProjectID: p.ID}).json(t, 201, &plain)
	p403 := h.do("POST", "/v1/environments/"+env.ID+"/session-tokens", apiv1.SessionTokenCreate{}, bearer(plain.Secret)...).problem(t, 403, "forbidden", "")
	if !strings.HasPrefix(p403.Detail, "requires role developer") {
		t.Errorf("a viewer minting: %q", p403.Detail)
	}
}

func TestSessionTokens_AreRefusedOnceRevokedWithTheirTokenOrTheirEnvironment(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	env := h.environment(p.ID, "web", nil)
	var dev apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID}).json(t, 201, &dev)
	works := func(s apiv1.TokenCreated) resp { return h.do("GET", "/v1/whoami", nil, bearer(s.Secret)...) }

	// Closed by its own DELETE, once.
	closed, _ := h.mintSession(dev.Secret, env.ID, apiv1.SessionTokenCreate{})
	works(closed).json(t, 200, nil)
	h.do("DELETE", "/v1/environments/"+env.ID+"/session-tokens/"+closed.ID, nil, bearer(dev.Secret)...).json(t, 204, nil)
	works(closed).problem(t, 401, "unauthorized", "")
	h.do("DELETE", "/v1/environments/"+env.ID+"/session-tokens/"+closed.ID, nil, bearer(dev.Secret)...).problem(t, 404, "not-found", "")
	// Only session tokens of that environment are found there.
	h.do("DELETE", "/v1/environments/"+env.ID+"/session-tokens/"+dev.ID, nil, bearer(dev.Secret)...).problem(t, 404, "not-found", "")

	// Revoked with the token that minted it.
	child, _ := h.mintSession(dev.Secret, env.ID, apiv1.SessionTokenCreate{})
	works(child).json(t, 200, nil)
	h.do("DELETE", "/v1/tokens/"+dev.ID, nil).json(t, 204, nil)
	works(child).problem(t, 401, "unauthorized", "")

	// Revoked as its environment is deleted.
	s, _ := h.mintSession(h.token, env.ID, apiv1.SessionTokenCreate{})
	works(s).json(t, 200, nil)
	h.do("DELETE", "/v1/environments/"+env.ID, nil).json(t, 202, nil)
	works(s).problem(t, 401, "unauthorized", "")

	// Each revocation is on the audit trail, saying why.
	evs, _, err := h.srv.Store().ListAudit(context.Background(), store.AuditQuery{Action: "token.revoke", Limit: store.MaxLimit})
	must(t, err)
	reasons := map[string]string{}
	for _, ev := range evs {
		reasons[ev.Resource.ID] = ev.Reason
	}
	for id, want := range map[string]string{
		closed.ID: "", dev.ID: "", child.ID: "the token that minted it, " + dev.ID + ", was revoked", s.ID: "its environment " + env.ID + " is deleting",
	} {
		if got, ok := reasons[id]; !ok || got != want {
			t.Errorf("token.revoke of %s: reason %q (audited %v), want %q", id, got, ok, want)
		}
	}
}

func TestSessionTokens_AreNotMadeByPostTokensAndAdminTokensTakeNoDeveloperGrant(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	e := h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "s", Role: apiv1.RoleSession, ProjectID: p.ID}).problem(t, 400, "validation", "role")
	if !strings.Contains(e.Detail, "POST /v1/environments/{id}/session-tokens") {
		t.Errorf("role session: %q", e.Detail)
	}
	for _, in := range []apiv1.TokenCreate{
		{Name: "ci", Role: apiv1.RoleAdmin, Developer: true},
		{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID, Developer: true},
	} {
		e := h.do("POST", "/v1/tokens", in).problem(t, 400, "validation", "developer")
		if !strings.Contains(e.Detail, "already may exec") {
			t.Errorf("%s with developer: %q", in.Role, e.Detail)
		}
	}
}

func TestSessionTokens_IdempotentReplayAnswersTheTokenWithoutItsSecret(t *testing.T) {
	h := newHarness(t)
	env := h.environment(h.project("payments").ID, "web", nil)
	path := "/v1/environments/" + env.ID + "/session-tokens"
	var first, again apiv1.TokenCreated
	h.do("POST", path, apiv1.SessionTokenCreate{TTL: "5m"}, "Idempotency-Key", "st1").json(t, 201, &first)
	r := h.do("POST", path, apiv1.SessionTokenCreate{TTL: "5m"}, "Idempotency-Key", "st1")
	r.json(t, 201, &again)
	if r.header.Get("Idempotent-Replayed") != "true" || again.ID != first.ID || again.Secret != "" || again.Note != api.SessionSecretNote || first.Secret == "" {
		t.Fatalf("first %+v, replay %s", first, r.body)
	}
	rec, err := h.srv.Store().GetIdempotency(context.Background(), tokenIDOf(t, h, server.BootstrapTokenName), "st1")
	must(t, err)
	if bytes.Contains(rec.Body, []byte(first.Secret)) {
		t.Fatal("the idempotency record stores the secret")
	}
}

func TestDeveloperTokens_ReadTheirProjectsEnvironmentsAndNothingElse(t *testing.T) {
	h := newHarness(t)
	p, q := h.project("payments"), h.project("billing")
	env, theirs := h.environment(p.ID, "web", nil), h.environment(q.ID, "web", nil)
	var dev apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID}).json(t, 201, &dev)

	var who apiv1.WhoAmI
	h.do("GET", "/v1/whoami", nil, bearer(dev.Secret)...).json(t, 200, &who)
	if who.Role != apiv1.RoleDeveloper || who.ProjectID != p.ID || who.ProjectName != "payments" {
		t.Errorf("whoami %+v", who)
	}
	var list apiv1.List[apiv1.Environment]
	h.do("GET", "/v1/environments", nil, bearer(dev.Secret)...).json(t, 200, &list)
	if len(list.Items) != 1 || list.Items[0].ID != env.ID {
		t.Errorf("a developer lists %+v, want its project's one environment", list.Items)
	}
	h.do("GET", "/v1/environments/"+env.ID, nil, bearer(dev.Secret)...).json(t, 200, nil)
	h.do("GET", "/v1/environments/"+theirs.ID, nil, bearer(dev.Secret)...).problem(t, 404, "not-found", "")
	h.do("POST", "/v1/environments/"+theirs.ID+"/session-tokens", apiv1.SessionTokenCreate{}, bearer(dev.Secret)...).problem(t, 404, "not-found", "")
	for _, path := range []string{"/v1/projects/" + p.ID, "/v1/policies", "/v1/images", "/v1/tokens", "/v1/audit-events"} {
		h.do("GET", path, nil, bearer(dev.Secret)...).problem(t, 403, "forbidden", "")
	}
	h.do("PATCH", "/v1/environments/"+env.ID, apiv1.EnvironmentPatch{Description: ptr("x")}, bearer(dev.Secret)...).problem(t, 403, "forbidden", "")
}
