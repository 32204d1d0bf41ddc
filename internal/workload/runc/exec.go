package runc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gorunc "github.com/containerd/go-runc"
	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// An exec session is one runc exec, which stays the command's parent
// (not detached) and exits with its status; the command is a session
// leader, which runc makes it, and every process it starts belongs to
// its session unless it leaves it. runc exec applies the container's
// namespaces, cgroup, seccomp profile and no_new_privileges (runc 1.2 or
// later, with a user namespace: New checks); the process spec gives it
// the workload's environment, user, capabilities and rlimits.
//
// With a terminal, the command's is the container's own pty (from the
// container's /dev/pts), its controlling terminal. runc 1.1 hands that
// pty's master to a caller only when it detaches (--console-socket needs
// --detach, and a detached command's status goes to whoever reaps it),
// so runc relays it to its own stdio, which is a pty of the session
// here: runc's controlling terminal, whose resizes reach runc as SIGWINCH
// and are passed on to the container's pty.

// execGrace is how long a closed session's processes have between SIGHUP
// and SIGKILL.
const execGrace = 2 * time.Second

// Exec runs a command in envID's container (see workload.Runtime). Its
// stdout may reach spec.Stdout before Exec returns.
func (r *Runtime) Exec(ctx context.Context, envID string, spec workload.ExecSpec) (workload.Exec, error) {
	if r.runc == nil {
		return nil, r.runcErr
	}
	if len(spec.Command) == 0 {
		return nil, &workload.SpecError{Field: "command", Message: "must name the program to run"}
	}
	id := r.id(envID)
	rec := readRecord(r.paths(id).record)
	root, err := r.containerRoot(id)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		root.Close()
		return nil, workload.ErrUnknown
	}
	proc, err := execProcess(root, rec.Process, spec)
	root.Close()
	if err != nil {
		return nil, err
	}
	s, err := r.startExec(ctx, id, proc, spec)
	if err != nil {
		if ctx.Err() == nil && !r.running(id) {
			return nil, workload.ErrUnknown // runc cannot exec into a container that stopped meanwhile
		}
		return nil, err
	}
	return s, nil
}

// containerRoot is the root directory of id's running container as its
// processes see it (its own mounts, /home included), through its init;
// ErrUnknown when none runs. The init is the one the runtime watches: its
// pidfd, alive after the open, vouches that the pid was still the init's.
func (r *Runtime) containerRoot(id string) (rootfs, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.watched[id]
	if w == nil || exited(w.pidfd) {
		return rootfs{}, workload.ErrUnknown
	}
	root, err := openRootfs(fmt.Sprintf("/proc/%d/root", w.pid))
	if err != nil {
		return rootfs{}, unknownIfGone(err)
	}
	if exited(w.pidfd) {
		root.Close()
		return rootfs{}, workload.ErrUnknown
	}
	return root, nil
}

func unknownIfGone(err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return workload.ErrUnknown
	}
	return err
}

// running reports whether id's container runs (its init, watched).
func (r *Runtime) running(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.watched[id]
	return w != nil && !exited(w.pidfd)
}

// execProcess is the process spec of spec's command: the workload's
// environment and working directory with spec's on top, and the image's
// user or spec's, with the capabilities the workload's command has as
// that user, and its rlimits.
func execProcess(root rootfs, base processBase, spec workload.ExecSpec) (specs.Process, error) {
	base.Env = mergeEnv(base.Env, spec.Env)
	base.Cwd = cmp.Or(spec.WorkingDir, base.Cwd)
	if spec.TTY {
		base.Env = withDefault(base.Env, "TERM", "xterm") // as docker exec -t
	}
	u, err := execUser(root, base.User, spec.UID, spec.GID)
	if err != nil {
		return specs.Process{}, err
	}
	p, err := base.process(root, spec.Command, "command", u)
	if err != nil {
		return specs.Process{}, err
	}
	sp := specs.Process{
		Terminal:        spec.TTY,
		User:            specs.User{UID: p.UID, GID: p.GID, AdditionalGids: p.Groups},
		Args:            p.Args,
		Env:             p.Env,
		Cwd:             p.Cwd,
		Capabilities:    capabilitiesOf(p.UID),
		Rlimits:         rlimits(),
		NoNewPrivileges: true,
	}
	if spec.TTY {
		size := termSize(spec.Size)
		// runc's init sizes the pty before the command starts.
		sp.ConsoleSize = &specs.Box{Height: uint(size.Rows), Width: uint(size.Cols)}
	}
	return sp, nil
}

