package reconcile

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/control/controltest"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/simulate"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// flakyDriver is the simulate driver with failures injected in front of
// it: Provision and Apply fail while their budgets last, and Apply can be
// held after its failures so a test can look at the state in between.
type flakyDriver struct {
	*simulate.Driver
	mu                        sync.Mutex
	provisionFails, applyFail int // failures still to inject (-1: forever)
	provisionCalls, applyCall int
	hold                      chan struct{} // when set, the Apply after the failures waits for it to close
	held                      chan struct{} // closed when that Apply is waiting
}

var errInjected = errors.New("nft: netlink receive: device or resource busy")

func (d *flakyDriver) Provision(ctx context.Context, id, addr string) (enforce.Endpoint, error) {
	d.mu.Lock()
	d.provisionCalls++
	fail := d.provisionFails != 0
	if d.provisionFails > 0 {
		d.provisionFails--
	}
	d.mu.Unlock()
	if fail {
		return enforce.Endpoint{}, errInjected
	}
	return d.Driver.Provision(ctx, id, addr)
}

func (d *flakyDriver) Apply(ctx context.Context, id string, p apiv1.EffectivePolicy) error {
	d.mu.Lock()
	d.applyCall++
	fail := d.applyFail != 0
	if d.applyFail > 0 {
		d.applyFail--
	}
	hold, held := d.hold, d.held
	if !fail && hold != nil {
		d.hold, d.held = nil, nil
	}
	d.mu.Unlock()
	if fail {
		return errInjected
	}
	if hold != nil {
		close(held)
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return d.Driver.Apply(ctx, id, p)
}

// calls reports how many times Provision and Apply were called.
func (d *flakyDriver) calls() (provision, apply int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.provisionCalls, d.applyCall
}

func (d *flakyDriver) set(fn func(d *flakyDriver)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d)
}

// fixture is a running reconciler on a real SQLite store, with changes
// made the way the API makes them: in one transaction that asks for what
// it affects to be reconciled, which the store's announcement queues.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	store   *store.SQLite
	driver  *flakyDriver
	ctl     *control.Service
	commits *commits
	rec     *Reconciler
	prj     apiv1.Project
	mu      sync.Mutex // guards rec, which a test may replace
}

func newFixture(t *testing.T, tune func(*Options)) *fixture {
	t.Helper()
	return newFixtureAt(t, clockwork.NewRealClock(), tune)
}

// newFixtureAt is newFixture on clock.
func newFixtureAt(t *testing.T, clock clockwork.Clock, tune func(*Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, ctx: ctx, driver: &flakyDriver{Driver: simulate.New()}, commits: newCommits()}
	f.store, f.ctl = controltest.Service(t, clock, f.driver.Name())
	st := f.store
	opts := Options{Store: st, Control: f.ctl, Driver: f.driver, RetryBase: time.Millisecond, RetryMax: 20 * time.Millisecond}
	if tune != nil {
		tune(&opts)
	}
	f.use(New(opts))
	if err := f.rec.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st.Subscribe(f.commits.committed)
	st.Subscribe(func(c store.Commit) { f.reconciler().Committed(c) })
	t.Cleanup(func() {
		if err := f.reconciler().Stop(context.Background()); err != nil {
			t.Errorf("stop the reconciler: %v", err)
		}
	})
	f.prj = controltest.Project(t, st, "payments", time.Now().UTC())
	return f
}

func (f *fixture) update(fn func(tx store.Tx) error) {
	f.t.Helper()
	if err := f.store.Update(f.ctx, fn); err != nil {
		f.t.Fatal(err)
	}
}

// createEnvironment stores a pending environment and queues it under requestID.
func (f *fixture) createEnvironment(name, requestID string) apiv1.Environment {
	f.t.Helper()
	now := time.Now().UTC()
	e := apiv1.Environment{
		ID: control.NewID("env_"), ProjectID: f.prj.ID, Name: name, Labels: map[string]string{"app": name},
		Resources: apiv1.Resources{CPUMillis: 1000, MemoryMB: 1024, DiskGB: 10},
		State:     apiv1.StatePending, Generation: 1, ETag: `"1"`, CreatedAt: now, UpdatedAt: now,
		Enforcement: apiv1.Enforcement{Driver: simulate.Name, Generation: 1},
	}
	f.update(func(tx store.Tx) error {
		tx.Reconcile(requestID, e.ID)
		return tx.CreateEnvironment(f.ctx, e)
	})
	return e
}

