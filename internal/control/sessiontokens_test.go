package control_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// parent creates a token that mints session tokens, and the call it makes.
func (r *rig) parent(in apiv1.TokenCreate) (apiv1.TokenCreated, control.Call) {
	r.t.Helper()
	tok, err := r.svc.CreateToken(r.ctx, call("req_"+in.Name, http.StatusCreated), in)
	if err != nil {
		r.t.Fatal(err)
	}
	return tok, control.Call{RequestID: "req_mint_" + in.Name, Actor: apiv1.Actor{TokenID: tok.ID, Name: tok.Name}, Status: http.StatusCreated}
}

func (r *rig) session(c control.Call, envID, ttl string) apiv1.TokenCreated {
	r.t.Helper()
	s, err := r.svc.CreateSessionToken(r.ctx, c, envID, apiv1.SessionTokenCreate{TTL: ttl})
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

// revoked checks that the store holds each token revoked at the clock's
// time, and that the last commit wrote them all, with a token.revoke event
// each, saying why when reason is set.
func (r *rig) revoked(reason string, ids ...string) {
	r.t.Helper()
	c := r.last()
	for _, id := range ids {
		got, err := r.st.GetToken(r.ctx, id)
		if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(r.clock.Now()) {
			r.t.Errorf("token %s: %+v (%v), want it revoked at the clock's time", id, got, err)
		}
		if !slices.Contains(c.Tokens, id) {
			r.t.Errorf("token %s is not among the commit's tokens %v", id, c.Tokens)
		}
		i := slices.IndexFunc(c.Events, func(ev apiv1.AuditEvent) bool { return ev.Resource.ID == id })
		if i < 0 || c.Events[i].Action != "token.revoke" || c.Events[i].Outcome != apiv1.OutcomeSuccess || (reason != "" && c.Events[i].Reason != reason) {
			r.t.Errorf("token %s: the commit's events %+v, want a token.revoke of it (reason %q)", id, c.Events, reason)
		}
	}
}

func TestCreateSessionToken_IsScopedToTheEnvironmentAndExpiresAfterItsTTL(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	env := r.environment(p.ID, "web", nil)
	dev, c := r.parent(apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID})

	s := r.session(c, env.ID, "")
	want := apiv1.Token{
		ID: s.ID, Name: "alice", Role: apiv1.RoleSession, ProjectID: p.ID, EnvironmentID: env.ID, ParentID: dev.ID,
		ExpiresAt: ptr(r.clock.Now().Add(15 * time.Minute)), CreatedAt: r.clock.Now(), ETag: apiv1.ETag(1),
	}
	if s.Token.ID == "" || s.Secret == "" || !sameToken(s.Token, want) {
		t.Fatalf("session token %+v, want %+v with a secret", s.Token, want)
	}
	stored, err := r.st.GetToken(r.ctx, s.ID)
	if err != nil || !sameToken(stored.Token, want) || stored.Hash == "" || stored.Hash == s.Secret {
		t.Fatalf("stored %+v (%v), want %+v under the secret's hash", stored, err, want)
	}
	ev := r.last().Events
	if len(ev) != 1 || ev[0].Action != "token.create" || ev[0].Resource.ID != s.ID || ev[0].ProjectID != p.ID || ev[0].Actor != c.Actor {
		t.Fatalf("events %+v, want one token.create of %s by %+v", ev, s.ID, c.Actor)
	}

	if got := r.session(c, env.ID, "2h").ExpiresAt; !got.Equal(r.clock.Now().Add(2 * time.Hour)) {
		t.Errorf("ttl 2h: expires at %s", got)
	}
	_, err = r.svc.CreateSessionToken(r.ctx, c, env.ID, apiv1.SessionTokenCreate{TTL: "25h"})
	if e, ok := problem.As(err); !ok || e.Kind != problem.Validation || len(e.Fields) != 1 || e.Fields[0].Field != "ttl" {
		t.Errorf("ttl 25h: %v, want a validation problem naming ttl", err)
	}
	_, err = r.svc.CreateSessionToken(r.ctx, c, "env_missing", apiv1.SessionTokenCreate{})
	if e, ok := problem.As(err); !ok || e.Kind != problem.NotFound {
		t.Errorf("a missing environment: %v, want not found", err)
	}
}

func TestCreateSessionToken_NeverOutlivesTheTokenThatMintsIt(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	env := r.environment(p.ID, "web", nil)
	exp := r.clock.Now().Add(10 * time.Minute)
	_, c := r.parent(apiv1.TokenCreate{Name: "ci", Role: apiv1.RoleViewer, ProjectID: p.ID, Developer: true, ExpiresAt: &exp})
	if got := r.session(c, env.ID, "1h").ExpiresAt; !got.Equal(exp) {
		t.Errorf("a 1h session token of a token expiring in 10m expires at %s, want %s", got, exp)
	}
	if got := r.session(c, env.ID, "5m").ExpiresAt; !got.Equal(r.clock.Now().Add(5 * time.Minute)) {
		t.Errorf("a 5m session token expires at %s", got)
	}
}

