package control_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/control/controltest"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// rig is the application layer on a real SQLite store, with a fake clock,
// and what the store announced of each commit.
type rig struct {
	t     *testing.T
	ctx   context.Context
	st    *store.SQLite
	svc   *control.Service
	clock *clockwork.FakeClock

	mu      sync.Mutex
	commits []store.Commit
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, ctx: context.Background(), clock: clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))}
	r.st, r.svc = controltest.Service(t, r.clock, "simulate")
	r.st.Subscribe(func(c store.Commit) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.commits = append(r.commits, c)
	})
	return r
}

// call is a request of the admin named "alice".
func call(requestID string, status int) control.Call {
	return control.Call{RequestID: requestID, Actor: apiv1.Actor{TokenID: "tok_alice", Name: "alice"}, Status: status}
}

// last is the announcement of the last commit; it fails without one.
func (r *rig) last() store.Commit {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.commits) == 0 {
		r.t.Fatal("no commit was announced")
	}
	return r.commits[len(r.commits)-1]
}

func (r *rig) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.commits)
}

func (r *rig) project(name string) apiv1.Project {
	r.t.Helper()
	p, err := r.svc.CreateProject(r.ctx, call("req_"+name, http.StatusCreated), apiv1.ProjectCreate{Name: name})
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

func (r *rig) environment(projectID, name string, labels map[string]string) apiv1.Environment {
	r.t.Helper()
	e, err := r.svc.CreateEnvironment(r.ctx, call("req_"+name, http.StatusAccepted), apiv1.EnvironmentCreate{ProjectID: projectID, Name: name, Labels: labels})
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

// wantReconcile checks that the last commit asked to reconcile exactly ids
// because of request cause, and wrote exactly one audit event, action.
func (r *rig) wantReconcile(cause, action string, ids ...string) store.Commit {
	r.t.Helper()
	c := r.last()
	got := slices.Sorted(slices.Values(c.Reconcile))
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) || (len(ids) > 0 && c.Cause != cause) {
		r.t.Fatalf("the commit asked to reconcile %v because of %q, want %v because of %q", got, c.Cause, want, cause)
	}
	if len(c.Events) != 1 || c.Events[0].Action != action || c.Events[0].RequestID != cause {
		r.t.Fatalf("the commit wrote events %+v, want one %s of %s", c.Events, action, cause)
	}
	return c
}

func selecting(name string, labels map[string]string, from ...apiv1.Peer) apiv1.PolicySpec {
	return apiv1.PolicySpec{
		Name: name, EnvironmentSelector: apiv1.Selector{MatchLabels: labels}, PolicyTypes: []string{apiv1.Ingress},
		Ingress: []apiv1.IngressRule{{From: from, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP}}}},
	}
}

func TestCreatePolicy_ReconcilesExactlyTheEnvironmentsItSelectsAndWritesOneAuditEvent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	web := r.environment(p.ID, "web", map[string]string{"app": "web"})
	r.environment(p.ID, "db", map[string]string{"app": "db"})
	other := r.project("billing")
	r.environment(other.ID, "web", map[string]string{"app": "web"})
	before := r.count()

	c := call("req_policy", http.StatusCreated)
	pol, err := r.svc.CreatePolicy(r.ctx, c, apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: selecting("web-in", map[string]string{"app": "web"}, apiv1.Peer{CIDR: "10.0.0.0/8"})})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.count(); n != before+1 {
		t.Fatalf("%d commits announced, want one", n-before)
	}
	commit := r.wantReconcile("req_policy", "policy.create", web.ID)
	ev := commit.Events[0]
	if ev.Resource != (apiv1.ResourceRef{Type: "policy", ID: pol.ID}) || ev.ProjectID != p.ID || ev.Actor.Name != "alice" ||
		ev.StatusCode != http.StatusCreated || ev.Outcome != apiv1.OutcomeSuccess || !ev.Time.Equal(r.clock.Now()) {
		t.Fatalf("audit event %+v, want the policy's creation by alice at the clock's time, answered 201", ev)
	}
	if pol.ETag != apiv1.ETag(1) || !pol.CreatedAt.Equal(r.clock.Now()) {
		t.Fatalf("policy %+v, want generation 1 created now", pol)
	}
	got, err := r.st.GetEnvironment(r.ctx, web.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Enforcement.Generation != web.Enforcement.Generation+1 {
		t.Fatalf("web's enforcement generation %d, want it bumped from %d", got.Enforcement.Generation, web.Enforcement.Generation)
	}
}

