package reconcile

import (
	"context"
	"fmt"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
)

// Drift repair: every DriftInterval the driver verifies what the kernel
// holds (enforce.Driver.Verify). An environment found drifted is recorded
// not enforced, with the reason (control.Drifted, which reconciles it);
// its next pass provisions it again, as after a restart, re-applies its
// rules, starts its workload again when its namespace was recreated, and
// records the repair (environment.repair) with what drifted and what was
// done.

// drift is what the reconciler remembers of an environment's drift until
// a pass repairs it.
type drift struct {
	reasons   []string
	recreated bool
	// seq counts the reports: a pass that began before the last one
	// did not repair it.
	seq int
}

// watchDrift verifies the driver's environments every interval.
func (r *Reconciler) watchDrift(ctx context.Context) {
	t := r.clock.NewTicker(r.opts.DriftInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.stopTimer:
			return
		case <-t.Chan():
			r.verify(ctx)
		}
	}
}

// verify records the drift the driver reports.
func (r *Reconciler) verify(ctx context.Context) {
	drifts, err := r.opts.Driver.Verify(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("verify the driver's kernel objects", "error", err.Error())
		}
		return
	}
	for _, d := range drifts {
		r.noteDrift(d)
		cause := control.NewID("rec_")
		r.log.Warn("kernel drift; repairing", "environment_id", d.EnvID, "reason", d.Reason, "request_id", cause)
		if err := r.ctl.Drifted(ctx, cause, d.EnvID, d.Reason); err != nil {
			if ctx.Err() != nil {
				return
			}
			// The repair does not wait for the record.
			r.log.Error("record drift", "environment_id", d.EnvID, "error", err.Error())
			r.queue.add(cause, d.EnvID)
		}
	}
}

// noteDrift makes d's environment's next pass provision it again (and
// start its workload again, when its namespace is new).
func (r *Reconciler) noteDrift(d enforce.Drift) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dr := r.drifted[d.EnvID]
	if dr == nil {
		dr = &drift{}
		r.drifted[d.EnvID] = dr
	}
	if !strings.Contains(strings.Join(dr.reasons, "\x00"), d.Reason) {
		dr.reasons = append(dr.reasons, d.Reason)
	}
	dr.recreated = dr.recreated || d.Recreated
	dr.seq++
	delete(r.applied, d.EnvID)
	if d.Recreated {
		r.ensure[d.EnvID] = true
	}
}

// driftSeq is how many drift reports of id are waiting for a repair
// (0: none), as a pass that is about to provision id sees them.
func (r *Reconciler) driftSeq(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if dr := r.drifted[id]; dr != nil {
		return dr.seq
	}
	return 0
}

// repairText says what drifted of id and what its pass did about it, or
// is "" when the pass (which saw seq) repaired no drift.
func (r *Reconciler) repairText(id string, seq int, rules int64) string {
	r.mu.Lock()
	dr := r.drifted[id]
	r.mu.Unlock()
	if dr == nil || seq == 0 {
		return ""
	}
	done := "provisioned again"
	if dr.recreated {
		done = "namespace recreated"
	}
	done += fmt.Sprintf(", rules generation %d applied", rules)
	return strings.Join(dr.reasons, "; ") + "; repaired: " + done
}

// repaired forgets id's drift once its repair is recorded, unless more
// was reported since the pass (which saw seq) provisioned it: the pass
// that report queued repairs that.
func (r *Reconciler) repaired(id string, seq int) {
	r.mu.Lock()
	if dr := r.drifted[id]; dr != nil && dr.seq == seq {
		delete(r.drifted, id)
	}
	r.mu.Unlock()
}