// execUser is whom the command runs as: the image's user, its uid or its
// group replaced by uid and gid; a uid alone takes the group the image's
// /etc/passwd gives it, else the same number.
func execUser(root rootfs, imageUser string, uid, gid *uint32) (user, error) {
	name, group, _ := strings.Cut(imageUser, ":")
	if uid != nil {
		name, group = strconv.FormatUint(uint64(*uid), 10), ""
	}
	if gid != nil {
		group = strconv.FormatUint(uint64(*gid), 10)
	}
	if group != "" {
		name += ":" + group
	}
	u, err := root.resolveUser(name)
	if err != nil || uid == nil || gid != nil {
		return u, err
	}
	passwd, _ := root.readFile("/etc/passwd", maxIDFile)
	if _, found := findEntry(passwd, strconv.FormatUint(uint64(*uid), 10), 2); !found {
		u.GID = *uid
	}
	return u, nil
}

func termSize(s apiv1.TerminalSize) apiv1.TerminalSize {
	if s.Rows == 0 || s.Cols == 0 {
		return apiv1.DefaultTerminalSize
	}
	return s
}

// execSession is a running runc exec.
type execSession struct {
	r   *Runtime
	id  string
	dir string // the session's own: runc's pid file and log
	tty bool

	// Our ends: the terminal's master (tty), or the pipes (nil stdin
	// without one); closed once the session has ended.
	master, stdin, stdout, stderr *os.File

	started   chan struct{} // closed once pid and pidfd are known (learnPid)
	output    chan struct{} // closed when the command's stdout has its first bytes
	pid       int           // the command's host pid, its session's id, 0 when runc wrote none
	mu        sync.Mutex
	pidfd     int // the command's, -1 once released (or when it was gone at once)
	runcErr   error
	runcDone  chan struct{}  // closed when runc exec has returned
	killRunc  func()         // the last resort, should runc outlive its command
	copied    sync.WaitGroup // the output's copiers
	stopAfter func() bool    // stops ending the session with ctx (under mu)
	finish    func() (workload.ExitStatus, error)
	closeOnce sync.Once
	closeErr  error
}

var _ workload.Exec = (*execSession)(nil)

