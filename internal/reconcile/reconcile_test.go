package reconcile

import (
	"errors"
	"testing"
	"time"
)

func TestIPAM_HandsOutUsableAddressesUntilThePoolIsExhausted(t *testing.T) {
	m, err := NewIPAM("198.18.0.0/30")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := m.Allocate("a")
	b, _ := m.Allocate("b")
	if a != "198.18.0.1" || b != "198.18.0.2" {
		t.Fatalf("a=%s b=%s: network and broadcast addresses must not be used", a, b)
	}
	if again, _ := m.Allocate("a"); again != a {
		t.Fatalf("a second allocation for the same id moved it: %s", again)
	}
	if _, err := m.Allocate("c"); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("third allocation: %v, want ErrPoolExhausted", err)
	}
	m.Release("a", a)
	if c, err := m.Allocate("c"); err != nil || c != a {
		t.Fatalf("after release: %s %v", c, err)
	}
	if _, err := NewIPAM("10.0.0.1/8"); err == nil {
		t.Fatal("a pool with host bits set was accepted")
	}
	v6, _ := NewIPAM("2001:db8::/126")
	if x, _ := v6.Allocate("x"); x != "2001:db8::1" {
		t.Fatalf("IPv6 first address %s", x)
	}
}

func TestIPAM_ReserveRebuildsFromTheStore(t *testing.T) {
	m, _ := NewIPAM("10.0.0.0/29")
	m.Reserve("old", "10.0.0.1")
	m.Reserve("elsewhere", "192.0.2.1") // outside the pool: ignored
	if a, _ := m.Allocate("new"); a == "10.0.0.1" {
		t.Fatal("a reserved address was handed out again")
	}
}

func TestDeadlines_WakeAtTheEarliestDeadlineOnly(t *testing.T) {
	d := newDeadlines(time.Now)
	defer d.stop()
	d.set("late", time.Now().Add(time.Hour))
	d.set("soon", time.Now().Add(20*time.Millisecond))
	d.set("cancelled", time.Now().Add(10*time.Millisecond))
	d.set("cancelled", time.Time{})
	select {
	case <-d.wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up for the earliest deadline")
	}
	due := d.due()
	for len(due) == 0 { // a wake-up for the cancelled entry can precede "soon"
		select {
		case <-d.wake:
		case <-time.After(5 * time.Second):
			t.Fatal("no wake-up for soon")
		}
		due = d.due()
	}
	if len(due) != 1 || due[0] != "soon" {
		t.Fatalf("due %v, want [soon]", due)
	}
}

func TestHub_WakesEveryWaiterOfAnIDOnce(t *testing.T) {
	h := NewHub()
	a, b := h.Changed("x"), h.Changed("x")
	other := h.Changed("y")
	h.Notify("x")
	for _, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		default:
			t.Fatal("a waiter was not woken")
		}
	}
	select {
	case <-other:
		t.Fatal("a waiter of another id was woken")
	default:
	}
	select {
	case <-h.Changed("x"):
		t.Fatal("a new wait saw the old change")
	default:
	}
}