// An environment's create, patch and delete ask to reconcile itself and
// the environments whose rules name it through a selector peer.
func TestEnvironmentChanges_ReconcileThemselvesAndThePoliciesPeersThatSeeThem(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	web := r.environment(p.ID, "web", map[string]string{"app": "web"})
	if _, err := r.svc.CreatePolicy(r.ctx, call("req_policy", 201), apiv1.PolicyCreate{ProjectID: p.ID,
		PolicySpec: selecting("web-from-api", map[string]string{"app": "web"}, apiv1.Peer{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"app": "api"}}})}); err != nil {
		t.Fatal(err)
	}

	api := r.environment(p.ID, "api", map[string]string{"app": "api"})
	r.wantReconcile("req_api", "environment.create", api.ID, web.ID)
	// An environment no selector sees reconciles alone.
	lone := r.environment(p.ID, "batch", map[string]string{"app": "batch"})
	r.wantReconcile("req_batch", "environment.create", lone.ID)

	desc := "the public API"
	if _, err := r.svc.PatchEnvironment(r.ctx, call("req_describe", 200), api.ID, apiv1.EnvironmentPatch{Description: &desc}); err != nil {
		t.Fatal(err)
	}
	r.wantReconcile("req_describe", "environment.update", api.ID)
	relabel := map[string]string{"app": "internal"}
	if _, err := r.svc.PatchEnvironment(r.ctx, call("req_relabel", 200), api.ID, apiv1.EnvironmentPatch{Labels: &relabel}); err != nil {
		t.Fatal(err)
	}
	r.wantReconcile("req_relabel", "environment.update", api.ID, web.ID)

	gone, err := r.svc.DeleteEnvironment(r.ctx, call("req_delete", 202), web.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gone.State != apiv1.StateDeleting {
		t.Fatalf("deleted environment in state %s, want deleting", gone.State)
	}
	r.wantReconcile("req_delete", "environment.delete", web.ID)
}

func TestPatch_AnIfMatchNamingAnotherGenerationIsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	env := r.environment(p.ID, "web", nil)
	before := r.count()
	desc := "changed"
	c := call("req_stale", 200)
	c.IfMatch = apiv1.ETag(env.Generation + 1)
	_, err := r.svc.PatchEnvironment(r.ctx, c, env.ID, apiv1.EnvironmentPatch{Description: &desc})
	if e, ok := problem.As(err); !ok || e.Kind != problem.Precondition {
		t.Fatalf("err %v, want a failed precondition", err)
	}
	if n := r.count(); n != before {
		t.Fatalf("%d commits announced after a refused change, want none", n-before)
	}
	got, err := r.st.GetEnvironment(r.ctx, env.ID)
	if err != nil || got.Description != "" || got.Generation != env.Generation {
		t.Fatalf("environment %+v (%v), want it unchanged", got, err)
	}
	evs, _, err := r.st.ListAudit(r.ctx, store.AuditQuery{RequestID: "req_stale", Limit: 10})
	if err != nil || len(evs) != 0 {
		t.Fatalf("audit events of the refused change %+v (%v), want none", evs, err)
	}
	c.IfMatch = `"9", ` + apiv1.ETag(env.Generation)
	if _, err := r.svc.PatchEnvironment(r.ctx, c, env.ID, apiv1.EnvironmentPatch{Description: &desc}); err != nil {
		t.Fatalf("If-Match listing the current ETag: %v", err)
	}
}

// Within runs in the change's transaction: its error undoes the change.
func TestWithin_FailingUndoesTheChangeAndItsAuditEvent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	before := r.count()
	c := call("req_within", 201)
	c.Within = func(ctx context.Context, tx store.Tx, result any) error {
		if p, ok := result.(apiv1.Project); !ok || p.Name != "payments" {
			t.Errorf("Within was handed %#v, want the created project", result)
		}
		return problem.New(problem.Internal, "the answer could not be stored")
	}
	if _, err := r.svc.CreateProject(r.ctx, c, apiv1.ProjectCreate{Name: "payments"}); err == nil {
		t.Fatal("the change succeeded although Within failed")
	}
	if n := r.count(); n != before {
		t.Fatalf("%d commits announced, want none", n-before)
	}
	if ps, _, err := r.st.ListProjects(r.ctx, store.ListQuery{}); err != nil || len(ps) != 0 {
		t.Fatalf("projects %+v (%v), want none", ps, err)
	}
}

func TestDeleteProject_RevokesItsTokensInTheSameCommit(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.project("payments")
	tok, err := r.svc.CreateToken(r.ctx, call("req_token", 201), apiv1.TokenCreate{Name: "ci", Role: apiv1.RoleEditor, ProjectID: p.ID})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Secret == "" {
		t.Fatal("a created token came without its secret")
	}
	del, err := r.svc.DeleteProject(r.ctx, call("req_delete", 204), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	c := r.wantReconcile("req_delete", "project.delete")
	if !slices.Equal(del.RevokedTokens, []string{tok.ID}) || !slices.Contains(c.Tokens, tok.ID) {
		t.Fatalf("revoked %v, commit's tokens %v; want %s in both", del.RevokedTokens, c.Tokens, tok.ID)
	}
	got, err := r.st.GetToken(r.ctx, tok.ID)
	if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(r.clock.Now()) {
		t.Fatalf("token %+v (%v), want it revoked at the clock's time", got, err)
	}
}
