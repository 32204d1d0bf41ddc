package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// ipamLab is an allocator over a real SQLite file, with a clock the test moves.
type ipamLab struct {
	t    *testing.T
	path string
	st   *store.SQLite
	m    *Allocator
	now  time.Time
}

func newIPAMLab(t *testing.T, pool string, quarantine time.Duration) *ipamLab {
	t.Helper()
	m, err := New(pool, quarantine)
	if err != nil {
		t.Fatal(err)
	}
	l := &ipamLab{t: t, path: filepath.Join(t.TempDir(), "isolationd.db"), m: m, now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	l.open()
	t.Cleanup(func() { l.st.Close() })
	return l
}

func (l *ipamLab) open() {
	l.t.Helper()
	st, err := store.OpenSQLite(context.Background(), l.path)
	if err != nil {
		l.t.Fatal(err)
	}
	l.st = st
}

// reopen closes the store and opens the file again with a new allocator, as a
// restart of isolationd does.
func (l *ipamLab) reopen() {
	l.t.Helper()
	if err := l.st.Close(); err != nil {
		l.t.Fatal(err)
	}
	l.open()
	m, err := New(l.m.pool.String(), l.m.quarantine)
	if err != nil {
		l.t.Fatal(err)
	}
	m.excluded, m.pool6 = l.m.excluded, l.m.pool6
	l.m = m
}

func labEnv(id string) apiv1.Environment {
	return apiv1.Environment{ID: id, ProjectID: "prj_" + id}
}

func (l *ipamLab) allocate(id string) (string, error) {
	var a netip.Addr
	err := l.st.Update(context.Background(), func(tx store.Tx) (err error) {
		a, err = l.m.Allocate(context.Background(), tx, labEnv(id), l.now)
		return err
	})
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

func (l *ipamLab) mustAllocate(id string) string {
	l.t.Helper()
	a, err := l.allocate(id)
	if err != nil {
		l.t.Fatalf("allocate for %s: %v", id, err)
	}
	return a
}

func (l *ipamLab) release(id, addr string) {
	l.t.Helper()
	env := labEnv(id)
	env.Enforcement.Address = addr
	if err := l.st.Update(context.Background(), func(tx store.Tx) error {
		return l.m.Release(context.Background(), tx, env, l.now)
	}); err != nil {
		l.t.Fatal(err)
	}
}

func TestIPAM_HandsOutUsableAddressesInOrderUntilThePoolIsExhausted(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/30", DefaultQuarantine)
	if a, b := l.mustAllocate("a"), l.mustAllocate("b"); a != "198.18.0.1" || b != "198.18.0.2" {
		t.Fatalf("a=%s b=%s: network and broadcast addresses must not be used", a, b)
	}
	_, err := l.allocate("c")
	if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "198.18.0.0/30") || !strings.Contains(err.Error(), "held by an environment (2)") {
		t.Fatalf("third allocation: %v, want ErrPoolExhausted naming the pool and the 2 addresses held", err)
	}
	if _, err := New("10.0.0.1/8", 0); err == nil {
		t.Fatal("a pool with host bits set was accepted")
	}
	if _, err := New("::ffff:198.18.0.0/112", 0); err == nil {
		t.Fatal("an IPv4-mapped IPv6 pool was accepted")
	}
	if _, err := New("198.18.0.0/24", -time.Second); err == nil {
		t.Fatal("a negative quarantine was accepted")
	}
}

// A freed address is not handed out during its quarantine, and the
// exhaustion error says how many are quarantined and until when; after it
// addresses come back least recently freed first.
func TestIPAM_FreedAddressesAreQuarantinedThenReusedLeastRecentlyFreedFirst(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/29", 24*time.Hour)
	t0 := l.now
	addrs := map[string]string{}
	for _, id := range []string{"e1", "e2", "e3", "e4", "e5", "e6"} {
		addrs[id] = l.mustAllocate(id)
	}
	l.release("e3", addrs["e3"])
	l.now = t0.Add(time.Hour)
	l.release("e1", addrs["e1"])
	l.now = t0.Add(2 * time.Hour)
	l.release("e5", addrs["e5"])

	_, err := l.allocate("new")
	want := []string{"198.18.0.0/29", "3 addresses held", "3 freed ones quarantined for 24h0m0s",
		"first is free again at " + t0.Add(24*time.Hour).Format(time.RFC3339), "last at " + t0.Add(26*time.Hour).Format(time.RFC3339)}
	for _, w := range want {
		if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), w) {
			t.Fatalf("allocation within the quarantine: %v; want ErrPoolExhausted saying %q", err, w)
		}
	}
	l.now = t0.Add(24*time.Hour + 30*time.Minute)
	if got := l.mustAllocate("n1"); got != addrs["e3"] {
		t.Fatalf("first address after e3's quarantine: %s, want e3's %s (freed longest ago)", got, addrs["e3"])
	}
	if _, err := l.allocate("n2"); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("e1's address came back before its quarantine ended: %v", err)
	}
	l.now = t0.Add(27 * time.Hour)
	if a, b := l.mustAllocate("n2"), l.mustAllocate("n3"); a != addrs["e1"] || b != addrs["e5"] {
		t.Fatalf("after every quarantine: %s then %s, want e1's %s then e5's %s", a, b, addrs["e1"], addrs["e5"])
	}
}

