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
