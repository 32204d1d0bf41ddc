package runc

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	gorunc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// Status reports envID's workload from runc's state and the init's status.
func (r *Runtime) Status(ctx context.Context, envID string) (workload.Status, error) {
	id := r.id(envID)
	p := r.paths(id)
	rec := readRecord(p.record)
	c, err := r.state(ctx, id)
	if err != nil {
		return workload.Status{}, err
	}
	if rec == nil && c == nil {
		return workload.Status{}, workload.ErrUnknown
	}
	return r.status(id, p, c, rec), nil
}

// status combines what runc says of the container with what its init says
// of the command.
func (r *Runtime) status(id string, p paths, c *gorunc.Container, rec *record) workload.Status {
	var st workload.Status
	var memoryMB int64
	if rec != nil {
		st.ImageDigest, memoryMB = rec.ImageDigest, rec.Resources.MemoryMB
	}
	s, serr := readStatus(p)
	if serr == nil {
		st.ExitCode, st.RestartCount, st.StartedAt = s.ExitCode, s.RestartCount, s.StartedAt
	}
	switch {
	case c == nil && rec != nil && rec.Failed != "":
		st.State, st.Message = apiv1.WorkloadExited, rec.Failed
	case c == nil:
		st.State = apiv1.WorkloadExited
		st.Message = "the container is gone (deleted outside isolationd, or the host restarted); it is made again"
	case c.Status == "stopped":
		st.State = apiv1.WorkloadExited
		st.Message = "the container's init exited; it is made again: " + tailFile(p.initLog)
	case c.Status != "running" || serr != nil:
		st.State, st.Pid = apiv1.WorkloadStarting, c.Pid
	default:
		st.State, st.Pid = s.State, c.Pid
		st.Message = r.message(id, p, s, memoryMB)
	}
	return st
}

// message says why the command is not running, or what stopped its last
// run when it was restarted, with the end of its output.
func (r *Runtime) message(id string, p paths, s initspec.Status, memoryMB int64) string {
	switch {
	case s.Error != "":
		return "the command could not start: " + s.Error
	case s.ExitCode == nil:
		return ""
	case s.State == apiv1.WorkloadRunning && *s.ExitCode == 0:
		return ""
	}
	why := r.describeExit(id, p, s, memoryMB)
	switch s.State {
	case apiv1.WorkloadRunning:
		return fmt.Sprintf("restarted %d times; the last run: %s", s.RestartCount, why)
	case apiv1.WorkloadCrashLooping:
		when := ""
		if s.NextRestartAt != nil {
			when = " at " + s.NextRestartAt.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf("crash looping, restarted %d times, next%s; the last run: %s", s.RestartCount, when, why)
	}
	return why
}

// describeExit says how the command's last run ended, and what it printed
// last.
func (r *Runtime) describeExit(id string, p paths, s initspec.Status, memoryMB int64) string {
	var why string
	switch {
	case s.Signal == "KILL" && r.oomKilled(id):
		why = fmt.Sprintf("the command was killed by the kernel's OOM killer: memory_mb is %d", memoryMB)
	case s.Signal != "":
		why = "the command was killed by SIG" + s.Signal
	case s.ExitCode != nil:
		why = fmt.Sprintf("the command exited with code %d", *s.ExitCode)
	default:
		why = "the command exited"
	}
	if lines := lastLines(filepath.Join(p.run, initspec.LogDir), messageLines); lines != "" {
		why += "; its last output:\n" + lines
	}
	return why
}

// lastLines is the end of the workload's output in dir, for messages.
func lastLines(dir string, n int) string {
	var out []string
	// A message without the output is still a message.
	_ = logs.Read(context.Background(), dir, logs.Query{Tail: n}, func(l apiv1.LogLine) error {
		out = append(out, l.Line)
		return nil
	})
	return strings.Join(out, "\n")
}

// oomKilled reports whether the kernel's OOM killer has killed a process
// of the container's cgroup.
func (r *Runtime) oomKilled(id string) bool {
	n, err := r.cg.oomKills(r.cgroupsPath(id))
	return err == nil && n > 0
}

// messageLines is how many lines of output a message ends with.
const messageLines = 10

// tailBytes bounds how much of a file's end is read for its last lines.
const tailBytes = 8 << 10

// tailFile is the last lines of a plain text file (the init's own log).
func tailFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-tailBytes, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-messageLines, 0):], "\n")
}

// watch is a container the runtime watches for Changes: its init, through
// a pidfd (readable once the init exits), and its status file.
type watch struct {
	envID string
	pid   int // the init's host pid, which pidfd pins while it runs
	pidfd int
	last  fingerprint
}

// fingerprint changes when the init rewrites its status file (a rename,
// so a new inode) or exits.
type fingerprint struct {
	ino, mtime, size int64
	exited           bool
}

func (r *Runtime) watch(id, envID string, pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		fd = -1 // already gone: the status says so
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unwatchLocked(id)
	w := &watch{envID: envID, pid: pid, pidfd: fd}
	w.last = r.fingerprint(id, w)
	r.watched[id] = w
}

func (r *Runtime) unwatch(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unwatchLocked(id)
}

func (r *Runtime) unwatchLocked(id string) {
	if w := r.watched[id]; w != nil {
		if w.pidfd >= 0 {
			unix.Close(w.pidfd)
		}
		delete(r.watched, id)
	}
}

// initExited reports whether the watched init of id has exited.
func (r *Runtime) initExited(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.watched[id]
	return w == nil || exited(w.pidfd)
}

func exited(pidfd int) bool {
	if pidfd < 0 {
		return true
	}
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 0) //nolint:gosec // G115: a file descriptor fits an int32
	return err == nil && n > 0
}

func (r *Runtime) fingerprint(id string, w *watch) fingerprint {
	fp := fingerprint{exited: exited(w.pidfd)}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(r.paths(id).run, initspec.StatusFile), &st); err == nil {
		fp.ino, fp.mtime, fp.size = int64(st.Ino), st.Mtim.Nano(), st.Size //nolint:gosec // G115: compared for equality only
	}
	return fp
}

// poll looks at every watched container each PollInterval and delivers
// the environments whose fingerprint changed.
func (r *Runtime) poll() {
	defer close(r.done)
	t := time.NewTicker(r.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		var changed []string
		r.mu.Lock()
		for id, w := range r.watched {
			if fp := r.fingerprint(id, w); fp != w.last {
				w.last = fp
				changed = append(changed, w.envID)
			}
		}
		r.mu.Unlock()
		for _, envID := range changed {
			select {
			case r.changes <- envID:
			case <-r.stop:
				return
			}
		}
	}
}
