// Package workload defines how isolationd runs an environment's workload:
// a Runtime owns the environment's container, its root filesystem, its
// cgroup and its disk volume, inside the network namespace the
// enforcement driver made for it. The reconciler drives a Runtime after
// the driver has applied the environment's rules, so a workload never
// runs unenforced. Implementations: runc (OCI containers under runc) and
// simulate (records specs, runs nothing).
package workload

import (
	"context"
	"errors"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
)

// Spec is everything a runtime needs to run one environment's workload.
type Spec struct {
	EnvID string
	// Hostname is the container's hostname: the environment's name.
	Hostname string
	// Namespace is the name of the environment's network namespace
	// (/run/netns/<Namespace>), which the container joins.
	Namespace string
	// Image is the workload's image, resolved and unpacked.
	Image image.Resolved
	// Workload is the spec as the API stores it (normalized).
	Workload apiv1.WorkloadSpec
	// Resources are the allowances the container is held to.
	Resources apiv1.Resources
}

// Status is what a runtime observes of a workload.
type Status struct {
	State        string // one of apiv1.WorkloadStates
	ExitCode     *int   // the last exit code of the command, 128+signal when killed
	RestartCount int
	StartedAt    *time.Time // when the command last started
	ImageDigest  string
	// Message says why the workload is not running, with the last lines
	// of its output, when it exited, crash-loops or was killed (for
	// example by the OOM killer).
	Message string
	// Pid is the host pid of the container's init, 0 when none runs.
	Pid int
}

// Apply is what Ensure did.
type Apply struct {
	Status Status
	// Restarted is true when the container was recreated (a new image,
	// command, args, env, working_dir or restart policy, or disk_gb
	// shrinking); resources that apply in place do not restart it.
	Restarted bool
}

// Runtime runs workloads. Every method is idempotent: the reconciler calls
// them again after a crash or a failure.
type Runtime interface {
	// Name is the runtime's name as the API reports it (apiv1.Runtime*).
	Name() string
	// Ensure makes the environment's container match spec: it creates and
	// starts it, adopts the one that runs, updates cpu, memory and pids in
	// place, grows the disk in place, and recreates the container (keeping
	// its home volume) when anything else changed. It returns once the
	// command has started, or failed to: an error wrapping *SpecError is
	// the spec's fault (a missing entrypoint, a command that exits at
	// once) and is not retried; any other error is.
	Ensure(ctx context.Context, spec Spec) (Apply, error)
	// Status reports the workload of envID; ErrUnknown when there is none.
	Status(ctx context.Context, envID string) (Status, error)
	// Remove stops the workload (SIGTERM, then SIGKILL after a grace
	// period) and removes its container, cgroups, mounts and volume.
	// Removing an unknown environment is not an error.
	Remove(ctx context.Context, envID string) error
	// Sync is called once at start with the environments that should have
	// a workload: it adopts the containers that run for them and removes
	// every container, mount and volume of its prefix that belongs to
	// none. Missing ones are left to Ensure.
	Sync(ctx context.Context, keep map[string]bool) error
	// Changes delivers the ids of environments whose status may have
	// changed (an exit, a restart, an OOM kill, a container gone), for the
	// reconciler to record; it is closed by Close.
	Changes() <-chan string
	// LogDir is the directory holding envID's output (see
	// internal/workload/logs); ErrUnknown when there is none.
	LogDir(envID string) (string, error)
	// Close stops watching; containers keep running for the next start.
	Close() error
}

// ErrUnknown is returned for an environment the runtime runs nothing for.
var ErrUnknown = errors.New("no workload for this environment")

// SpecError is a failure the spec causes, which retrying cannot fix: the
// environment fails with its message. Field names the spec's field, such
// as "workload.command".
type SpecError struct {
	Field   string
	Message string
}

func (e *SpecError) Error() string { return e.Field + ": " + e.Message }
