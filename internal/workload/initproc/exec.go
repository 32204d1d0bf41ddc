package initproc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
)

// An exec session is a command the init starts for the runtime (see
// initspec's protocol): a child of the init, so that it has what runc
// gave the init (namespaces, cgroup, rlimits, seccomp, no_new_privs,
// capabilities, which a setuid from root to another user clears), as a
// runc exec would, without a runc process per session.

// killWait bounds the wait for a SIGKILLed session's processes to be gone.
const killWait = 10 * time.Second

// execServer accepts the runtime's exec sessions.
type execServer struct {
	ln *net.UnixListener

	mu sync.Mutex
	// exits are the sessions' commands not reaped yet, by pid: reap
	// delivers their wait status there.
	exits map[int]chan unix.WaitStatus
	// sessions are the open sessions by id (their command's pid). Once a
	// session has no process left, the kernel may give its id to a new
	// command, whose session it then is: the older one is over.
	sessions map[int]*execCommand
}

// listenExec takes the listening socket the runtime passed as fd.
func listenExec(fd int) (*execServer, error) {
	f := os.NewFile(uintptr(fd), "exec-socket")
	defer f.Close() // FileListener holds a duplicate
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%s %d: %w", initspec.FlagExecFD, fd, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("%s %d: not a unix socket", initspec.FlagExecFD, fd)
	}
	return &execServer{ln: ul, exits: map[int]chan unix.WaitStatus{}, sessions: map[int]*execCommand{}}, nil
}

// serve accepts sessions until the listener fails for good.
func (x *execServer) serve() {
	for {
		c, err := x.ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "isolation-init: exec: accept: %v\n", err)
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: let sessions end
			continue
		}
		go x.session(c)
	}
}

// reaped gives pid's wait status to its session; it reports whether pid
// was a session's command.
func (x *execServer) reaped(pid int, ws unix.WaitStatus) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	ch, ok := x.exits[pid]
	if ok {
		ch <- ws // buffered: one status per command
		delete(x.exits, pid)
	}
	return ok
}

// session runs one session on c (see initspec).
func (x *execServer) session(c *net.UnixConn) {
	defer c.Close()
	if err := peerOutside(c); err != nil {
		_ = initspec.WriteMessage(c, initspec.ExecReply{Error: err.Error()})
		return
	}
	var req initspec.ExecRequest
	files, err := initspec.ReadMessage(c, &req)
	if err != nil {
		return // nobody to tell
	}
	cmd, err := x.start(req, files)
	if err != nil {
		reply := initspec.ExecReply{Error: err.Error()}
		_ = errors.As(err, &reply.Errno)
		_ = initspec.WriteMessage(c, reply)
		return
	}
	err = initspec.WriteMessage(c, initspec.ExecReply{Started: true}, cmd.sent...)
	for _, f := range cmd.sent {
		f.Close()
	}
	// The runtime's writes end when it closes the session, or dies.
	hangup := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c)
		close(hangup)
	}()
	if err != nil {
		c.Close() // the runtime is gone: hang up
	}
	exited := false
	select {
	case ws := <-cmd.exit:
		exited = true
		_ = initspec.WriteMessage(c, exitReply(ws))
		<-hangup
	case <-hangup:
	}
	var herr error
	if x.owns(cmd) {
		herr = hangUp(cmd.pid, initspec.ExecGrace, killWait)
	}
	x.mu.Lock()
	if x.sessions[cmd.pid] == cmd {
		delete(x.sessions, cmd.pid)
	}
	x.mu.Unlock()
	if !exited {
		select {
		case ws := <-cmd.exit:
			_ = initspec.WriteMessage(c, exitReply(ws))
		case <-time.After(killWait):
		}
	}
	if herr != nil {
		_ = initspec.WriteMessage(c, initspec.ExecReply{Error: herr.Error()})
	}
}

// owns reports whether cmd's session id is still its session's.
func (x *execServer) owns(cmd *execCommand) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.sessions[cmd.pid] == cmd
}

func exitReply(ws unix.WaitStatus) initspec.ExecReply {
	r := initspec.ExecReply{Exited: true, Code: ws.ExitStatus()}
	if ws.Signaled() {
		r.Code = 128 + int(ws.Signal())
		r.Signal = strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG")
	}
	return r
}

// peerOutside refuses a peer inside the container's pid namespace: only
// the host, whose pid the kernel gives as 0 here, may ask. The socket is
// never mounted into the container; this is defence in depth.
func peerOutside(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	cerr := raw.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err = errors.Join(cerr, err); err != nil {
		return err
	}
	if cred.Pid != 0 {
		return fmt.Errorf("exec refused: the peer (pid %d) is in the container's pid namespace", cred.Pid)
	}
	return nil
}

// execCommand is a started session's command.
type execCommand struct {
	pid  int
	exit chan unix.WaitStatus
	sent []*os.File // for the runtime: the pidfd, and the terminal's master
}

