// Package initproc is the init that runs as PID 1 of every environment's
// container (cmd/isolation-init is its main): it reaps every child, runs
// the workload's command as the image's user with its output in a log
// directory (internal/workload/logs), restarts it by the restart policy
// with a capped backoff, writes its status where the runtime reads it
// (internal/workload/initspec), forwards signals to the command, and
// starts the runtime's exec sessions (exec.go).
// Outside a container (in tests) it runs as a child subreaper, so that it
// behaves the same as an ordinary process. It imports only the standard
// library, x/sys, apiv1, initspec and logs, so that the static binary
// stays a couple of megabytes.
package initproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// Exit codes of a command that could not be started, as shells have them.
const (
	ExitCannotExecute = 126 // found but not executable (permission, format)
	ExitNotFound      = 127 // no such file
	exitUsage         = 2   // the init's own arguments are wrong
)

// drainOutput bounds how long the init waits, once the command has
// exited, for the end of its output: a background process it left behind
// may hold the pipes open for ever, and the status must not wait for it.
const drainOutput = time.Second

// forwarded are the signals the init passes on to the command's process
// group; stopping are those after which it does not restart it.
var (
	forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGQUIT}
	stopping  = map[os.Signal]bool{unix.SIGTERM: true, unix.SIGINT: true}
)

// Main runs the init with its arguments and returns its exit code: the
// command's last exit code once it has exited after SIGTERM or SIGINT, 0
// when the init ran no command.
func Main(args []string) int {
	c, err := Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "isolation-init: %v\n", err)
		return exitUsage
	}
	if c.ExecFD >= 0 {
		// Before anything can start a process: the workload must never
		// inherit the exec socket.
		unix.CloseOnExec(c.ExecFD)
	}
	in, err := start(c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "isolation-init: %v\n", err)
		return 1
	}
	defer in.logs.Close()
	return in.run()
}

// initProc is the running init. Everything happens on one goroutine, in
// the order signals arrive; only the output copiers run beside it.
type initProc struct {
	c      Config
	logs   *logs.Writer
	sigs   chan os.Signal
	status initspec.Status
	child  *run        // the command's current run, nil between runs
	execs  *execServer // nil without an exec socket
}

func start(c Config) (*initProc, error) {
	in := &initProc{c: c, sigs: make(chan os.Signal, 32)}
	// Every signal is taken before the first child exists, so that no
	// exit goes unreaped. SIGPIPE is taken rather than ignored: an ignored
	// signal stays ignored in the command, a handled one does not.
	signal.Notify(in.sigs, append([]os.Signal{unix.SIGCHLD, unix.SIGPIPE}, forwarded...)...)
	if os.Getpid() != 1 {
		// Outside a container, orphans of the command come to the init
		// instead of to the init of the host, as they would to PID 1.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("becoming a child subreaper: %w", err)
		}
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	// MkdirAll leaves an existing directory's mode: the runtime's may be looser.
	if err := os.Chmod(c.Dir, 0o700); err != nil { //nolint:gosec // a directory, which needs its x bit
		return nil, err
	}
	w, err := logs.NewWriter(filepath.Join(c.Dir, initspec.LogDir), c.LogMaxBytes)
	if err != nil {
		return nil, err
	}
	in.logs = w
	if c.ExecFD >= 0 {
		if in.execs, err = listenExec(c.ExecFD); err != nil {
			w.Close()
			return nil, err
		}
		go in.execs.serve()
	}
	return in, nil
}

func (in *initProc) run() int {
	if len(in.c.Command) == 0 {
		in.status = initspec.Status{State: apiv1.WorkloadRunning}
		in.save()
		in.idle()
		return 0
	}
	in.status = initspec.Status{State: apiv1.WorkloadStarting}
	in.save()
	b := newBackoff(in.c)
	for {
		r, err := in.startRun()
		if err != nil {
			in.cannotStart(err)
			in.idle()
			return *in.status.ExitCode
		}
		in.child = r
		stop := in.waitChild()
		in.child = nil
		code := in.exited(r)
		if stop {
			return code
		}
		if !restarts(in.c.Restart, code) {
			in.idle()
			return code
		}
		delay, looping := b.exited(r.exitedAt.Sub(r.startedAt))
		next := time.Now().Add(delay).UTC()
		in.status.RestartCount++
		in.status.State = apiv1.WorkloadStarting
		if looping {
			in.status.State = apiv1.WorkloadCrashLooping
		}
		in.status.NextRestartAt = &next
		in.save()
		if in.sleep(delay) {
			in.status.State, in.status.NextRestartAt = apiv1.WorkloadExited, nil
			in.save()
			return code
		}
		in.status.NextRestartAt = nil
	}
}