func TestCreateSessionToken_IsRefusedToSessionTokensAndForLeavingEnvironments(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	env := r.environment(p.ID, "web", nil)
	_, c := r.parent(apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID})
	s := r.session(c, env.ID, "")
	_, err := r.svc.CreateSessionToken(r.ctx, control.Call{RequestID: "req_again", Actor: apiv1.Actor{TokenID: s.ID, Name: s.Name}}, env.ID, apiv1.SessionTokenCreate{})
	if e, ok := problem.As(err); !ok || e.Kind != problem.Forbidden {
		t.Errorf("a session token minting one: %v, want forbidden", err)
	}
	if _, err := r.svc.DeleteEnvironment(r.ctx, call("req_delete", http.StatusAccepted), env.ID); err != nil {
		t.Fatal(err)
	}
	_, err = r.svc.CreateSessionToken(r.ctx, c, env.ID, apiv1.SessionTokenCreate{})
	if e, ok := problem.As(err); !ok || e.Kind != problem.State || e.Detail != "environment "+env.ID+" is deleting: it takes no session tokens" {
		t.Errorf("a deleting environment: %v, want a state problem naming its state", err)
	}
}

func TestRevokeToken_RevokesTheSessionTokensItMintedInTheSameCommit(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	web, db := r.environment(p.ID, "web", nil), r.environment(p.ID, "db", nil)
	dev, c := r.parent(apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID})
	_, other := r.parent(apiv1.TokenCreate{Name: "bob", Role: apiv1.RoleDeveloper, ProjectID: p.ID})
	a, b := r.session(c, web.ID, ""), r.session(c, db.ID, "")
	closed := r.session(c, web.ID, "")
	if _, err := r.svc.RevokeSessionToken(r.ctx, c, web.ID, closed.ID); err != nil {
		t.Fatal(err)
	}
	bobs := r.session(other, web.ID, "")

	if _, err := r.svc.RevokeToken(r.ctx, call("req_revoke", http.StatusNoContent), dev.ID); err != nil {
		t.Fatal(err)
	}
	r.revoked("the token that minted it, "+dev.ID+", was revoked", a.ID, b.ID)
	r.revoked("", dev.ID)
	if n := len(r.last().Events); n != 3 {
		t.Errorf("the revocation wrote %d events, want 3: the token's and its two live session tokens'", n)
	}
	if got, _ := r.st.GetToken(r.ctx, bobs.ID); got.RevokedAt != nil {
		t.Error("another token's session token was revoked")
	}
}

func TestRevokeSessionToken_FindsOnlyLiveSessionTokensOfThatEnvironment(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	web, db := r.environment(p.ID, "web", nil), r.environment(p.ID, "db", nil)
	dev, c := r.parent(apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID})
	s := r.session(c, web.ID, "")
	for name, id := range map[string][2]string{
		"in another environment": {db.ID, s.ID},
		"not a session token":    {web.ID, dev.ID},
		"missing":                {web.ID, "tok_missing"},
	} {
		_, err := r.svc.RevokeSessionToken(r.ctx, c, id[0], id[1])
		if e, ok := problem.As(err); !ok || e.Kind != problem.NotFound || e.Detail != `session token "`+id[1]+`" does not exist` {
			t.Errorf("%s: %v, want not found", name, err)
		}
	}
	if _, err := r.svc.RevokeSessionToken(r.ctx, c, web.ID, s.ID); err != nil {
		t.Fatal(err)
	}
	r.revoked("", s.ID)
	if _, err := r.svc.RevokeSessionToken(r.ctx, c, web.ID, s.ID); err == nil {
		t.Error("revoking it again succeeded, want not found")
	}
}

func TestDeleteEnvironment_RevokesItsSessionTokensInTheSameCommit(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	web, db := r.environment(p.ID, "web", nil), r.environment(p.ID, "db", nil)
	_, c := r.parent(apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID})
	a, kept := r.session(c, web.ID, ""), r.session(c, db.ID, "")
	if _, err := r.svc.DeleteEnvironment(r.ctx, call("req_delete", http.StatusAccepted), web.ID); err != nil {
		t.Fatal(err)
	}
	r.revoked("its environment "+web.ID+" is deleting", a.ID)
	if got, _ := r.st.GetToken(r.ctx, kept.ID); got.RevokedAt != nil {
		t.Error("another environment's session token was revoked")
	}
}

func TestExpire_RevokesTheEnvironmentsSessionTokens(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	ttl := int64(600)
	env, err := r.svc.CreateEnvironment(r.ctx, call("req_env", http.StatusAccepted), apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web", TTLSeconds: &ttl})
	if err != nil {
		t.Fatal(err)
	}
	_, c := r.parent(apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID})
	s := r.session(c, env.ID, "24h")
	r.clock.Advance(11 * time.Minute)
	if err := r.svc.Expire(r.ctx, "req_reaper", env.ID); err != nil {
		t.Fatal(err)
	}
	r.revoked("its environment "+env.ID+" is expired", s.ID)
	if got, _ := r.st.GetEnvironment(r.ctx, env.ID); got.State != apiv1.StateExpired {
		t.Fatalf("environment %s, want expired", got.State)
	}
}

// sameToken compares tokens, times by instant.
func sameToken(a, b apiv1.Token) bool {
	sameTime := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	ok := sameTime(a.ExpiresAt, b.ExpiresAt) && a.CreatedAt.Equal(b.CreatedAt)
	a.ExpiresAt, b.ExpiresAt, a.CreatedAt, b.CreatedAt = nil, nil, time.Time{}, time.Time{}
	return ok && a == b
}

func ptr[T any](v T) *T { return &v }