// start starts req's command with files (stdin, stdout, stderr) or a
// terminal of the container, which it closes.
func (x *execServer) start(req initspec.ExecRequest, files []*os.File) (*execCommand, error) {
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(req.Args) == 0 || req.Args[0] == "" {
		return nil, errors.New("exec: no program")
	}
	want := 3
	if req.TTY {
		want = 0
	}
	if len(files) != want {
		return nil, fmt.Errorf("exec: %d descriptors came with the request, want %d", len(files), want)
	}
	cmd := &execCommand{exit: make(chan unix.WaitStatus, 1)}
	attr := &syscall.SysProcAttr{
		Setsid:     true,
		Credential: &syscall.Credential{Uid: req.UID, Gid: req.GID, Groups: append([]uint32{}, req.Groups...)},
	}
	stdio := make([]uintptr, 3)
	if req.TTY {
		master, slave, err := openTerminal(req)
		if err != nil {
			return nil, err
		}
		defer slave.Close()
		cmd.sent = append(cmd.sent, master)
		for i := range stdio {
			stdio[i] = slave.Fd()
		}
		attr.Setctty, attr.Ctty = true, 0 // the child's stdin
	} else {
		for i, f := range files {
			stdio[i] = f.Fd()
		}
	}
	path, err := lookPath(req.Args[0], req.Env, req.Cwd)
	if err == nil {
		pidfd := -1
		attr.PidFD = &pidfd
		// Registered before reap can see it exit: reap waits for mu.
		x.mu.Lock()
		cmd.pid, err = syscall.ForkExec(path, req.Args, &syscall.ProcAttr{Dir: req.Cwd, Env: req.Env, Files: stdio, Sys: attr})
		if err == nil {
			x.exits[cmd.pid] = cmd.exit
			x.sessions[cmd.pid] = cmd
		}
		x.mu.Unlock()
		if err == nil {
			cmd.sent = append([]*os.File{os.NewFile(uintptr(pidfd), "pidfd")}, cmd.sent...)
		}
	}
	if err != nil {
		for _, f := range cmd.sent {
			f.Close()
		}
		return nil, fmt.Errorf("exec %q: %w", req.Args[0], err)
	}
	normalOOMScore(cmd.pid)
	return cmd, nil
}

// openTerminal opens a pty of the container's devpts (its /dev/ptmx),
// sized as req asks, its slave owned by the command's user, as runc
// gives one.
func openTerminal(req initspec.ExecRequest) (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("exec: open /dev/ptmx: %w", err)
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	fail := func(what string, err error) (*os.File, *os.File, error) {
		master.Close()
		return nil, nil, fmt.Errorf("exec: the terminal: %s: %w", what, err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlockpt", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		return fail("TIOCGPTPEER", errno)
	}
	slave = os.NewFile(sfd, "pts")
	if err := unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, &unix.Winsize{Row: req.Rows, Col: req.Cols}); err != nil {
		slave.Close()
		return fail("TIOCSWINSZ", err)
	}
	if err := unix.Fchown(int(sfd), int(req.UID), -1); err != nil {
		slave.Close()
		return fail("chown", err)
	}
	return master, slave, nil
}

// lookPath finds file on the command's PATH, in the container, as execvp
// does; a name with a slash is the path itself (relative to cwd).
func lookPath(file string, env []string, cwd string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, file)
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", syscall.ENOENT
}

// hangUp ends a session as a terminal's hangup does: SIGHUP (and
// SIGCONT, for a stopped process) to each of its processes, SIGKILL to
// those left after grace.
func hangUp(sid int, grace, killWait time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		left := signalSession(sid, unix.SIGHUP, unix.SIGCONT)
		waitGone(left, time.Until(deadline))
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for deadline := time.Now().Add(killWait); ; {
		left := signalSession(sid, unix.SIGKILL)
		if len(left) == 0 {
			return nil
		}
		if waitGone(left, time.Until(deadline)); time.Now().After(deadline) {
			return fmt.Errorf("exec session %d: %d processes outlived SIGKILL by %s", sid, len(left), killWait)
		}
	}
}

// signalSession sends sigs to every live process of session sid and
// returns pidfds of those it reached, which waitGone closes. A session's
// id is its leader's pid, which the kernel does not hand out again while
// the session has a process.
func signalSession(sid int, sigs ...unix.Signal) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var fds []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone
		}
		// Read after the pidfd is open, it is the session of the process
		// the pidfd holds, or of none. A zombie is gone but for its reaping.
		if s, state, err := sessionOf(pid); err != nil || s != sid || state == "Z" {
			unix.Close(fd)
			continue
		}
		for _, sig := range sigs {
			_ = unix.PidfdSendSignal(fd, sig, nil, 0)
		}
		fds = append(fds, fd)
	}
	return fds
}

// sessionOf reads the session id and the state of a process from
// /proc/<pid>/stat, whose second field, the command's name in
// parentheses, may hold spaces and parentheses of its own.
func sessionOf(pid int) (sid int, state string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:]) // state, ppid, pgrp, session, ...
	if i < 0 || len(f) < 4 {
		return 0, "", fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	sid, err = strconv.Atoi(f[3])
	return sid, f[0], err
}

// waitGone waits for the processes behind pidfds to exit, for at most d
// in all, and closes the pidfds.
func waitGone(pidfds []int, d time.Duration) {
	deadline := time.Now().Add(d)
	for _, fd := range pidfds {
		for {
			ms := max(int(time.Until(deadline)/time.Millisecond), 0)
			_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms) //nolint:gosec // G115: a file descriptor fits an int32
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		unix.Close(fd)
	}
}
