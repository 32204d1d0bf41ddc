// Package initspec is the contract between isolationd's runtime and the
// init it runs as PID 1 of every container (cmd/isolation-init): where
// the init sits in the container, how it is told what to run, and the
// status and log files it writes. It imports nothing but the standard
// library, so that the init stays small.
package initspec

import "time"

// Paths inside the container.
const (
	// Binary is where the runtime mounts the init, read-only.
	Binary = "/.isolation/init"
	// Dir is the init's own directory in the container: a directory of
	// the environment's volume (so it counts against disk_gb), owned by
	// the container's root with mode 0700, so that a workload running as
	// another user can neither read nor forge it.
	Dir = "/.isolation/run"
	// StatusFile is the init's status, replaced atomically (rename) at
	// every change, under Dir.
	StatusFile = "status.json"
	// LogDir holds the command's output (internal/workload/logs), under Dir.
	LogDir = "logs"
)

// Args of the init, before "--" and the command to run (nothing after
// "--" means: run no command, reap and stay up).
//
//	--restart always|on-failure|never
//	--uid N --gid N [--groups N,N]   the user the command runs as
//	--log-max-bytes N                 rotate the log past N bytes (keep one rotated file)
//	--exec-fd N                       the listening socket of exec sessions (FlagExecFD, exec.go)
const (
	FlagRestart     = "--restart"
	FlagUID         = "--uid"
	FlagGID         = "--gid"
	FlagGroups      = "--groups"
	FlagLogMaxBytes = "--log-max-bytes"
)

// Status is the content of StatusFile.
type Status struct {
	// State is one of apiv1's workload states: starting, running, exited
	// or crash_looping.
	State string `json:"state"`
	// Pid is the command's pid in the container's pid namespace, 0 when
	// it does not run (and when there is no command).
	Pid          int        `json:"pid"`
	RestartCount int        `json:"restart_count"`
	ExitCode     *int       `json:"exit_code,omitempty"` // last exit, 128+signal when killed
	Signal       string     `json:"signal,omitempty"`    // the signal that killed it, "KILL"
	StartedAt    *time.Time `json:"started_at,omitempty"`
	ExitedAt     *time.Time `json:"exited_at,omitempty"`
	// NextRestartAt is when a crash-looping command is started again.
	NextRestartAt *time.Time `json:"next_restart_at,omitempty"`
	// Error is why the command could not be started at all (no such file,
	// permission denied), which no restart fixes.
	Error string `json:"error,omitempty"`
}