// createPolicy stores a policy allowing egress to tcp/443 anywhere for
// the environments labelled app=name, and queues what it affects.
func (f *fixture) createPolicy(app, requestID string) {
	f.t.Helper()
	port := 443
	now := time.Now().UTC()
	p := apiv1.Policy{
		ID: control.NewID("pol_"), ProjectID: f.prj.ID, Generation: 1, ETag: `"1"`, CreatedAt: now, UpdatedAt: now,
		PolicySpec: apiv1.PolicySpec{
			Name:                "web-" + app,
			EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{"app": app}},
			PolicyTypes:         []string{apiv1.Egress},
			Egress:              []apiv1.EgressRule{{To: []apiv1.Peer{{CIDR: "0.0.0.0/0"}}, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: &port}}}},
		},
	}
	f.update(func(tx store.Tx) error {
		if err := tx.CreatePolicy(f.ctx, p); err != nil {
			return err
		}
		affected, err := control.PolicyChangeAffects(f.ctx, tx, nil, &p)
		if err != nil {
			return err
		}
		bumped, err := control.Invalidate(f.ctx, tx, affected, "")
		tx.Reconcile(requestID, bumped...)
		return err
	})
}

// deleteEnvironment marks an environment deleting and queues it.
func (f *fixture) deleteEnvironment(id, requestID string) {
	f.t.Helper()
	f.update(func(tx store.Tx) error {
		e, err := tx.GetEnvironment(f.ctx, id)
		if err != nil {
			return err
		}
		e.State = apiv1.StateDeleting
		if err := tx.UpdateEnvironment(f.ctx, e); err != nil {
			return err
		}
		// As the API does: the delete's event commits with the state.
		_, err = tx.AppendAudit(f.ctx, apiv1.AuditEvent{ID: control.NewID("evt_"), Time: time.Now().UTC(), RequestID: requestID,
			ProjectID: e.ProjectID, Action: "environment.delete",
			Resource: apiv1.ResourceRef{Type: "environment", ID: id}, Outcome: apiv1.OutcomeSuccess, StatusCode: 202})
		tx.Reconcile(requestID, id)
		return err
	})
}

// reconcile asks for ids to be reconciled because of requestID, in a
// transaction of its own.
func (f *fixture) reconcile(requestID string, ids ...string) {
	f.t.Helper()
	f.update(func(tx store.Tx) error { tx.Reconcile(requestID, ids...); return nil })
}

// use makes rec the fixture's reconciler, which the store's
// announcements feed.
func (f *fixture) use(rec *Reconciler) {
	f.mu.Lock()
	f.rec = rec
	f.mu.Unlock()
}

func (f *fixture) reconciler() *Reconciler {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rec
}

// commits wakes waiters on every commit the store announces.
type commits struct {
	mu sync.Mutex
	ch chan struct{}
}

func newCommits() *commits { return &commits{ch: make(chan struct{})} }

// next returns a channel closed by the next commit.
func (c *commits) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *commits) committed(store.Commit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ch)
	c.ch = make(chan struct{})
}

// waitFor returns the environment once cond holds, woken by the store's
// commits; nil when it is gone and cond accepts that.
func (f *fixture) waitFor(id, what string, cond func(e *apiv1.Environment) bool) *apiv1.Environment {
	f.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		changed := f.commits.next()
		e, err := f.store.GetEnvironment(f.ctx, id)
		var got *apiv1.Environment
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			f.t.Fatal(err)
		default:
			got = &e
		}
		if cond(got) {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			f.t.Fatalf("environment %s: not %s within 20s; last seen %+v", id, what, got)
		}
	}
}

func isEnforced(e *apiv1.Environment) bool {
	return e != nil && e.State == apiv1.StateReady && e.Enforcement.Enforced &&
		e.Enforcement.ObservedGeneration == e.Enforcement.Generation && e.Enforcement.Message == ""
}

// audit returns the audit events about an environment, oldest first.
func (f *fixture) audit(id string) []apiv1.AuditEvent {
	f.t.Helper()
	evs, _, err := f.store.ListAudit(f.ctx, store.AuditQuery{ResourceID: id, Limit: store.MaxLimit})
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

func actions(evs []apiv1.AuditEvent) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Action)
	}
	return out
}

var https = apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: apiv1.ProtocolTCP, Address: "203.0.113.9", Port: 443}

