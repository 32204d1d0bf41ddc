package runc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
)

// An exec session is a command the container's init starts (see
// initspec's protocol), asked over the unix socket the runtime gave the
// init at the container's start: no runc process runs per session. The
// command is the init's child, so it has the workload's namespaces,
// cgroup, rlimits, seccomp profile and no_new_privileges, which runc set
// up for the init, and the init's capabilities as root, none but the
// bounding set as another user (the setuid clears them), as the
// workload's command and a runc exec have. It is a session leader; every
// process it starts belongs to its session unless it leaves it.
//
// With a terminal, the command's is a pty of the container (its own
// /dev/ptmx), its controlling terminal, whose master the init sends
// back: the runtime reads, writes and resizes it directly.

// execGrace is how long a closed session's processes have between SIGHUP
// and SIGKILL.
const execGrace = initspec.ExecGrace

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
			return nil, workload.ErrUnknown // the container stopped meanwhile
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

// execProcess is the process of spec's command: the workload's
// environment and working directory with spec's on top, and the image's
// user or spec's; the init gives it the rest of the workload's.
func execProcess(root rootfs, base processBase, spec workload.ExecSpec) (initspec.ExecRequest, error) {
	base.Env = mergeEnv(base.Env, spec.Env)
	base.Cwd = cmp.Or(spec.WorkingDir, base.Cwd)
	if spec.TTY {
		base.Env = withDefault(base.Env, "TERM", "xterm") // as docker exec -t
	}
	u, err := execUser(root, base.User, spec.UID, spec.GID)
	if err != nil {
		return initspec.ExecRequest{}, err
	}
	p, err := base.process(root, spec.Command, "command", u)
	if err != nil {
		return initspec.ExecRequest{}, err
	}
	req := initspec.ExecRequest{Args: p.Args, Env: p.Env, Cwd: p.Cwd, UID: p.UID, GID: p.GID, Groups: p.Groups, TTY: spec.TTY}
	if spec.TTY {
		size := termSize(spec.Size)
		req.Rows, req.Cols = size.Rows, size.Cols
	}
	return req, nil
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

// execSession is a running command the init started.
type execSession struct {
	r    *Runtime
	id   string
	tty  bool
	conn *net.UnixConn // to the init: the session lasts as long as it

	// Our ends: the terminal's master (tty), or the pipes; closed once the
	// session has ended.
	master, stdin, stdout, stderr *os.File

	pid       int           // the command's host pid, its session's id; 0 when it was gone at once
	exited    chan struct{} // closed once the init said how it ended, or went away
	ended     chan struct{} // closed once the init closed the connection: the session is over
	status    *workload.ExitStatus
	initErr   error // what the init said went wrong ending the session
	mu        sync.Mutex
	pidfd     int            // the command's, -1 once released
	copied    sync.WaitGroup // the output's copiers
	stopAfter func() bool    // stops ending the session with ctx (under mu)
	finish    func() (workload.ExitStatus, error)
	closeOnce sync.Once
	closeErr  error
}

var _ workload.Exec = (*execSession)(nil)

// startExec asks the init of container id to start req's command, and
// returns once it has.
func (r *Runtime) startExec(ctx context.Context, id string, req initspec.ExecRequest, spec workload.ExecSpec) (*execSession, error) {
	conn, err := dialExec(r.paths(id).execSock)
	if err != nil {
		return nil, err
	}
	s := &execSession{r: r, id: id, tty: spec.TTY, conn: conn, pidfd: -1, exited: make(chan struct{}), ended: make(chan struct{})}
	s.finish = sync.OnceValues(s.exitStatus)
	child, err := s.openIO(spec)
	if err != nil {
		s.release()
		return nil, err
	}
	// The init answers at once; a deadline keeps a wedged one from
	// holding the caller.
	_ = conn.SetDeadline(time.Now().Add(r.opts.StartTimeout))
	err = initspec.WriteMessage(conn, req, child...)
	for _, f := range child {
		f.Close()
	}
	var reply initspec.ExecReply
	var files []*os.File
	if err == nil {
		files, err = initspec.ReadMessage(conn, &reply)
	}
	if err == nil {
		err = s.started(reply, files)
	}
	if err != nil {
		s.release()
		return nil, fmt.Errorf("exec in container %s: %w", id, err)
	}
	_ = conn.SetDeadline(time.Time{})
	go s.readEvents()
	s.copyOutput(spec)
	if err := ctx.Err(); err != nil {
		s.Close()
		return nil, err
	}
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

// dialExec connects to a container's exec socket; ErrNeedsRestart when
// it has none: an earlier isolationd started it.
func dialExec(path string) (*net.UnixConn, error) {
	var c *net.UnixConn
	err := shortPath(path, func(addr string) (err error) {
		c, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil, workload.ErrNeedsRestart
	}
	return c, err
}

// started takes the init's answer to the request: the command's pidfd,
// and its terminal's master.
func (s *execSession) started(reply initspec.ExecReply, files []*os.File) error {
	want := 1
	if s.tty {
		want = 2
	}
	switch {
	case reply.Error != "":
		err := errors.New(reply.Error)
		if reply.Errno != 0 {
			err = fmt.Errorf("%s: %w", reply.Error, reply.Errno)
		}
		return err
	case !reply.Started || len(files) != want:
		for _, f := range files {
			f.Close()
		}
		return fmt.Errorf("the init answered %+v with %d descriptors, want the command started with %d", reply, len(files), want)
	}
	// The pidfd as an int, for pidfd_send_signal; the master as it is.
	fd, err := unix.FcntlInt(files[0].Fd(), unix.F_DUPFD_CLOEXEC, 0)
	files[0].Close()
	if err != nil {
		if s.tty {
			files[1].Close()
		}
		return err
	}
	s.pidfd = fd
	if s.pid, err = pidOf(fd); err != nil {
		if s.tty {
			files[1].Close()
		}
		return err
	}
	if s.tty {
		if s.master, err = pollable(files[1]); err != nil {
			return err
		}
	}
	return nil
}

// pidOf is the host pid of the process behind pidfd, which the kernel
// shows in the reader's pid namespace; 0 once it has been reaped (a
// quick command can be).
func pidOf(pidfd int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", pidfd))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			pid, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("the command's pidfd: pid %q: %w", v, err)
			}
			return max(pid, 0), nil
		}
	}
	return 0, errors.New("the command's pidfd: no Pid in its fdinfo")
}

