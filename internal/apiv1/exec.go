package apiv1

import (
	"strings"
	"time"
)

// ExecRequest runs a command in an environment's container: the body of
// POST /v1/environments/{id}/exec, and the query of the WebSocket that
// GET /v1/environments/{id}/exec upgrades to (command and env repeated:
// ?command=sh&command=-c&env=K=V&tty=true&rows=24&cols=80).
type ExecRequest struct {
	// Command is the program and its arguments, looked up on the
	// container's PATH as the workload's own command is.
	Command []string `json:"command"`
	// Env is added to the workload's environment (the image's, then the
	// workload's env), replacing variables of the same name.
	Env map[string]string `json:"env,omitempty"`
	// WorkingDir defaults to the workload's working directory.
	WorkingDir string `json:"working_dir,omitempty"`
	// UID and GID run the command as that user; nil runs it as the
	// image's user (and a UID alone takes that user's group from the
	// image's /etc/passwd when it names one, else the same number).
	UID *uint32 `json:"uid,omitempty"`
	GID *uint32 `json:"gid,omitempty"`
	// TTY gives the command a terminal (WebSocket only): stdout and
	// stderr are one stream, and the client can resize it.
	TTY bool `json:"tty,omitempty"`
	// Size is the terminal's first size, with TTY; default 24x80.
	Size *TerminalSize `json:"size,omitempty"`
	// Timeout ends the command (SIGKILL) after this long, a Go duration
	// ("30s", "10m"); "" for none: the session then lasts as long as the
	// caller's connection, its token and the environment.
	Timeout string `json:"timeout,omitempty"`
}

// TerminalSize is a terminal's size in characters.
type TerminalSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Limits of an exec request.
const (
	MaxTerminalRows = 1000
	MaxTerminalCols = 1000
	MaxExecTimeout  = 24 * time.Hour
)

// DefaultTerminalSize is a terminal's size when the request gives none.
var DefaultTerminalSize = TerminalSize{Rows: 24, Cols: 80}

// ExecStreams of the NDJSON answer to POST .../exec and of the
// WebSocket's binary messages.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// ExecFrame is one line of the NDJSON answer to POST .../exec
// (application/x-ndjson): output as it comes, then exactly one line with
// Exit, or with Error when the session failed on the server's side.
type ExecFrame struct {
	Stream string `json:"stream,omitempty"` // stdout or stderr
	// Data is the output's bytes, as they came (base64 in JSON).
	Data  []byte    `json:"data,omitempty"`
	Exit  *ExecExit `json:"exit,omitempty"`
	Error *Problem  `json:"error,omitempty"`
}

// Why an exec session ended, in ExecExit.Reason and in its audit event.
const (
	ExecExited      = "exited"       // the command exited by itself (or by a signal the client sent)
	ExecTimedOut    = "timeout"      // its timeout passed: it was killed
	ExecClosed      = "closed"       // the client went away: it got SIGHUP, then SIGKILL
	ExecRevoked     = "revoked"      // the session's token was revoked or expired
	ExecEnvGone     = "environment"  // the environment was deleted or its workload stopped
	ExecServerStops = "server_stops" // isolationd is shutting down
)