func TestEnforcement_FailedApplyKeepsReadyReportsNotEnforcedAndRetriesUntilApplied(t *testing.T) {
	f := newFixture(t, nil)
	e := f.createEnvironment("api", "req_create")
	f.waitFor(e.ID, "enforced", isEnforced)

	const failures = 5
	hold, held := make(chan struct{}), make(chan struct{})
	f.driver.set(func(d *flakyDriver) { d.applyFail, d.applyCall, d.hold, d.held = failures, 0, hold, held })
	f.createPolicy("api", "req_policy")

	// Every injected failure has happened and the next Apply is held: the
	// environment must say it is not enforced, and why, and still be ready.
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the reconciler did not retry Apply after its failures")
	}
	cur, err := f.store.GetEnvironment(f.ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cur.State != apiv1.StateReady || cur.Enforcement.Enforced || !strings.Contains(cur.Enforcement.Message, errInjected.Error()) ||
		cur.Enforcement.ObservedGeneration == cur.Enforcement.Generation {
		t.Fatalf("between failures: state %s enforcement %+v; want ready, not enforced, the reason, an old observed generation", cur.State, cur.Enforcement)
	}
	// Never allowing what was not applied: the new rule is not in force.
	if res, err := f.driver.Check(f.ctx, e.ID, https); err != nil || res.Allowed {
		t.Fatalf("check before the rules were applied: %+v, %v", res, err)
	}

	close(hold)
	done := f.waitFor(e.ID, "enforced again", isEnforced)
	if res, err := f.driver.Check(f.ctx, e.ID, https); err != nil || !res.Allowed {
		t.Fatalf("check after the rules were applied: %+v, %v", res, err)
	}
	if _, n := f.driver.calls(); n != failures+1 {
		t.Fatalf("Apply called %d times, want %d (each failure retried once)", n, failures+1)
	}
	if done.Generation != 1 {
		t.Fatalf("enforcement changed the environment's generation: %+v", done)
	}

	// The chain says what happened once per change of health, not per retry.
	evs := f.audit(e.ID)
	got := strings.Join(actions(evs), " ")
	want := "environment.provision environment.ready environment.enforce_failed environment.enforced"
	if got != want {
		t.Fatalf("audit actions:\n got %s\nwant %s", got, want)
	}
	failed, recovered := evs[2], evs[3]
	if failed.Outcome != apiv1.OutcomeFailure || !strings.Contains(failed.Reason, errInjected.Error()) || failed.RequestID != "req_policy" ||
		failed.Actor != control.ServerActor || failed.ProjectID != f.prj.ID {
		t.Fatalf("enforce_failed event: %+v", failed)
	}
	if recovered.Outcome != apiv1.OutcomeSuccess || recovered.RequestID != "req_policy" {
		t.Fatalf("enforced event: %+v", recovered)
	}
	for _, ev := range evs[:2] {
		if ev.RequestID != "req_create" {
			t.Fatalf("%s names request %q, want the create's", ev.Action, ev.RequestID)
		}
	}
}

func TestEnforcement_ProvisioningRetriesThenSucceeds(t *testing.T) {
	f := newFixture(t, nil)
	f.driver.set(func(d *flakyDriver) { d.provisionFails, d.applyFail = 2, 2 })
	e := f.createEnvironment("api", "req_create")
	got := f.waitFor(e.ID, "ready", func(e *apiv1.Environment) bool {
		return e != nil && e.State != apiv1.StateProvisioning && e.State != apiv1.StatePending
	})
	if !isEnforced(got) {
		t.Fatalf("after transient failures: %+v", got)
	}
	if p, a := f.driver.calls(); p != 5 || a != 3 {
		t.Fatalf("provision calls %d, apply calls %d; want 5 (2 failed, then 2 before failed applies, then 1) and 3", p, a)
	}
	// The failure reason was reported while provisioning, and becoming
	// ready cleared it; a single event per change of health.
	want := "environment.provision environment.enforce_failed environment.enforce_failed environment.ready"
	if got := strings.Join(actions(f.audit(e.ID)), " "); got != want {
		t.Fatalf("audit actions:\n got %s\nwant %s", got, want)
	}
}

func TestEnforcement_ProvisioningFailsAfterItsAttemptsAndIsAudited(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.ProvisionAttempts = 3 })
	f.driver.set(func(d *flakyDriver) { d.provisionFails = -1 })
	e := f.createEnvironment("api", "req_create")
	got := f.waitFor(e.ID, "failed", func(e *apiv1.Environment) bool { return e != nil && e.State == apiv1.StateFailed })
	if !strings.Contains(got.StateMessage, errInjected.Error()) || !strings.Contains(got.StateMessage, "after 3 attempts") ||
		got.Enforcement.Enforced || got.Enforcement.Message != got.StateMessage {
		t.Fatalf("failed environment: %+v", got)
	}
	if p, _ := f.driver.calls(); p != 3 {
		t.Fatalf("Provision called %d times, want 3", p)
	}
	evs := f.audit(e.ID)
	want := "environment.provision environment.enforce_failed environment.fail"
	if got := strings.Join(actions(evs), " "); got != want {
		t.Fatalf("audit actions:\n got %s\nwant %s", got, want)
	}
	if last := evs[len(evs)-1]; last.Outcome != apiv1.OutcomeFailure || last.RequestID != "req_create" {
		t.Fatalf("fail event: %+v", last)
	}
	if res, err := f.driver.Check(f.ctx, e.ID, https); err == nil && res.Allowed {
		t.Fatal("a failed environment allows traffic")
	}
}