// startExec runs proc in container id and returns once it has started:
// once it has written output, or runc its pid file.
func (r *Runtime) startExec(ctx context.Context, id string, proc specs.Process, spec workload.ExecSpec) (*execSession, error) {
	if err := os.MkdirAll(r.execDir(), 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(r.execDir(), "session-")
	if err != nil {
		return nil, err
	}
	s := &execSession{r: r, id: id, dir: dir, tty: spec.TTY, pidfd: -1, runcDone: make(chan struct{}), started: make(chan struct{}), output: make(chan struct{})}
	s.finish = sync.OnceValues(s.exitStatus)
	child, err := s.openIO(spec)
	if err != nil {
		s.release()
		return nil, err
	}
	renamed, err := watchRenames(dir)
	if err != nil {
		child.Close()
		s.release()
		return nil, err
	}
	// runc runs to its end, whatever happens to ctx: killed, it would
	// leave the command running; the session's end stops the command,
	// then runc returns.
	runcCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.killRunc = cancel
	// runc dies with isolationd (SIGKILL to runc closes the relayed pty
	// and the pipes, which ends an interactive command), so that no
	// session outlives the process that audits it.
	rc := *r.runc
	rc.PdeathSignal = unix.SIGKILL
	go func() {
		s.runcErr = rc.Exec(runcCtx, id, proc, &gorunc.ExecOpts{IO: child, PidFile: s.pidFile(), LogFile: s.logFile()})
		child.Close() // when runc could not start
		close(s.runcDone)
	}()
	s.copyStdout(spec)
	// The command has started once it writes (its output comes first, to
	// be sent sooner), or once runc has written the pid file; runc exits
	// without one when it cannot start it.
	learned := make(chan error, 1)
	go func() { learned <- s.learnPid(renamed, r.opts.StartTimeout) }()
	select {
	case err = <-learned:
	case <-s.output:
	}
	if err != nil {
		<-s.runcDone
		s.copied.Wait()
		err := fmt.Errorf("runc exec %s: %v: %s", id, s.runcErr, s.runcSaid())
		s.release()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		s.Close()
		return nil, err
	}
	s.copyStderr(spec)
	if spec.Stdin != nil {
		dst := s.stdin
		if s.tty {
			dst = s.master
		}
		go func() {
			_, _ = io.Copy(dst, spec.Stdin)
			if !s.tty {
				dst.Close() // the command's stdin ends; a terminal's input goes on
			}
		}()
	}
	s.mu.Lock()
	s.stopAfter = context.AfterFunc(ctx, func() { s.Close() })
	s.mu.Unlock()
	return s, nil
}

// learnPid waits for runc's pid file (a rename into the session's
// directory, which renamed watches; learnPid closes it), reads the
// command's pid from it and opens its pidfd; started is closed once it
// is done, whatever came of it. ctx does not end the wait: cancelled
// before the pid is known, the command would be left behind.
func (s *execSession) learnPid(renamed *os.File, timeout time.Duration) error {
	defer close(s.started)
	ready := make(chan error, 1)
	go func() {
		_, err := renamed.Read(make([]byte, unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		ready <- err
	}()
	defer renamed.Close() // ends that Read
	select {
	case err := <-ready:
		if err != nil { // no telling when it starts: runc is stopped; a pid file says what to hang up
			s.killRunc()
			<-s.runcDone
		}
	case <-s.runcDone:
	case <-time.After(timeout):
		s.killRunc()
		<-s.runcDone
	}
	b, err := os.ReadFile(s.pidFile())
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("runc's pid file: %w", err)
	}
	s.pid = pid
	// Gone already (it was quick, and reaped by runc): its status is then
	// runc's exit code alone.
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		s.pidfd = fd
	}
	return nil
}

// runcSaid is why runc failed to start the command: its log, or what it
// wrote on its stderr once it has exited.
func (s *execSession) runcSaid() string {
	if msg := tailFile(s.logFile()); msg != "" {
		return msg
	}
	var msg []byte
	if s.stderr != nil {
		msg, _ = io.ReadAll(io.LimitReader(s.stderr, tailBytes))
	}
	return strings.TrimSpace(string(msg))
}

// execDir holds the sessions' directories; sessions do not outlive the
// process that ran them, so New empties it.
func (r *Runtime) execDir() string { return filepath.Join(filepath.Dir(r.opts.StateRoot), "exec") }

func (s *execSession) pidFile() string { return filepath.Join(s.dir, "pid") }
func (s *execSession) logFile() string { return filepath.Join(s.dir, "runc.log") }

// openIO makes the session's pipes, or its terminal, and returns runc's
// ends.
func (s *execSession) openIO(spec workload.ExecSpec) (*execIO, error) {
	if s.tty {
		master, slave, err := pty.Open()
		if err != nil {
			return nil, err
		}
		// runc's own stderr is a pipe: what it says on a failed start is
		// not the command's output.
		child := &execIO{stdin: slave, stdout: slave, tty: true}
		if s.stderr, child.stderr, err = os.Pipe(); err != nil {
			master.Close()
			child.Close()
			return nil, err
		}
		// The container's pty does the line discipline; this one passes
		// bytes as they are (runc sets it raw too, once it has started).
		if _, err := term.MakeRaw(int(slave.Fd())); err != nil {
			master.Close()
			child.Close()
			return nil, err
		}
		if s.master, err = pollable(master); err == nil {
			err = setSize(s.master, termSize(spec.Size))
		}
		if err != nil {
			child.Close()
			return nil, err
		}
		return child, nil
	}
	child := &execIO{}
	var err error
	if spec.Stdin != nil {
		child.stdin, s.stdin, err = os.Pipe()
	}
	if err == nil {
		s.stdout, child.stdout, err = os.Pipe()
	}
	if err == nil {
		s.stderr, child.stderr, err = os.Pipe()
	}
	if err != nil {
		child.Close()
		return nil, err
	}
	return child, nil
}

// copyStdout copies the command's stdout (with a terminal, everything it
// writes) to spec's as it comes, from runc's start on: its first bytes
// need not wait for the pid file.
func (s *execSession) copyStdout(spec workload.ExecSpec) {
	s.copied.Add(1)
	if !s.tty {
		go s.copyOut(spec.Stdout, s.stdout, s.output)
		return
	}
	var w io.Writer
	if spec.Stdout != nil {
		w = &onlcr{w: spec.Stdout}
	}
	go s.copyOut(w, s.master, s.output)
}

// copyStderr copies stderr, once the command has started: until then, it
// is what runc says of a failed start (runc's own, with a terminal, which
// is then dropped).
func (s *execSession) copyStderr(spec workload.ExecSpec) {
	w := spec.Stderr
	if s.tty {
		w = nil
	}
	s.copied.Add(1)
	go s.copyOut(w, s.stderr, nil)
}

// copyOut copies r to w until r ends: at runc's exit, which closes the
// pipes' other ends (the pty's master then reads EIO). After a write to w
// fails, the rest is read and dropped, so that a reader gone away does
// not hold the command up: its session ends when it is closed. first,
// when not nil, is closed once r has given bytes.
func (s *execSession) copyOut(w io.Writer, r *os.File, first chan struct{}) {
	defer s.copied.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && first != nil {
			close(first)
			first = nil
		}
		if n > 0 && w != nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w = nil
			}
		}
		if err != nil {
			return
		}
	}
}