// waitChild waits for the command's run to exit, reaping and forwarding
// signals meanwhile. It reports whether a stopping signal came.
func (in *initProc) waitChild() (stop bool) {
	for in.child.exitedAt.IsZero() {
		sig := <-in.sigs
		switch {
		case sig == unix.SIGCHLD:
			in.reap()
		case stopping[sig]:
			stop = true
			in.child.signal(sig)
		case sig != unix.SIGPIPE:
			in.child.signal(sig)
		}
	}
	return stop
}

// sleep waits d between runs, reaping meanwhile; it reports whether a
// stopping signal came, which ends the wait.
func (in *initProc) sleep(d time.Duration) (stop bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return false
		case sig := <-in.sigs:
			if sig == unix.SIGCHLD {
				in.reap()
			} else if stopping[sig] {
				return true
			}
		}
	}
}

// idle reaps until a stopping signal: the init of an environment whose
// command has exited for good, or that runs none, keeps it up for exec.
func (in *initProc) idle() {
	for sig := range in.sigs {
		if sig == unix.SIGCHLD {
			in.reap()
		} else if stopping[sig] {
			return
		}
	}
}

// reap collects every child that has exited: the command, exec
// sessions' commands, and every orphan that was reparented to the init.
func (in *initProc) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if in.child != nil && pid == in.child.pid {
			in.child.reaped(ws)
		} else if in.execs != nil {
			in.execs.reaped(pid, ws)
		}
	}
}

// exited records the end of a run in the status, once its output is in
// the log, and returns its exit code.
func (in *initProc) exited(r *run) int {
	r.drain(drainOutput)
	code := r.exitCode()
	exitedAt := r.exitedAt.UTC()
	in.status.State = apiv1.WorkloadExited
	in.status.Pid = 0
	in.status.ExitCode = &code
	in.status.Signal = r.signalName()
	in.status.ExitedAt = &exitedAt
	in.save()
	return code
}

// cannotStart records a command that could not be started, which no
// restart fixes, in the status and in the log.
func (in *initProc) cannotStart(err error) {
	code := ExitCannotExecute
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		code = ExitNotFound
	}
	if errors.Is(err, fs.ErrPermission) {
		code = ExitCannotExecute
	}
	// The log first, as for an exit: a status that says why comes after it.
	fmt.Fprintf(in.logs.Stream(logs.Stderr), "isolation-init: %v\n", err)
	now := time.Now().UTC()
	in.status.State = apiv1.WorkloadExited
	in.status.Pid = 0
	in.status.ExitCode = &code
	in.status.Signal = ""
	in.status.ExitedAt = &now
	in.status.Error = err.Error()
	in.save()
}

// save replaces the status file atomically, so that the runtime never
// reads half of it.
func (in *initProc) save() {
	if err := writeStatus(in.c.Dir, in.status); err != nil {
		fmt.Fprintf(os.Stderr, "isolation-init: writing the status: %v\n", err)
	}
}

func writeStatus(dir string, s initspec.Status) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+initspec.StatusFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, initspec.StatusFile))
}

// normalOOMScore gives the command the kernel's default OOM score, so
// that under memory pressure the OOM killer picks the workload, not the
// init (which runc may have started with a lower one). Best effort: a
// kernel or a sandbox may refuse it.
func normalOOMScore(pid int) {
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte("0"), 0)
}

// sysProcAttr runs the command in its own process group, so that signals
// reach the processes it starts too, as the user the config names.
func (c Config) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: c.User}
}