func TestIPAM_NeverUsedAddressesGoBeforeFreedOnes(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/29", time.Hour)
	a := l.mustAllocate("a")
	l.release("a", a)
	l.now = l.now.Add(48 * time.Hour)
	if b := l.mustAllocate("b"); b == a || b != "198.18.0.2" {
		t.Fatalf("allocation after a's quarantine: %s; want the never-used 198.18.0.2 before a's %s", b, a)
	}
}

// The quarantine, the order of reuse and where the search for a new
// address resumes are in the store: a restart changes none of them.
func TestIPAM_StateSurvivesARestart(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/30", 24*time.Hour)
	a, b := l.mustAllocate("a"), l.mustAllocate("b")
	l.release("a", a)
	l.reopen()
	l.now = l.now.Add(time.Hour)
	if _, err := l.allocate("c"); !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "1 freed ones quarantined") {
		t.Fatalf("after a restart, within a's quarantine: %v; want ErrPoolExhausted with 1 quarantined", err)
	}
	l.release("b", b)
	l.reopen()
	l.now = l.now.Add(24 * time.Hour)
	if c := l.mustAllocate("c"); c != a {
		t.Fatalf("after the restarts and a's quarantine: %s, want a's %s (freed first)", c, a)
	}
}

func TestIPAM_IPv6PoolsQuarantineToo(t *testing.T) {
	l := newIPAMLab(t, "2001:db8::/125", time.Hour)
	x := l.mustAllocate("x")
	if x != "2001:db8::1" {
		t.Fatalf("IPv6 first address %s; the subnet-router anycast address must not be used", x)
	}
	l.release("x", x)
	for i := range 6 {
		if got := l.mustAllocate("y" + string(rune('a'+i))); got == x {
			t.Fatalf("freed %s handed out again within its quarantine", x)
		}
	}
	if _, err := l.allocate("z"); !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "2001:db8::/125") {
		t.Fatalf("full IPv6 pool: %v", err)
	}
	l.now = l.now.Add(time.Hour)
	if got := l.mustAllocate("z"); got != x {
		t.Fatalf("after the quarantine: %s, want %s", got, x)
	}
}

// The gateway is never handed out, even when a record from another
// configuration says it was freed.
func TestIPAM_ExcludedAddressIsNeverHandedOut(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/29", 0)
	first := l.mustAllocate("old")
	l.release("old", first)
	l.m.Exclude(netip.MustParseAddr(first))
	var got []string
	for i := range 5 {
		got = append(got, l.mustAllocate("e"+string(rune('a'+i))))
	}
	if _, err := l.allocate("more"); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("got %v then %v; want the pool exhausted with %s excluded", got, err, first)
	}
	for _, a := range got {
		if a == first {
			t.Fatalf("the excluded %s was handed out: %v", first, got)
		}
	}
}

// Environments are the truth at start: an address an environment holds
// without a record (a store from before records) gets one, so it is not
// handed out twice and is quarantined once freed.
func TestIPAM_AdoptRecordsAddressesEnvironmentsHold(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/30", time.Hour)
	old := labEnv("old")
	old.Enforcement.Address = "198.18.0.1"
	elsewhere := labEnv("elsewhere")
	elsewhere.Enforcement.Address = "192.0.2.1" // outside the pool: kept by its environment
	if err := l.st.Update(context.Background(), func(tx store.Tx) error {
		return l.m.Adopt(context.Background(), tx, []apiv1.Environment{old, elsewhere, labEnv("none")}, l.now)
	}); err != nil {
		t.Fatal(err)
	}
	if a := l.mustAllocate("new"); a != "198.18.0.2" {
		t.Fatalf("allocation after adopting 198.18.0.1: %s, want 198.18.0.2", a)
	}
	l.release("old", old.Enforcement.Address)
	if _, err := l.allocate("next"); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("the adopted address came back within its quarantine: %v", err)
	}
	rec, err := l.st.GetAddress(context.Background(), netip.MustParseAddr("192.0.2.1"))
	if err != nil || rec.EnvironmentID != "elsewhere" {
		t.Fatalf("address outside the pool: %+v %v; want it recorded as held by its environment", rec, err)
	}
}

