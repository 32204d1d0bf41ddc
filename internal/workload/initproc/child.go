package initproc

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// run is one run of the command. The init reaps it itself (wait4 on any
// pid, for the orphans too), so exec.Cmd.Wait is never called.
type run struct {
	cmd       *exec.Cmd
	pid       int
	startedAt time.Time
	exitedAt  time.Time // zero while it runs
	status    unix.WaitStatus
	copied    []chan struct{} // closed when a stream's pipe reached its end
}

// startRun starts the command with its stdout and stderr through pipes
// into the log, and records it as running.
func (in *initProc) startRun() (*run, error) {
	cmd := exec.Command(in.c.Command[0], in.c.Command[1:]...)
	cmd.SysProcAttr = in.c.sysProcAttr()
	r := &run{cmd: cmd}
	var writeEnds []*os.File
	defer func() {
		// The command holds its own copies; the init's would keep the
		// pipes open after it exits.
		for _, f := range writeEnds {
			f.Close()
		}
	}()
	for _, name := range []string{logs.Stdout, logs.Stderr} {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err // closing the write ends ends the copiers started
		}
		writeEnds = append(writeEnds, pw)
		s := in.logs.Stream(name)
		done := make(chan struct{})
		r.copied = append(r.copied, done)
		go func() {
			defer close(done)
			defer pr.Close()
			_, _ = io.Copy(s, pr)
			s.Flush()
		}()
	}
	cmd.Stdout, cmd.Stderr = writeEnds[0], writeEnds[1]
	if err := cmd.Start(); err != nil {
		return nil, err // closing the write ends ends the copiers
	}
	r.pid = cmd.Process.Pid
	r.startedAt = time.Now()
	normalOOMScore(r.pid)
	startedAt := r.startedAt.UTC()
	in.status.State = apiv1.WorkloadRunning
	in.status.Pid = r.pid
	in.status.StartedAt = &startedAt
	in.status.Error = ""
	in.save()
	return r, nil
}

// reaped records the run's exit.
func (r *run) reaped(ws unix.WaitStatus) {
	r.status, r.exitedAt = ws, time.Now()
	// The process is gone: release what os/exec holds of it (its pidfd).
	_ = r.cmd.Process.Release()
}

// signal sends sig to the command's process group, or to the command
// alone when its group is gone.
func (r *run) signal(sig os.Signal) {
	s, ok := sig.(unix.Signal)
	if !ok {
		return
	}
	if err := unix.Kill(-r.pid, s); errors.Is(err, unix.ESRCH) {
		_ = unix.Kill(r.pid, s)
	}
}

// drain waits, at most d, for the end of the run's output, so that the
// status says exited after the log holds the last lines. What a process
// left behind writes later is still logged, by the copiers that go on.
func (r *run) drain(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for _, done := range r.copied {
		select {
		case <-done:
		case <-t.C:
			return
		}
	}
}

// exitCode is the run's exit code, 128+N when signal N killed it.
func (r *run) exitCode() int {
	if r.status.Signaled() {
		return 128 + int(r.status.Signal())
	}
	return r.status.ExitStatus()
}

// signalName is the name of the signal that killed the run ("KILL"), ""
// when it exited.
func (r *run) signalName() string {
	if !r.status.Signaled() {
		return ""
	}
	return strings.TrimPrefix(unix.SignalName(r.status.Signal()), "SIG")
}