// ExecExit ends an exec session.
type ExecExit struct {
	SessionID string `json:"session_id"`
	// ExitCode is the command's, 128+N when signal N killed it.
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"` // the signal that killed it, "KILL"
	Reason   string `json:"reason"`           // one of the Exec* reasons
	// DurationMS is how long the command ran.
	DurationMS int64 `json:"duration_ms"`
	// BytesIn is what the client sent to its stdin, BytesOut what the
	// command wrote (stdout and stderr).
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

// The WebSocket protocol of GET .../exec (subprotocol ExecSubprotocol).
// Binary messages carry bytes: their first byte is the channel, the rest
// the data. Text messages carry one ExecControl as JSON.
const (
	ExecSubprotocol = "isolation.exec.v1"

	ExecChannelStdin  byte = 0 // client to server
	ExecChannelStdout byte = 1 // server to client
	ExecChannelStderr byte = 2 // server to client, without TTY
)

// ExecControl types.
const (
	ExecControlResize = "resize" // client: Size is the terminal's new size
	ExecControlSignal = "signal" // client: send Signal ("INT", "TERM", "HUP", "KILL", ...) to the command
	ExecControlEOF    = "eof"    // client: stdin is closed (without TTY; with one, send ^D)
	ExecControlExit   = "exit"   // server: the session ended (Exit), the last message before the close
	ExecControlError  = "error"  // server: the session failed (Error), the last message before the close
)

// ExecControl is a text message of the exec WebSocket.
type ExecControl struct {
	Type   string        `json:"type"`
	Size   *TerminalSize `json:"size,omitempty"`
	Signal string        `json:"signal,omitempty"`
	Exit   *ExecExit     `json:"exit,omitempty"`
	Error  *Problem      `json:"error,omitempty"`
}

// ExecSignals are the signals a client may send, by name without "SIG".
var ExecSignals = []string{"HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP", "TSTP", "WINCH"}

// Validate checks an exec request; the TTY rules depend on the transport
// and are the API's.
func (x ExecRequest) Validate() []FieldError {
	var e errs
	if len(x.Command) == 0 || x.Command[0] == "" {
		e.add("command", "must name the program to run, then its arguments")
	}
	if len(x.Command) > MaxWorkloadArgs {
		e.add("command", "%s", limitMessage("entries", "exec request", "command", MaxWorkloadArgs, len(x.Command)))
	}
	size := len(x.WorkingDir)
	for i, a := range x.Command {
		size += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			e.add(index("command", i), msgNUL)
		}
	}
	envSize, envErrs := validateEnv("env", "exec request", x.Env)
	size += envSize
	e = append(e, envErrs...)
	if size > MaxWorkloadBytes {
		e.add("command", "%s", limitMessage("bytes", "exec request", "command, env and working_dir together", MaxWorkloadBytes, size))
	}
	if x.WorkingDir != "" && !strings.HasPrefix(x.WorkingDir, "/") {
		e.add("working_dir", msgWorkingDir)
	}
	if x.GID != nil && x.UID == nil {
		e.add("gid", "needs uid: without one the command runs as the image's user and group")
	}
	if x.Size != nil {
		e = append(e, x.Size.Validate("size")...)
	}
	if x.Timeout != "" {
		d, err := time.ParseDuration(x.Timeout)
		switch {
		case err != nil:
			e.add("timeout", "must be a duration such as 30s or 10m")
		case d <= 0 || d > MaxExecTimeout:
			e.add("timeout", "must be more than 0s and at most %s", MaxExecTimeout)
		}
	}
	return e
}

// Validate checks a terminal size against the limits.
func (s TerminalSize) Validate(field string) []FieldError {
	var e errs
	if s.Rows < 1 || s.Rows > MaxTerminalRows {
		e.add(path(field, "rows"), "must be between 1 and %d", MaxTerminalRows)
	}
	if s.Cols < 1 || s.Cols > MaxTerminalCols {
		e.add(path(field, "cols"), "must be between 1 and %d", MaxTerminalCols)
	}
	return e
}

// TimeoutDuration is Timeout parsed, 0 for none; call after Validate.
func (x ExecRequest) TimeoutDuration() time.Duration {
	d, _ := time.ParseDuration(x.Timeout)
	return d
}

// ExecStart is changes.after of a session.start audit event: what the
// session runs and as whom. The values of its environment variables and
// everything the session reads or writes are never recorded.
type ExecStart struct {
	// SessionID is "" on a refused attempt: no session was opened.
	SessionID string   `json:"session_id,omitempty"`
	Command   []string `json:"command"`
	TTY       bool     `json:"tty"`
	// UID and GID are null for the image's user.
	UID        *uint32 `json:"uid"`
	GID        *uint32 `json:"gid"`
	WorkingDir string  `json:"working_dir"`
}