// Resize sets the size of the command's terminal: of runc's, which runc
// passes on to the container's on the SIGWINCH the kernel sends it.
func (s *execSession) Resize(size apiv1.TerminalSize) error {
	if !s.tty {
		return errors.New("the command has no terminal")
	}
	return setSize(s.master, termSize(size))
}

// Signal sends sig to the command (not to the rest of its session).
func (s *execSession) Signal(sig syscall.Signal) error {
	<-s.started
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error = unix.ESRCH
	if s.pidfd >= 0 {
		err = unix.PidfdSendSignal(s.pidfd, sig, nil, 0)
	}
	if errors.Is(err, unix.ESRCH) {
		return errors.New("the command has exited")
	}
	return err
}

// Wait returns how the command ended, once runc has returned and the
// command's output has been copied.
func (s *execSession) Wait() (workload.ExitStatus, error) { return s.finish() }

// exitStatus is how the command ended. runc exits with its status, 128+N
// when signal N killed it, which an exit with that code also gives; the
// kernel tells them apart to a holder of the command's pidfd once it has
// been reaped.
func (s *execSession) exitStatus() (workload.ExitStatus, error) {
	<-s.runcDone
	<-s.started // by runc's exit at the latest
	s.copied.Wait()
	var st workload.ExitStatus
	var ee *gorunc.ExitError
	switch {
	case s.runcErr == nil:
	case errors.As(s.runcErr, &ee) && ee.Status >= 0:
		st.Code = ee.Status
	default:
		return st, fmt.Errorf("runc exec %s: %w: %s", s.id, s.runcErr, tailFile(s.logFile()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_EXIT}
	if s.pidfd < 0 || unix.IoctlPidfdInfo(s.pidfd, &info) != nil || info.Mask&unix.PIDFD_INFO_EXIT == 0 {
		return st, nil // a kernel before 6.15, or a command gone at once
	}
	if ws := unix.WaitStatus(info.Exit_code); ws.Signaled() { //nolint:gosec // G115: a wait status is 16 bits, never negative
		st = workload.ExitStatus{Code: 128 + int(ws.Signal()), Signal: strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG")}
	} else {
		st.Code = ws.ExitStatus()
	}
	return st, nil
}

// Close ends the session (see workload.Exec). It returns once the writes
// to Stdout and Stderr have returned; a Read of Stdin in progress is not
// interrupted: the copy of Stdin ends when it returns.
func (s *execSession) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.end() })
	return s.closeErr
}

// end hangs the session up, as a terminal's hangup does: SIGHUP (and
// SIGCONT, for a stopped process) to each of its processes, SIGKILL to
// those left after execGrace; then it waits for runc and the output, and
// releases the session.
func (s *execSession) end() error {
	s.mu.Lock()
	stop := s.stopAfter
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	if <-s.started; s.pid == 0 {
		s.r.log.Warn("runc runtime: runc exec wrote no pid file: the session's processes are not known", "container", s.id)
	}
	var errs []error
	deadline := time.Now().Add(execGrace)
	for {
		left, err := s.signalSession(unix.SIGHUP, unix.SIGCONT)
		errs = append(errs, err)
		waitGone(left, time.Until(deadline))
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for deadline := time.Now().Add(killTimeout); ; {
		left, err := s.signalSession(unix.SIGKILL)
		errs = append(errs, err)
		if len(left) == 0 {
			break
		}
		if waitGone(left, time.Until(deadline)); time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("exec session %d: %d processes outlived SIGKILL by %s", s.pid, len(left), killTimeout))
			break
		}
	}
	select {
	case <-s.runcDone:
	case <-time.After(killTimeout):
		s.r.log.Warn("runc runtime: runc exec outlived its command; killing it", "container", s.id, "pid", s.pid)
		s.killRunc()
		<-s.runcDone
	}
	if _, err := s.finish(); err != nil {
		s.r.log.Debug("runc runtime: exec", "container", s.id, "err", err)
	}
	s.release()
	return errors.Join(errs...)
}

