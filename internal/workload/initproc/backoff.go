package initproc

import (
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// crashLoopRuns is how many consecutive quick exits make a command
// crash-looping.
const crashLoopRuns = 3

// backoff decides when an exited command starts again: the delay doubles
// after each run shorter than healthy, up to max, and a run that lasted
// healthy starts the count again.
type backoff struct {
	initial, max, healthy time.Duration

	next  time.Duration // the delay before the next restart
	quick int           // consecutive runs shorter than healthy
}

func newBackoff(c Config) *backoff {
	return &backoff{initial: c.Backoff, max: c.MaxBackoff, healthy: c.Healthy, next: c.Backoff}
}

// exited records a run that lasted ran and returns the delay before the
// next one and whether the command is crash-looping.
func (b *backoff) exited(ran time.Duration) (delay time.Duration, looping bool) {
	if ran >= b.healthy {
		b.next, b.quick = b.initial, 0
	} else {
		b.quick++
	}
	delay = b.next
	b.next = min(b.next*2, b.max)
	return delay, b.quick >= crashLoopRuns
}

// restarts reports whether policy restarts a command that exited with code.
func restarts(policy string, code int) bool {
	switch policy {
	case apiv1.RestartAlways:
		return true
	case apiv1.RestartOnFailure:
		return code != 0
	}
	return false
}
