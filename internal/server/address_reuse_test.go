package server_test

// Addresses are never handed out again while a rule may still name them:
// the allocator's state is in the SQLite file, so a real restart keeps the
// quarantine, and the clock is a fake one the test moves.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/simulate"
)

// newFakeClock is the server's clock in these tests: it moves only when
// the test advances it, timers (TTL deadlines, retries) included.
func newFakeClock() *clockwork.FakeClock {
	return clockwork.NewFakeClockAt(time.Now().UTC().Truncate(time.Second))
}

// createIn creates an environment in project and waits until it is ready
// or failed; a failure is returned as the *client.StateError.
func (l *apiLab) createIn(project, name string, ttl *int64) (apiv1.Environment, error) {
	e, err := l.c.Environments().Create(l.ctx, apiv1.EnvironmentCreate{ProjectID: project, Name: name, TTLSeconds: ttl})
	if err != nil {
		return apiv1.Environment{}, err
	}
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	got, err := l.c.Environments().WaitFor(ctx, e.ID, apiv1.StateReady)
	if got == nil {
		return apiv1.Environment{}, err
	}
	return *got, err
}

func (l *apiLab) mustCreateIn(project, name string, ttl *int64) apiv1.Environment {
	l.tb.Helper()
	e, err := l.createIn(project, name, ttl)
	if err != nil {
		l.tb.Fatalf("create %s: %v", name, err)
	}
	return e
}

func (l *apiLab) newProject(name string) apiv1.Project {
	l.tb.Helper()
	p, err := l.c.Projects().Create(l.ctx, apiv1.ProjectCreate{Name: name})
	if err != nil {
		l.tb.Fatal(err)
	}
	return *p
}