func TestIPAM_ReleaseLeavesAnotherHoldersAddressAlone(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/30", time.Hour)
	a := l.mustAllocate("a")
	l.release("impostor", a)
	rec, err := l.st.GetAddress(context.Background(), netip.MustParseAddr(a))
	if err != nil || rec.EnvironmentID != "a" || !rec.FreedAt.IsZero() {
		t.Fatalf("record of %s after another environment released it: %+v %v", a, rec, err)
	}
}

// Covered finds other projects' environments behind a CIDR, less its
// exceptions, IPv6 companions included.
func TestIPAM_CoveredFindsOtherProjectsAddressesAndCompanions(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/24", time.Hour)
	l.m.SetCompanionPool(netip.MustParsePrefix("fd00:198:18::/96"))
	for _, id := range []string{"a", "b", "c"} {
		l.mustAllocate(id) // 198.18.0.1, .2, .3, each in a project of its own
	}
	ctx := context.Background()
	check := func(peer apiv1.Peer, project string, limit int, want []string, wantMore bool) {
		t.Helper()
		got, more, err := l.m.Covered(ctx, l.st, peer, project, limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range got {
			ids = append(ids, h.EnvironmentID+"@"+h.Addr.String())
		}
		if strings.Join(ids, " ") != strings.Join(want, " ") || more != wantMore {
			t.Fatalf("%+v for %s: %v more=%v; want %v more=%v", peer, project, ids, more, want, wantMore)
		}
	}
	check(apiv1.Peer{CIDR: "198.18.0.0/30"}, "prj_a", 10, []string{"b@198.18.0.2", "c@198.18.0.3"}, false)
	check(apiv1.Peer{CIDR: "198.18.0.0/24", Except: []string{"198.18.0.2/32"}}, "prj_x", 10, []string{"a@198.18.0.1", "c@198.18.0.3"}, false)
	check(apiv1.Peer{CIDR: "198.18.0.0/24"}, "prj_x", 2, []string{"a@198.18.0.1", "b@198.18.0.2"}, true)
	check(apiv1.Peer{CIDR: "fd00:198:18::c612:2/128"}, "prj_a", 10, []string{"b@fd00:198:18::c612:2"}, false)
	check(apiv1.Peer{CIDR: "fd00:198:18::/64", Except: []string{"fd00:198:18::c612:1/128"}}, "prj_c", 10, []string{"b@fd00:198:18::c612:2"}, false)
	check(apiv1.Peer{CIDR: "fd00:198:19::/96"}, "prj_x", 10, nil, false)
	check(apiv1.Peer{EnvironmentSelector: &apiv1.Selector{}}, "prj_x", 10, nil, false)
	l.release("b", "198.18.0.2")
	check(apiv1.Peer{CIDR: "198.18.0.2/32"}, "prj_x", 10, nil, false)
}

// A start never fails on records that disagree with the environments: an
// environment recorded at another address holds the one it has, and the
// other is freed into quarantine.
func TestIPAM_AdoptMovesARecordThatDisagreesIntoQuarantine(t *testing.T) {
	l := newIPAMLab(t, "198.18.0.0/29", time.Hour)
	recorded := l.mustAllocate("moved") // 198.18.0.1
	moved := labEnv("moved")
	moved.Enforcement.Address = "198.18.0.5"
	if err := l.st.Update(context.Background(), func(tx store.Tx) error {
		return l.m.Adopt(context.Background(), tx, []apiv1.Environment{moved}, l.now)
	}); err != nil {
		t.Fatalf("adopt with a disagreeing record: %v", err)
	}
	for i := range 4 { // .2, .3, .4, .6
		if a := l.mustAllocate(fmt.Sprint("e", i)); a == recorded || a == moved.Enforcement.Address {
			t.Fatalf("allocation %d got %s: the environment's %s and the quarantined %s must not be handed out", i, a, moved.Enforcement.Address, recorded)
		}
	}
	if _, err := l.allocate("full"); !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "1 freed ones quarantined") {
		t.Fatalf("pool with the stale record freed: %v; want exhausted with 1 quarantined", err)
	}
}