// readEvents reads the init's messages until it closes the connection:
// the command's exit, then what went wrong hanging its session up.
func (s *execSession) readEvents() {
	defer close(s.ended)
	defer s.closeExited()
	for {
		var ev initspec.ExecReply
		files, err := initspec.ReadMessage(s.conn, &ev)
		for _, f := range files {
			f.Close()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.initErr = errors.Join(s.initErr, err)
			}
			return
		}
		switch {
		case ev.Exited:
			s.status = &workload.ExitStatus{Code: ev.Code, Signal: ev.Signal}
			s.closeExited()
		case ev.Error != "":
			s.initErr = errors.Join(s.initErr, errors.New(ev.Error))
		}
	}
}

func (s *execSession) closeExited() {
	select {
	case <-s.exited:
	default:
		close(s.exited)
	}
}

// openIO makes the session's pipes and returns the command's ends:
// stdin (/dev/null without spec.Stdin), stdout and stderr. With a
// terminal there are none: the init makes it.
func (s *execSession) openIO(spec workload.ExecSpec) ([]*os.File, error) {
	if s.tty {
		return nil, nil
	}
	var child [3]*os.File
	var err error
	if spec.Stdin != nil {
		child[0], s.stdin, err = os.Pipe()
	} else {
		child[0], err = os.Open(os.DevNull)
	}
	if err == nil {
		s.stdout, child[1], err = os.Pipe()
	}
	if err == nil {
		s.stderr, child[2], err = os.Pipe()
	}
	if err == nil {
		widen(s.stdout)
		widen(s.stderr)
	}
	if err != nil {
		for _, f := range child {
			if f != nil {
				f.Close()
			}
		}
		return nil, err
	}
	return child[:], nil
}

// outputRead bounds one read of the command's output, which is one
// message to the client: each costs a hop per goroutine on the way to
// it, which on a loaded machine waits for a core, so a session's
// throughput is about the messages a second times their size.
const outputRead = 256 << 10

// outputPipe is the capacity asked for an output pipe (Linux's default is
// 64 KiB), so that a command writes a full read ahead while the last one
// travels. A pipe that cannot grow (a user's pipe quota) works as it is.
const outputPipe = 1 << 20

// widen grows f's pipe through its raw descriptor (f.Fd would take it
// out of the poller).
func widen(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, outputPipe) })
	}
}