// holders maps every address the server's environments hold to the
// environment, across projects.
func (l *apiLab) holders() map[string]string {
	l.tb.Helper()
	envs, err := l.c.Environments().List(l.ctx, client.ListOptions{})
	if err != nil {
		l.tb.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range envs {
		if e.Enforcement.Address != "" {
			out[e.Enforcement.Address] = e.ID
		}
	}
	return out
}

// pinningPolicy lets into target, on 5432, the one address pinned, as a
// CIDR (the way that outlives the environment that had it).
func pinningPolicy(target apiv1.Environment, pinned string) apiv1.PolicySpec {
	return apiv1.PolicySpec{
		Name: "pin-" + target.Name, PolicyTypes: []string{apiv1.Ingress},
		EnvironmentSelector: selector(map[string]string{"app": target.Labels["app"]}),
		Ingress:             []apiv1.IngressRule{{From: []apiv1.Peer{{CIDR: pinned + "/32"}}, Ports: []apiv1.Port{tcpPort(5432)}}},
	}
}

// An expired and a deleted environment's addresses survive a real restart
// in quarantine: another project's new environments get a never-used
// address, then none (the pool is full of held and quarantined ones, and
// the failure says so), and only after the quarantine, on the fake clock,
// the freed addresses come back least recently freed first. Until then the
// CIDR rule that pinned the expired environment's address admits nobody
// new (checked with the simulate driver's check).
func TestAddressReuse_FreedAddressesStayQuarantinedAcrossARestart(t *testing.T) {
	clock := newFakeClock()
	cfg := labConfig(t, simulate.Name)
	cfg.AddressPool, cfg.Clock = "198.18.0.0/29", clock // six addresses: .1 to .6
	l := startLab(t, cfg)
	b := l.project // project B
	ttl := int64(60)
	expiring := l.mustCreateIn(b.ID, "expiring", &ttl)
	db, err := l.c.Environments().Create(l.ctx, apiv1.EnvironmentCreate{ProjectID: b.ID, Name: "db", Labels: map[string]string{"app": "db"}})
	if err != nil {
		t.Fatal(err)
	}
	deleted := l.mustCreateIn(b.ID, "deleted", nil)
	l.mustCreateIn(b.ID, "b4", nil)
	l.mustCreateIn(b.ID, "b5", nil)
	l.mustEnforce([]apiv1.Environment{*db})
	pinned := expiring.Enforcement.Address
	pol := l.createPolicy(pinningPolicy(apiv1.Environment{Name: "db", Labels: db.Labels}, pinned))
	l.mustEnforce([]apiv1.Environment{*db})
	from := func(addr string) apiv1.CheckRequest {
		return apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: apiv1.ProtocolTCP, Address: addr, Port: 5432}
	}
	if ok, err := l.oracle(db.ID, from(pinned)); err != nil || !ok {
		t.Fatalf("policy %s does not admit the pinned %s: %v %v", pol.ID, pinned, ok, err)
	}

	// deleted goes first, half a minute before expiring's TTL passes
	// (moving the clock past it would fire the TTL's deadline).
	clock.Advance(30 * time.Second)
	if err := l.c.Environments().Delete(l.ctx, deleted.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitGone(t, l, deleted.ID)
	l.shutdown()
	clock.Advance(time.Minute) // expiring's TTL has passed: the restart expires it
	l.start()
	waitGone(t, l, expiring.ID)
	freedFirst, freedLast := clock.Now().Add(-time.Minute), clock.Now()

	a := l.newProject("project-a")
	fresh := l.mustCreateIn(a.ID, "fresh", nil)
	if fresh.Enforcement.Address != "198.18.0.6" {
		t.Fatalf("first environment of project A after the restart got %s; want the never-used 198.18.0.6, not a quarantined one (%s, %s)",
			fresh.Enforcement.Address, pinned, deleted.Enforcement.Address)
	}
	full, err := l.createIn(a.ID, "full", nil)
	var se *client.StateError
	wantMsg := []string{"198.18.0.0/29", "2 freed ones quarantined for 24h0m0s",
		"first is free again at " + freedFirst.Add(24*time.Hour).Format(time.RFC3339), "last at " + freedLast.Add(24*time.Hour).Format(time.RFC3339)}
	if !errors.As(err, &se) || full.State != apiv1.StateFailed {
		t.Fatalf("environment created with every address held or quarantined: %+v, %v; want it failed", full, err)
	}
	for _, w := range wantMsg {
		if !strings.Contains(full.StateMessage, w) {
			t.Fatalf("exhaustion message %q does not say %q", full.StateMessage, w)
		}
	}
	// The pinning rule admits nobody new: no environment holds the pinned
	// address, and the new one's is refused.
	if h, ok := l.holders()[pinned]; ok {
		t.Fatalf("the pinned %s is held by %s within its quarantine", pinned, h)
	}
	if ok, err := l.oracle(db.ID, from(fresh.Enforcement.Address)); err != nil || ok {
		t.Fatalf("the pinning rule admits the new environment %s: %v %v", fresh.Enforcement.Address, ok, err)
	}

	// After deleted's quarantine only its address is free; a minute later
	// expiring's is.
	clock.Advance(24*time.Hour - 30*time.Second)
	if got := l.mustCreateIn(a.ID, "reuse-1", nil); got.Enforcement.Address != deleted.Enforcement.Address {
		t.Fatalf("first reuse got %s; want %s, freed longest ago", got.Enforcement.Address, deleted.Enforcement.Address)
	}
	if _, err := l.createIn(a.ID, "too-early", nil); !errors.As(err, &se) {
		t.Fatalf("the pinned %s came back before its quarantine ended: %v", pinned, err)
	}
	clock.Advance(time.Minute)
	if got := l.mustCreateIn(a.ID, "reuse-2", nil); got.Enforcement.Address != pinned {
		t.Fatalf("second reuse got %s; want the pinned %s once its quarantine is over", got.Enforcement.Address, pinned)
	}
}

func waitGone(t *testing.T, l *apiLab, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	if err := l.c.Environments().WaitDeleted(ctx, id); err != nil {
		t.Fatalf("environment %s not gone: %v", id, err)
	}
}
