package control

import (
	"context"
	"reflect"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// runsWorkloads refuses a workload on a server that runs none, rather
// than store a spec nothing will ever run.
func (s *Service) runsWorkloads() error {
	if s.runtime == apiv1.RuntimeNone {
		return problem.Invalid([]apiv1.FieldError{{Field: "workload",
			Message: "this server runs no workloads (isolationd serve --runtime none): remove the workload, or run the server with --runtime runc"}})
	}
	return nil
}

// setWorkload replaces next's workload spec with spec (nil removes it),
// keeping what was observed of the workload when its spec stays.
func (s *Service) setWorkload(next *apiv1.Environment, spec *apiv1.WorkloadSpec) error {
	if spec == nil {
		next.Workload = nil
		return nil
	}
	if err := s.runsWorkloads(); err != nil {
		return err
	}
	w := apiv1.Workload{WorkloadSpec: spec.Normalize(), State: apiv1.WorkloadStarting}
	if cur := next.Workload; cur != nil {
		if reflect.DeepEqual(cur.WorkloadSpec, w.WorkloadSpec) {
			return nil
		}
		w.RestartCount = cur.RestartCount
	}
	next.Workload = &w
	return nil
}

// WorkloadChange says what a change from cur to next does to the
// environment's workload, for its state_message while it is updating:
// which changes restart it, which apply in place. "" when the workload is
// untouched.
func WorkloadChange(cur, next apiv1.Environment) string {
	switch {
	case cur.Workload == nil && next.Workload == nil:
		return ""
	case next.Workload == nil:
		return "stopping and removing the workload, its writable layer and its home volume"
	case cur.Workload == nil:
		return "starting the workload"
	}
	var restart []string
	a, b := cur.Workload.WorkloadSpec, next.Workload.WorkloadSpec
	for _, f := range []struct {
		name string
		same bool
	}{
		{"workload.image", a.Image == b.Image},
		{"workload.command", reflect.DeepEqual(a.Command, b.Command)},
		{"workload.args", reflect.DeepEqual(a.Args, b.Args)},
		{"workload.env", reflect.DeepEqual(a.Env, b.Env)},
		{"workload.working_dir", a.WorkingDir == b.WorkingDir},
		{"workload.restart", a.Restart == b.Restart},
		{"resources.disk_gb (shrinking)", next.Resources.DiskGB >= cur.Resources.DiskGB},
	} {
		if !f.same {
			restart = append(restart, f.name)
		}
	}
	if len(restart) > 0 {
		return "restarting the workload (same address, same home volume): " + strings.Join(restart, ", ") + " changed"
	}
	if next.Resources.DiskGB > cur.Resources.DiskGB {
		return "growing resources.disk_gb: in place where isolationd may resize a mounted file system, else restarting the workload (same address, same home volume)"
	}
	if cur.Resources != next.Resources {
		return "applying resources to the running workload in place"
	}
	return ""
}

// Observed is what the runtime observed of an environment's workload.
type Observed struct {
	State        string
	ExitCode     *int
	RestartCount int
	StartedAt    *time.Time
	ImageDigest  string
	// Message says why the workload does not run, with its last lines of
	// output; it becomes the environment's state_message.
	Message string
}

// observe writes o into env's workload and reports whether its state
// changed. The environment's state_message carries o's message while
// the environment is ready.
func observe(env *apiv1.Environment, o Observed) (changed bool) {
	w := env.Workload
	if w == nil {
		return false
	}
	changed = w.State != o.State
	w.State, w.ExitCode, w.RestartCount, w.StartedAt = o.State, o.ExitCode, o.RestartCount, o.StartedAt
	if o.ImageDigest != "" {
		w.ImageDigest = o.ImageDigest
	}
	if env.State == apiv1.StateReady {
		env.StateMessage = o.Message
	}
	return changed
}

// WorkloadObserved records what the runtime observed of environment id's
// workload (an exit, a restart, an OOM kill) without touching its
// generation. A change of the workload's state is audited
// (environment.workload with the new state and the reason); restarts
// within a state are not, so that a crash loop does not flood the trail.
func (s *Service) WorkloadObserved(ctx context.Context, cause, id string, o Observed) error {
	return s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		if cur.Workload == nil || cur.State != apiv1.StateReady {
			return step{}, nil
		}
		if !observe(cur, o) {
			return step{}, nil
		}
		outcome := apiv1.OutcomeSuccess
		if o.State == apiv1.WorkloadCrashLooping || (o.State == apiv1.WorkloadExited && o.ExitCode != nil && *o.ExitCode != 0) {
			outcome = apiv1.OutcomeFailure
		}
		reason := "workload " + o.State
		if o.Message != "" {
			reason += ": " + o.Message
		}
		return step{action: "environment.workload", outcome: outcome, reason: reason}, nil
	})
}

// Progress records which step of bringing environment id up is under way
// in its state_message, while it is being created or updated; it audits
// nothing, as the step's outcome is.
func (s *Service) Progress(ctx context.Context, cause, id, msg string) error {
	return s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		if apiv1.StateIsTransient(cur.State) {
			cur.StateMessage = msg
		}
		return step{}, nil
	})
}