// copyOutput copies the command's stdout and stderr (with a terminal,
// everything it writes) to spec's as they come.
func (s *execSession) copyOutput(spec workload.ExecSpec) {
	if s.tty {
		s.copied.Add(1)
		go s.copyOut(spec.Stdout, s.master)
		return
	}
	s.copied.Add(2)
	go s.copyOut(spec.Stdout, s.stdout)
	go s.copyOut(spec.Stderr, s.stderr)
}

// copyOut copies r to w until r ends: once every process holding the
// pipe's other end has closed it (the pty's master then reads EIO).
// After a write to w fails, the rest is read and dropped, so that a
// reader gone away does not hold the command up: its session ends when
// it is closed.
func (s *execSession) copyOut(w io.Writer, r *os.File) {
	defer s.copied.Done()
	buf := make([]byte, outputRead)
	for {
		n, err := r.Read(buf)
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

// Resize sets the size of the command's terminal.
func (s *execSession) Resize(size apiv1.TerminalSize) error {
	if !s.tty {
		return errors.New("the command has no terminal")
	}
	return setSize(s.master, termSize(size))
}

// Signal sends sig to the command (not to the rest of its session).
func (s *execSession) Signal(sig syscall.Signal) error {
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

// Wait returns how the command ended, once the init has said so and the
// command's output has been copied.
func (s *execSession) Wait() (workload.ExitStatus, error) { return s.finish() }

// exitStatus is how the command ended: as the init, which reaped it,
// says; or, when the init died first (its container stopped), as the
// kernel tells a holder of the command's pidfd.
func (s *execSession) exitStatus() (workload.ExitStatus, error) {
	<-s.exited
	s.copied.Wait()
	if s.status != nil {
		return *s.status, nil
	}
	info, ok := s.reapedStatus()
	if !ok {
		return workload.ExitStatus{}, fmt.Errorf("exec in container %s: the init went away without the command's status: %v", s.id, s.initErr)
	}
	if ws := unix.WaitStatus(info.Exit_code); ws.Signaled() { //nolint:gosec // G115: a wait status is 16 bits, never negative
		return workload.ExitStatus{Code: 128 + int(ws.Signal()), Signal: strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG")}, nil
	} else {
		return workload.ExitStatus{Code: ws.ExitStatus()}, nil
	}
}

// reapedStatus is the command's exit status as the kernel gives it to a
// holder of its pidfd, once it has been reaped: a moment after its
// output ends (the init, or the kernel as the container stops, reaps it),
// and at most after the hang-up's grace and the kill's wait.
func (s *execSession) reapedStatus() (unix.PidfdInfo, bool) {
	deadline := time.Now().Add(execGrace + killTimeout)
	for {
		s.mu.Lock()
		info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_EXIT}
		ok := s.pidfd >= 0 && unix.IoctlPidfdInfo(s.pidfd, &info) == nil && info.Mask&unix.PIDFD_INFO_EXIT != 0
		gone := s.pidfd < 0
		s.mu.Unlock()
		if ok || gone || time.Now().After(deadline) {
			return info, ok
		}
		time.Sleep(5 * time.Millisecond) // the kernel says nothing when a reap happens
	}
}

// Close ends the session (see workload.Exec). It returns once the writes
// to Stdout and Stderr have returned; a Read of Stdin in progress is not
// interrupted: the copy of Stdin ends when it returns.
func (s *execSession) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.end() })
	return s.closeErr
}

// end ends the runtime's writes to the init, which then hangs the
// session up (SIGHUP, then SIGKILL after execGrace, to each of its
// processes) and closes the connection; then it waits for the output and
// releases the session.
func (s *execSession) end() error {
	s.mu.Lock()
	stop := s.stopAfter
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	_ = s.conn.CloseWrite() // fails once the init has gone, which ended the session
	select {
	case <-s.ended:
	case <-time.After(execGrace + 2*killTimeout):
		s.r.log.Warn("runc runtime: the init did not end an exec session; leaving it", "container", s.id, "pid", s.pid)
		s.conn.Close()
		<-s.ended
	}
	if _, err := s.finish(); err != nil {
		s.r.log.Debug("runc runtime: exec", "container", s.id, "err", err)
	}
	s.release()
	return s.initErr
}

// release closes the session's files and its connection.
func (s *execSession) release() {
	for _, f := range []*os.File{s.master, s.stdin, s.stdout, s.stderr} {
		if f != nil {
			f.Close()
		}
	}
	s.conn.Close()
	s.mu.Lock()
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
		s.pidfd = -1
	}
	s.mu.Unlock()
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