// signalSession sends sigs to every process of the command's session in
// the container's cgroup and returns pidfds of those it reached, which
// waitGone closes. A session's id is its leader's pid, which the kernel
// does not hand out again while the session has a process.
func (s *execSession) signalSession(sigs ...unix.Signal) ([]int, error) {
	if s.pid == 0 {
		return nil, nil
	}
	procs := filepath.Join(s.r.cg.dir("pids", s.r.cgroupsPath(s.id)), "cgroup.procs")
	b, err := os.ReadFile(procs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // the container is gone, and its processes with it
	} else if err != nil {
		return nil, err
	}
	var fds []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone
		}
		// Read after the pidfd is open, it is the session of the process
		// the pidfd holds, or of none.
		if sid, err := sessionOf(pid); err != nil || sid != s.pid {
			unix.Close(fd)
			continue
		}
		for _, sig := range sigs {
			_ = unix.PidfdSendSignal(fd, sig, nil, 0)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// sessionOf reads the session id of a process from /proc/<pid>/stat,
// whose second field, the command's name in parentheses, may hold spaces
// and parentheses of its own.
func sessionOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:]) // state, ppid, pgrp, session, ...
	if i < 0 || len(f) < 4 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	return strconv.Atoi(f[3])
}

// waitGone waits for the processes behind pidfds to exit, for at most d
// in all, and closes the pidfds.
func waitGone(pidfds []int, d time.Duration) {
	deadline := time.Now().Add(d)
	for _, fd := range pidfds {
		_, _ = waitExit(context.Background(), fd, time.Until(deadline))
		unix.Close(fd)
	}
}

// release closes the session's files and removes its directory.
func (s *execSession) release() {
	for _, f := range []*os.File{s.master, s.stdin, s.stdout, s.stderr} {
		if f != nil {
			f.Close()
		}
	}
	s.mu.Lock()
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
		s.pidfd = -1
	}
	s.mu.Unlock()
	if err := os.RemoveAll(s.dir); err != nil {
		s.r.log.Warn("runc runtime: removing an exec session's directory", "dir", s.dir, "err", err)
	}
}

// execIO gives runc exec the other ends of the session's pipes, or the
// session's pty as its controlling terminal; go-runc closes them once
// runc has started (StartCloser).
type execIO struct {
	stdin, stdout, stderr *os.File // nil stdin: /dev/null
	tty                   bool
}

var _ gorunc.StartCloser = (*execIO)(nil)

func (x *execIO) Stdin() io.WriteCloser { return nil }
func (x *execIO) Stdout() io.ReadCloser { return nil }
func (x *execIO) Stderr() io.ReadCloser { return nil }

func (x *execIO) Set(cmd *exec.Cmd) {
	if x.stdin != nil {
		cmd.Stdin = x.stdin
	}
	cmd.Stdout, cmd.Stderr = x.stdout, x.stderr
	if x.tty {
		// A session of its own (and so a process group: Setpgid would
		// fail for a session leader) whose controlling terminal is the
		// pty: resizing it sends runc SIGWINCH.
		cmd.SysProcAttr.Setpgid = false
		cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
	}
}

func (x *execIO) CloseAfterStart() error { return x.Close() }

func (x *execIO) Close() error {
	for _, f := range []*os.File{x.stdin, x.stdout, x.stderr} {
		if f != nil {
			f.Close() // the pty's slave thrice: the second and third fail
		}
	}
	return nil
}

// watchRenames reports, by becoming readable, when a file is renamed into
// dir: runc writes its pid file to a temporary one and renames it into
// place.
func watchRenames(dir string) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "inotify"), nil // non-blocking: Close ends a Read
}

// pollable is f, a terminal's master, on Go's poller, so that closing it
// ends a Read or Write in progress; pty.Open's ioctls make it blocking.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// setSize is pty.Setsize through the poller: os.File.Fd, which
// pty.Setsize calls, would make the master blocking again.
func setSize(master *os.File, size apiv1.TerminalSize) error {
	c, err := master.SyscallConn()
	if err != nil {
		return err
	}
	ws := &unix.Winsize{Row: size.Rows, Col: size.Cols}
	if cerr := c.Control(func(fd uintptr) { err = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); cerr != nil {
		return cerr
	}
	return err
}

// onlcr writes a terminal's output as ONLCR shows it, a lone LF as CR LF:
// runc clears ONLCR on the container's pty when it relays it (its host
// terminal is to translate), racing the command, which sees either.
type onlcr struct {
	w   io.Writer
	cr  bool // the last byte was a CR
	buf []byte
}

func (o *onlcr) Write(p []byte) (int, error) {
	o.buf = o.buf[:0]
	for _, c := range p {
		if c == '\n' && !o.cr {
			o.buf = append(o.buf, '\r')
		}
		o.buf = append(o.buf, c)
		o.cr = c == '\r'
	}
	if _, err := o.w.Write(o.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
