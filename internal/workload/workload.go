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
	"io"
	"syscall"
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
	// Nameservers, when set, are the environment's resolvers (the
	// driver's DNS proxy): the container's resolv.conf names them
	// instead of the host's.
	Nameservers []string
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
	// Exec starts a command in envID's running container, with the
	// workload's namespaces, cgroup, limits, capabilities and seccomp
	// profile. It returns once the command has started: ErrUnknown when
	// no container runs for envID, ErrNoExec when the runtime runs
	// nothing, ErrNeedsRestart when the container cannot take sessions
	// until it restarts, an error wrapping *SpecError when the command or
	// the user is not in the image. ctx bounds the whole session: cancelling it
	// ends the session as Exec.Close does.
	Exec(ctx context.Context, envID string, spec ExecSpec) (Exec, error)
	// Close stops watching; containers keep running for the next start.
	Close() error
}

// ExecSpec is a command to run in a workload's container.
type ExecSpec struct {
	// Command is the program, looked up on the workload's PATH, and its
	// arguments.
	Command []string
	// Env is added to the workload's environment, replacing variables of
	// the same name.
	Env map[string]string
	// WorkingDir defaults to the workload's.
	WorkingDir string
	// UID and GID: nil runs the command as the image's user; a UID alone
	// takes the group /etc/passwd gives it, else the same number.
	UID, GID *uint32
	// TTY gives the command a terminal (the container's own pty, its
	// controlling terminal) of Size; Stdout then receives everything and
	// Stderr is unused.
	TTY  bool
	Size apiv1.TerminalSize
	// Stdin is read until EOF (which then closes the command's stdin;
	// with TTY, the terminal's input goes on). nil: the command's stdin
	// is empty.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output; nil discards it.
	Stdout, Stderr io.Writer
}

// Exec is a command started by Runtime.Exec.
type Exec interface {
	// Resize sets the terminal's size; an error without TTY.
	Resize(size apiv1.TerminalSize) error
	// Signal sends sig to the command.
	Signal(sig syscall.Signal) error
	// Wait returns once the command has exited and its output has been
	// written to Stdout and Stderr.
	Wait() (ExitStatus, error)
	// Close ends the session: the command and every process of its
	// session get SIGHUP, and SIGKILL after a short grace; it returns once
	// they are gone and every file and goroutine of the session is
	// released. Safe to call more than once, and after Wait.
	Close() error
}

// ExitStatus is how an exec'd command ended.
type ExitStatus struct {
	// Code is its exit code, 128+N when signal N killed it.
	Code int
	// Signal names the signal that killed it ("KILL"), "" when it exited.
	Signal string
}

// ErrNoExec is Exec's error on a runtime that runs no containers.
var ErrNoExec = errors.New("this runtime runs no workloads to exec into")

// ErrNeedsRestart is Exec's error on a container that takes no exec
// session: an earlier isolationd started it, without the exec socket its
// init serves sessions on. Restarting the workload starts it with one.
var ErrNeedsRestart = errors.New("the workload's container was started by an earlier isolationd, which gave it no exec socket: restart the workload (change its spec, or recreate the environment) to exec into it")

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