func TestEnforcement_DeletingAnEnvironmentWhoseRulesKeepFailingRemovesIt(t *testing.T) {
	f := newFixture(t, nil)
	e := f.createEnvironment("api", "req_create")
	f.waitFor(e.ID, "enforced", isEnforced)
	f.driver.set(func(d *flakyDriver) { d.applyFail = -1 })
	f.createPolicy("api", "req_policy")
	f.waitFor(e.ID, "reporting the failure", func(e *apiv1.Environment) bool { return e != nil && e.Enforcement.Message != "" })

	f.deleteEnvironment(e.ID, "req_delete")
	f.waitFor(e.ID, "gone", func(e *apiv1.Environment) bool { return e == nil })
	if _, err := f.driver.Check(f.ctx, e.ID, https); !errors.Is(err, enforce.ErrUnknownEnvironment) {
		t.Fatalf("the driver still knows the removed environment: %v", err)
	}
	evs := f.audit(e.ID)
	last := evs[len(evs)-1]
	if last.Action != "environment.remove" || last.RequestID != "req_delete" || last.Actor != control.ServerActor || last.Changes == nil || last.Changes.After != nil {
		t.Fatalf("last event: %+v", last)
	}
	// The retries stop with the environment: it has no failures counted
	// and nothing more is applied or written for it.
	_, calls := f.driver.calls()
	if err := f.rec.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.rec.mu.Lock()
	left := f.rec.failures[e.ID]
	f.rec.mu.Unlock()
	if _, after := f.driver.calls(); after != calls || left != 0 || len(f.audit(e.ID)) != len(evs) {
		t.Fatalf("the removed environment is still being retried (apply calls %d then %d, failures %d)", calls, after, left)
	}
	res, err := store.VerifyAudit(f.ctx, f.store)
	if err != nil || !res.OK() {
		t.Fatalf("audit chain: %+v %v", res, err)
	}
}

func TestReconciler_AuditsExpiryAndRemovalUnderOneRequestID(t *testing.T) {
	now := time.Now()
	clock := clockwork.NewFakeClockAt(now)
	f := newFixtureAt(t, clock, nil)
	e := f.createEnvironment("api", "req_create")
	f.waitFor(e.ID, "enforced", isEnforced)
	f.update(func(tx store.Tx) error {
		cur, err := tx.GetEnvironment(f.ctx, e.ID)
		if err != nil {
			return err
		}
		ttl, exp := int64(60), now.Add(time.Minute).UTC()
		cur.TTLSeconds, cur.ExpiresAt = &ttl, &exp
		return tx.UpdateEnvironment(f.ctx, cur)
	})
	clock.Advance(2 * time.Minute)
	f.reconcile("", e.ID)
	f.waitFor(e.ID, "gone", func(e *apiv1.Environment) bool { return e == nil })
	evs := f.audit(e.ID)
	if len(evs) < 2 {
		t.Fatalf("events: %v", actions(evs))
	}
	exp, rm := evs[len(evs)-2], evs[len(evs)-1]
	if exp.Action != "environment.expire" || rm.Action != "environment.remove" {
		t.Fatalf("events: %v", actions(evs))
	}
	if !strings.HasPrefix(exp.RequestID, "rec_") || rm.RequestID != exp.RequestID {
		t.Fatalf("expiry %q and removal %q should share one generated request id", exp.RequestID, rm.RequestID)
	}
}

func TestBackoff_DoublesFromItsBaseUpToItsCap(t *testing.T) {
	r := New(Options{Control: control.New(control.Options{}), RetryBase: 100 * time.Millisecond, RetryMax: 5 * time.Second})
	var got []time.Duration
	for range 9 {
		_, d := r.failed("x")
		got = append(got, d)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	r.succeeded("x")
	if n, d := r.failed("x"); n != 1 || d != 100*time.Millisecond {
		t.Fatalf("after a success: attempt %d delay %s", n, d)
	}
}
