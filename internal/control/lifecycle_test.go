package control_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/control/controltest"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// lab is a rig with a project written straight into its store, for the
// reconciler's transitions of that project's environments.
type lab struct {
	*rig
	prj apiv1.Project
}

func newLab(t *testing.T) *lab {
	t.Helper()
	r := newRig(t)
	return &lab{rig: r, prj: controltest.Project(t, r.st, "payments", r.clock.Now())}
}

func (l *lab) update(fn func(tx store.Tx) error) {
	l.t.Helper()
	if err := l.st.Update(l.ctx, fn); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) environment(name string) apiv1.Environment {
	l.t.Helper()
	now := l.clock.Now()
	e := apiv1.Environment{
		ID: control.NewID("env_"), ProjectID: l.prj.ID, Name: name, Labels: map[string]string{"app": name},
		State: apiv1.StatePending, Generation: 1, ETag: `"1"`, CreatedAt: now, UpdatedAt: now,
		Enforcement: apiv1.Enforcement{Driver: "simulate", Generation: 1},
	}
	l.update(func(tx store.Tx) error { return tx.CreateEnvironment(l.ctx, e) })
	return e
}

func (l *lab) get(id string) apiv1.Environment {
	l.t.Helper()
	e, err := l.st.GetEnvironment(l.ctx, id)
	if err != nil {
		l.t.Fatal(err)
	}
	return e
}

func (l *lab) audit(id string) []apiv1.AuditEvent {
	l.t.Helper()
	evs, _, err := l.st.ListAudit(l.ctx, store.AuditQuery{ResourceID: id, Limit: store.MaxLimit})
	if err != nil {
		l.t.Fatal(err)
	}
	return evs
}

// Allocating, without HTTP: one transaction gives the address, moves the
// environment to provisioning, writes one audit event under the server's
// actor, the pass's cause and the service's clock, and asks for the next
// pass; allocating again writes nothing and audits nothing, but still
// asks for the pass.
func TestLifecycle_AllocateWritesOneEventAndAsksForTheNextPass(t *testing.T) {
	l := newLab(t)
	e := l.environment("api")
	if failed, err := l.svc.Allocate(l.ctx, "req_create", e.ID); err != nil || failed != "" {
		t.Fatalf("Allocate: %q %v", failed, err)
	}
	got := l.get(e.ID)
	if got.Enforcement.Address != "198.18.0.1" || got.State != apiv1.StateProvisioning || !got.UpdatedAt.Equal(l.clock.Now()) {
		t.Fatalf("after Allocate: %+v", got)
	}
	c := l.last()
	if len(c.Events) != 1 || c.Cause != "req_create" || !slices.Equal(c.Reconcile, []string{e.ID}) {
		t.Fatalf("commit %+v; want one event and the environment to reconcile under req_create", c)
	}
	ev := c.Events[0]
	if ev.Action != "environment.provision" || ev.Actor != control.ServerActor || ev.RequestID != "req_create" ||
		!ev.Time.Equal(l.clock.Now()) || ev.Reason != "address 198.18.0.1 allocated" || ev.ProjectID != l.prj.ID {
		t.Fatalf("provision event: %+v", ev)
	}

	l.clock.Advance(time.Minute)
	if _, err := l.svc.Allocate(l.ctx, "req_again", e.ID); err != nil {
		t.Fatal(err)
	}
	c = l.last()
	if len(c.Events) != 0 || len(c.Environments) != 0 || !slices.Equal(c.Reconcile, []string{e.ID}) {
		t.Fatalf("second Allocate committed %+v; want nothing written, the next pass asked for", c)
	}
	if n := len(l.audit(e.ID)); n != 1 {
		t.Fatalf("%d events after a second Allocate, want 1", n)
	}
}

// The same enforcement failure again is recorded once.
func TestLifecycle_EnforceFailedAuditsANewReasonOnly(t *testing.T) {
	l := newLab(t)
	e := l.environment("api")
	for range 3 {
		if err := l.svc.EnforceFailed(l.ctx, "req_create", e.ID, "provisioning: busy"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.svc.EnforceFailed(l.ctx, "req_create", e.ID, "provisioning: gone"); err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, ev := range l.audit(e.ID) {
		if ev.Action != "environment.enforce_failed" || ev.Outcome != apiv1.OutcomeFailure {
			t.Fatalf("event %+v", ev)
		}
		reasons = append(reasons, ev.Reason)
	}
	if !slices.Equal(reasons, []string{"provisioning: busy", "provisioning: gone"}) {
		t.Fatalf("reasons audited: %q", reasons)
	}
	if got := l.get(e.ID); got.State != apiv1.StatePending || got.Enforcement.Enforced || got.Enforcement.Message != "provisioning: gone" {
		t.Fatalf("after the failures: %+v", got)
	}
}

// Removing a deleted environment deletes the policy it owns and the
// environment, frees its address on the service's clock, and credits the
// removal to the delete's request whatever caused the pass.
func TestLifecycle_RemoveDeletesWhatTheEnvironmentOwnsAndCreditsTheDelete(t *testing.T) {
	l := newLab(t)
	e := l.environment("api")
	if _, err := l.svc.Allocate(l.ctx, "req_create", e.ID); err != nil {
		t.Fatal(err)
	}
	now := l.clock.Now()
	owned := apiv1.Policy{
		ID: control.NewID("pol_"), ProjectID: l.prj.ID, OwnerEnvironmentID: e.ID, Generation: 1, ETag: `"1"`, CreatedAt: now, UpdatedAt: now,
		PolicySpec: apiv1.PolicySpec{Name: "owned", PolicyTypes: []string{apiv1.Egress}},
	}
	l.update(func(tx store.Tx) error {
		if err := tx.CreatePolicy(l.ctx, owned); err != nil {
			return err
		}
		cur, err := tx.GetEnvironment(l.ctx, e.ID)
		if err != nil {
			return err
		}
		cur.State = apiv1.StateDeleting
		if err := tx.UpdateEnvironment(l.ctx, cur); err != nil {
			return err
		}
		del := l.svc.Event(control.Call{RequestID: "req_delete", Status: 202}, "environment.delete",
			apiv1.ResourceRef{Type: "environment", ID: e.ID}, l.prj.ID, apiv1.OutcomeSuccess)
		_, err = tx.AppendAudit(l.ctx, del)
		return err
	})

	l.clock.Advance(time.Hour)
	if err := l.svc.Remove(l.ctx, "rec_retry", e.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := l.st.GetEnvironment(l.ctx, e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the environment is still there: %v", err)
	}
	if _, err := l.st.GetPolicy(l.ctx, owned.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("its policy is still there: %v", err)
	}
	addrs, err := l.st.ListAddresses(l.ctx, store.AddressQuery{First: ipAddr(t, "198.18.0.1"), Last: ipAddr(t, "198.18.0.1")})
	if err != nil || len(addrs) != 1 || addrs[0].Held() || !addrs[0].FreedAt.Equal(l.clock.Now()) {
		t.Fatalf("address record %+v %v; want it freed now", addrs, err)
	}
	c := l.last()
	if len(c.Events) != 1 {
		t.Fatalf("remove committed %d events, want 1", len(c.Events))
	}
	ev := c.Events[0]
	if ev.Action != "environment.remove" || ev.RequestID != "req_delete" || ev.Reason != "torn down after it was deleting" ||
		ev.Changes == nil || ev.Changes.After != nil || ev.Actor != control.ServerActor {
		t.Fatalf("remove event: %+v", ev)
	}
	if err := l.svc.Remove(l.ctx, "rec_again", e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removing it again: %v, want not found", err)
	}
}

func ipAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
