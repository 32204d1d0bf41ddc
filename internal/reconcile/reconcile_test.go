package reconcile

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestDeadlines_WakeAtTheEarliestDeadlineOnly(t *testing.T) {
	d := newDeadlines(clockwork.NewRealClock())
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
