package runc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// stream collects a command's output and lets a test wait for what it
// expects, woken by each write.
type stream struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // closed, and replaced, by each write
}

func newStream() *stream { return &stream{wrote: make(chan struct{})} }

func (s *stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	close(s.wrote)
	s.wrote = make(chan struct{})
	return len(p), nil
}

func (s *stream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor waits until the output holds want, and returns it.
func (s *stream) waitFor(t *testing.T, want string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		s.mu.Lock()
		out, wrote := s.buf.String(), s.wrote
		s.mu.Unlock()
		if strings.Contains(out, want) {
			return out
		}
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("after %s, no %q in the output %q", within, want, out)
		}
	}
}

// running is a lab with an environment whose workload runs as the
// image's user app.
func running(t *testing.T) (*lab, workload.Spec) {
	l := newLab(t)
	spec := l.spec("ex", sh("sleep 1000"))
	spec.Image.User = "app"
	spec.Workload.Env = map[string]string{"GREETING": "hi", "MODE": "workload"}
	spec.Workload.WorkingDir = "/tmp"
	l.ensure(spec)
	return l, spec
}

// exec starts spec's command in envID's container.
func (l *lab) exec(envID string, spec workload.ExecSpec) *execSession {
	l.t.Helper()
	x, err := l.rt.Exec(context.Background(), envID, spec)
	if err != nil {
		l.t.Fatalf("exec %q: %v", spec.Command, err)
	}
	l.t.Cleanup(func() { x.Close() })
	return x.(*execSession)
}

// run runs spec's command to its end and returns its output and status.
func (l *lab) run(envID string, spec workload.ExecSpec) (stdout, stderr string, st workload.ExitStatus) {
	l.t.Helper()
	var out, errOut bytes.Buffer
	spec.Stdout, spec.Stderr = &out, &errOut
	x := l.exec(envID, spec)
	st, err := x.Wait()
	if err != nil {
		l.t.Fatalf("wait %q: %v", spec.Command, err)
	}
	if err := x.Close(); err != nil {
		l.t.Fatalf("close %q: %v", spec.Command, err)
	}
	return out.String(), errOut.String(), st
}

func command(script string) []string { return []string{"sh", "-c", script} }

func TestExec_ReturnsTheOutputTheExitCodeAndTheSignalThatKilledIt(t *testing.T) {
	l, w := running(t)
	out, errOut, st := l.run(w.EnvID, workload.ExecSpec{Command: command("echo out; echo err >&2; exit 3")})
	if out != "out\n" || errOut != "err\n" || st != (workload.ExitStatus{Code: 3}) {
		t.Fatalf("stdout %q, stderr %q, status %+v; want out, err, exit 3", out, errOut, st)
	}
	// 143 either way; the signal tells them apart. The command waits for
	// a line, so that it is still running when Exec returns.
	for _, c := range []struct {
		script string
		want   workload.ExitStatus
	}{
		{"read line; kill -TERM $$", workload.ExitStatus{Code: 143, Signal: "TERM"}},
		{"read line; exit 143", workload.ExitStatus{Code: 143}},
	} {
		in, feed := io.Pipe()
		x := l.exec(w.EnvID, workload.ExecSpec{Command: command(c.script), Stdin: in})
		if _, err := io.WriteString(feed, "go\n"); err != nil {
			t.Fatal(err)
		}
		st, err := x.Wait()
		feed.Close()
		if err != nil || st != c.want {
			t.Errorf("%q: status %+v (%v), want %+v", c.script, st, err, c.want)
		}
	}
}

func TestExec_SignalReachesTheCommand(t *testing.T) {
	l, w := running(t)
	out := newStream()
	x := l.exec(w.EnvID, workload.ExecSpec{Command: command("trap 'echo got USR1; exit 9' USR1; echo ready; while :; do read x; done"), Stdin: blockingReader(t), Stdout: out})
	out.waitFor(t, "ready", 5*time.Second)
	if err := x.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if st, err := x.Wait(); err != nil || st != (workload.ExitStatus{Code: 9}) || !strings.Contains(out.String(), "got USR1") {
		t.Fatalf("status %+v (%v), output %q; want the trap's exit 9", st, err, out)
	}
	if err := x.Signal(syscall.SIGTERM); err == nil {
		t.Fatal("a signal to a command that has exited: no error")
	}
}

// blockingReader is a stdin that gives nothing until the test ends.
func blockingReader(t *testing.T) io.Reader {
	in, feed := io.Pipe()
	t.Cleanup(func() { feed.Close() })
	return in
}

func TestExec_StdinReachesTheCommandAndItsEOFClosesTheCommandsStdin(t *testing.T) {
	l, w := running(t)
	out, _, st := l.run(w.EnvID, workload.ExecSpec{Command: []string{"cat"}, Stdin: strings.NewReader("hello\nworld\n")})
	if out != "hello\nworld\n" || st.Code != 0 {
		t.Fatalf("cat: %q, %+v", out, st)
	}
	// Without Stdin, the command's is empty.
	if out, _, st := l.run(w.EnvID, workload.ExecSpec{Command: []string{"cat"}}); out != "" || st.Code != 0 {
		t.Fatalf("cat without stdin: %q, %+v", out, st)
	}
}

func TestExec_ATerminalIsTheContainersOwnSizedAndResized(t *testing.T) {
	l, w := running(t)
	in, feed := io.Pipe()
	defer feed.Close()
	out := newStream()
	x := l.exec(w.EnvID, workload.ExecSpec{Command: []string{"sh"}, TTY: true, Size: apiv1.TerminalSize{Rows: 30, Cols: 100}, Stdin: in, Stdout: out})
	say := func(line string) {
		t.Helper()
		if _, err := io.WriteString(feed, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	// The terminal echoes what is typed, and ends lines as a terminal does.
	say("stty size; echo size-done")
	out.waitFor(t, "30 100\r\nsize-done\r\n", 5*time.Second)
	if err := x.Resize(apiv1.TerminalSize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	say("stty size; echo resized")
	out.waitFor(t, "40 120\r\nresized\r\n", 5*time.Second)
	// The pty is the container's (its devpts numbers it), the shell's
	// controlling terminal, and the shell a session leader.
	say(`tty; echo "sid $(cut -d' ' -f6 /proc/$$/stat) pid $$ tty $(cut -d' ' -f7 /proc/$$/stat)"; exit 7`)
	st, err := x.Wait()
	if err != nil || st != (workload.ExitStatus{Code: 7}) {
		t.Fatalf("status %+v (%v), want exit 7; output %q", st, err, out)
	}
	got := out.String()
	if !regexp.MustCompile(`\r\n/dev/pts/[0-9]+\r\n`).MatchString(got) {
		t.Fatalf("tty did not name the container's /dev/pts/N: %q", got)
	}
	var sid, pid, tty int
	if i := strings.LastIndex(got, "sid "); i < 0 {
		t.Fatalf("no session line in %q", got)
	} else if _, err := fmt.Sscanf(got[i:], "sid %d pid %d tty %d", &sid, &pid, &tty); err != nil || sid != pid || tty == 0 {
		t.Fatalf("%q: the shell is not a session leader with a controlling terminal (%v)", got[i:], err)
	}
	x.Close()
	if err := x.Resize(apiv1.TerminalSize{Rows: 2, Cols: 2}); err == nil {
		t.Fatal("a resize after Close: no error")
	}
	// Without a terminal, there is nothing to resize.
	y := l.exec(w.EnvID, workload.ExecSpec{Command: []string{"true"}})
	if err := y.Resize(apiv1.TerminalSize{Rows: 2, Cols: 2}); err == nil {
		t.Fatal("a resize without a terminal: no error")
	}
}

// procs lists the processes of envID's cgroup.
func (l *lab) procs(envID string) []string {
	l.t.Helper()
	procs := strings.Fields(l.cgroupFile(envID, "pids", "cgroup.procs"))
	slices.Sort(procs)
	return procs
}

func TestExec_CloseHangsTheSessionUpAndLeavesNothingInTheCgroup(t *testing.T) {
	l, w := running(t)
	before := l.procs(w.EnvID)
	for _, c := range []struct {
		name   string
		tty    bool
		script string
		want   workload.ExitStatus
		output string
	}{
		// The shell's trap runs: SIGHUP came first; its background sleep,
		// of the same session, got one too.
		{"trap", false, "trap 'echo hung up; exit 5' HUP; sleep 1000 & echo ready; wait", workload.ExitStatus{Code: 5}, "hung up"},
		{"child", false, "sleep 1000 & echo ready; wait", workload.ExitStatus{Code: 129, Signal: "HUP"}, ""},
		{"terminal", true, "sleep 1000 & echo ready; wait", workload.ExitStatus{Code: 129, Signal: "HUP"}, ""},
		// What ignores SIGHUP gets SIGKILL after the grace.
		{"ignores", false, "trap '' HUP; sleep 1000 & echo ready; wait", workload.ExitStatus{Code: 137, Signal: "KILL"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := newStream()
			x := l.exec(w.EnvID, workload.ExecSpec{Command: command(c.script), TTY: c.tty, Stdout: out})
			out.waitFor(t, "ready", 5*time.Second)
			if sid, err := sessionOf(x.pid); err != nil || sid != x.pid {
				t.Fatalf("the command %d is in session %d (%v), not a session leader", x.pid, sid, err)
			}
			if n := len(l.procs(w.EnvID)); n != len(before)+2 {
				t.Fatalf("%d processes in the cgroup, want the workload's %d, the shell and its sleep", n, len(before))
			}
			start := time.Now()
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			st, err := x.Wait()
			if err != nil || st != c.want || !strings.Contains(out.String(), c.output) {
				t.Fatalf("status %+v (%v), output %q; want %+v and %q", st, err, out, c.want, c.output)
			}
			if after := l.procs(w.EnvID); !slices.Equal(after, before) {
				t.Fatalf("the cgroup holds %v after Close, %v before the exec", after, before)
			}
			if c.want.Signal == "KILL" && took < execGrace || c.want.Signal != "KILL" && took >= execGrace {
				t.Fatalf("Close took %s; the grace before SIGKILL is %s", took, execGrace)
			}
		})
	}
}

func TestExec_CancellingTheContextEndsTheSession(t *testing.T) {
	l, w := running(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := newStream()
	x, err := l.rt.Exec(ctx, w.EnvID, workload.ExecSpec{Command: command("echo ready; sleep 1000"), Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "ready", 5*time.Second)
	cancel()
	if st, err := x.Wait(); err != nil || st.Signal != "HUP" {
		t.Fatalf("after the cancel: %+v (%v), want the command hung up", st, err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
}

// sessionOf reads a process's session id, the sixth field of
// /proc/<pid>/stat, after the command's name in parentheses.
func sessionOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	if len(f) < 4 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	return strconv.Atoi(f[3])
}

// openFiles counts this process's file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func TestExec_SessionsReleaseTheirFilesAndGoroutines(t *testing.T) {
	l, w := running(t)
	l.run(w.EnvID, workload.ExecSpec{Command: []string{"true"}}) // what the first one sets up for good
	fds, goroutines := openFiles(t), runtime.NumGoroutine()
	for range 3 {
		l.run(w.EnvID, workload.ExecSpec{Command: []string{"cat"}, Stdin: strings.NewReader("x")})
		in, feed := io.Pipe()
		out := newStream()
		x, err := l.rt.Exec(context.Background(), w.EnvID, workload.ExecSpec{Command: command("echo ready; cat"), TTY: true, Stdin: in, Stdout: out})
		if err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, "ready", 5*time.Second)
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		feed.Close() // ends the copy of stdin, which Close does not wait for
	}
	// Goroutines end a little after what ended them returns, and nothing
	// tells when: the counts get a moment to come back.
	deadline := time.Now().Add(5 * time.Second)
	for openFiles(t) != fds || runtime.NumGoroutine() != goroutines {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d files and %d goroutines, %d and %d before the sessions; goroutines:\n%s",
				openFiles(t), runtime.NumGoroutine(), fds, goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExec_RunsAsTheImagesUserOrTheGivenOneWithTheWorkloadsEnvironment(t *testing.T) {
	l, w := running(t)
	id := func(spec workload.ExecSpec) string {
		spec.Command = command(`echo "$(id -u) $(id -g) [$(id -G)] $HOME $(pwd) $GREETING $MODE $HOSTNAME"`)
		out, _, st := l.run(w.EnvID, spec)
		if st.Code != 0 {
			t.Fatalf("%+v: %+v", spec, st)
		}
		return strings.TrimSpace(out)
	}
	u := func(n uint32) *uint32 { return &n }
	for _, c := range []struct {
		name string
		spec workload.ExecSpec
		want string
	}{
		{"image user", workload.ExecSpec{}, "1000 1000 [1000 50] /home/app /tmp hi workload ex"},
		{"uid in passwd", workload.ExecSpec{UID: u(0)}, "0 0 [0] /root /tmp hi workload ex"},
		{"uid not in passwd", workload.ExecSpec{UID: u(4242)}, "4242 4242 [4242] / /tmp hi workload ex"},
		{"uid and gid", workload.ExecSpec{UID: u(4242), GID: u(50)}, "4242 50 [50] / /tmp hi workload ex"},
		{"gid alone", workload.ExecSpec{GID: u(7)}, "1000 7 [7 50] /home/app /tmp hi workload ex"},
		{"env and working dir", workload.ExecSpec{Env: map[string]string{"MODE": "exec", "HOME": "/elsewhere"}, WorkingDir: "/home"}, "1000 1000 [1000 50] /elsewhere /home hi exec ex"},
	} {
		if got := id(c.spec); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// status reads a process's /proc status fields named in keys, from the
// host.
func procStatus(t *testing.T, pid int, keys ...string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		k, _, _ := strings.Cut(line, ":")
		if slices.Contains(keys, k) {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, "; ")
}

// workloadCommand is the host pid of envID's workload command, the
// init's child.
func (l *lab) workloadCommand(envID string) (initPid, cmdPid int) {
	l.t.Helper()
	initPid = l.status(envID).Pid
	// Each thread lists the children it forked: the init's are Go's.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", initPid))
	if err != nil {
		l.t.Fatal(err)
	}
	var f []string
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			l.t.Fatal(err)
		}
		f = append(f, strings.Fields(string(b))...)
	}
	if len(f) != 1 {
		l.t.Fatalf("the init has children %q, want the command alone", f)
	}
	cmdPid, _ = strconv.Atoi(f[0])
	return initPid, cmdPid
}

// waiting starts a command in envID's container that waits for its
// stdin to end, and returns the session and the host pid of its command.
func (l *lab) waiting(envID string, spec workload.ExecSpec) (*execSession, io.Closer) {
	l.t.Helper()
	in, feed := io.Pipe()
	spec.Command, spec.Stdin = []string{"cat"}, in
	x := l.exec(envID, spec)
	l.t.Cleanup(func() { feed.Close() })
	return x, feed
}

func TestExec_HasTheWorkloadsCapabilitiesLimitsSeccompCgroupAndNamespaces(t *testing.T) {
	l, w := running(t)
	initPid, cmdPid := l.workloadCommand(w.EnvID)
	privileges := []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"}
	root := uint32(0)
	bounding := strings.TrimPrefix(procStatus(t, initPid, "CapBnd"), "CapBnd: ")
	for _, c := range []struct {
		name      string
		uid       *uint32
		like      int    // the process whose privileges it has
		effective string // its CapEff
	}{
		{"as the image's user, like the workload's command", nil, cmdPid, "0000000000000000"},
		{"as root, like the init (root with the default set)", &root, initPid, bounding},
	} {
		x, _ := l.waiting(w.EnvID, workload.ExecSpec{UID: c.uid})
		got, want := procStatus(t, x.pid, privileges...), procStatus(t, c.like, privileges...)
		t.Logf("%s: %s", c.name, got)
		if got != want || !strings.Contains(got, "CapEff: "+c.effective+";") || !strings.Contains(got, "CapBnd: "+bounding+";") {
			t.Errorf("%s: %s, want %s, CapEff %s and CapBnd %s", c.name, got, want, c.effective, bounding)
		}
		if !strings.Contains(got, "NoNewPrivs: 1") || !strings.Contains(got, "Seccomp: 2") {
			t.Errorf("%s: %s: no no_new_privileges or no seccomp filter", c.name, got)
		}
		for _, f := range []string{"cgroup", "limits"} {
			if got, want := readProc(t, x.pid, f), readProc(t, cmdPid, f); got != want {
				t.Errorf("%s: /proc/self/%s is\n%s\nthe workload's command's\n%s", c.name, f, got, want)
			}
		}
		for _, ns := range []string{"pid", "net", "mnt", "ipc", "uts", "cgroup", "user"} {
			got, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", x.pid, ns))
			want, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", cmdPid, ns))
			if err1 != nil || err2 != nil || got != want {
				t.Errorf("%s: namespace %s is %s (%v), the workload's %s (%v)", c.name, ns, got, err1, want, err2)
			}
		}
	}
	// Capabilities the exec'd root has, its others have not.
	out, _, _ := l.run(w.EnvID, workload.ExecSpec{Command: command("touch /tmp/f && chown 1000 /tmp/f && echo chowned"), UID: &root})
	if out != "chowned\n" {
		t.Errorf("root could not chown: %q", out)
	}
	if _, errOut, st := l.run(w.EnvID, workload.ExecSpec{Command: command("chown 0 /home/app")}); st.Code == 0 {
		t.Errorf("the image's user could chown: %q", errOut)
	}
}

func readProc(t *testing.T, pid int, file string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExec_TwentySessionsRunAtOnce(t *testing.T) {
	l, w := running(t)
	const n = 20
	feeds := make([]io.Closer, n)
	outs := make([]*stream, n)
	xs := make([]*execSession, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, feed := io.Pipe()
			feeds[i], outs[i] = feed, newStream()
			x, err := l.rt.Exec(context.Background(), w.EnvID, workload.ExecSpec{
				Command: command(fmt.Sprintf("echo started %d; read line; echo \"$line\"; exit %d", i, i)),
				Stdin:   in, Stdout: outs[i], TTY: i%2 == 1,
			})
			if err == nil {
				xs[i] = x.(*execSession)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// All twenty run at once: each waits for its line.
	for i := range n {
		outs[i].waitFor(t, fmt.Sprintf("started %d", i), 10*time.Second)
	}
	for i := range n {
		fmt.Fprintf(feeds[i].(io.Writer), "line %d\n", i)
	}
	for i, x := range xs {
		st, err := x.Wait()
		feeds[i].Close()
		if err != nil || st.Code != i || !strings.Contains(outs[i].String(), fmt.Sprintf("line %d", i)) {
			t.Errorf("session %d: %+v (%v), output %q", i, st, err, outs[i])
		}
		x.Close()
	}
}

func TestExec_AMissingProgramIsASpecErrorAndAMissingContainerUnknown(t *testing.T) {
	l, w := running(t)
	var se *workload.SpecError
	if _, err := l.rt.Exec(context.Background(), w.EnvID, workload.ExecSpec{Command: []string{"no-such-program"}}); !errors.As(err, &se) || se.Field != "command" || !strings.Contains(se.Message, `"no-such-program" is not in the image's PATH`) {
		t.Fatalf("a missing program: %v, want a spec error on command", err)
	}
	// The container's own view: the home volume is mounted over the
	// image's /home.
	if err := os.WriteFile(filepath.Join(l.rt.paths(l.rt.id(w.EnvID)).home, "app", "tool"), []byte("#!/bin/sh\necho tool ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, _, st := l.run(w.EnvID, workload.ExecSpec{Command: []string{"/home/app/tool"}}); out != "tool ran\n" || st.Code != 0 {
		t.Fatalf("a program on the home volume: %q %+v", out, st)
	}
	if _, err := l.rt.Exec(context.Background(), "env-nothing", workload.ExecSpec{Command: []string{"true"}}); !errors.Is(err, workload.ErrUnknown) {
		t.Fatalf("exec into an environment without a container: %v, want ErrUnknown", err)
	}
	if err := l.rt.Remove(context.Background(), w.EnvID); err != nil {
		t.Fatal(err)
	}
	if _, err := l.rt.Exec(context.Background(), w.EnvID, workload.ExecSpec{Command: []string{"true"}}); !errors.Is(err, workload.ErrUnknown) {
		t.Fatalf("exec into a removed container: %v, want ErrUnknown", err)
	}
}

func TestExec_RemovingTheContainerEndsItsSessions(t *testing.T) {
	l, w := running(t)
	x, _ := l.waiting(w.EnvID, workload.ExecSpec{})
	if err := l.rt.Remove(context.Background(), w.EnvID); err != nil {
		t.Fatal(err)
	}
	if st, err := x.Wait(); err != nil || st.Signal != "KILL" {
		t.Fatalf("after Remove: %+v (%v), want the command killed", st, err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
}

// hashWriter hashes and counts what it is given.
type hashWriter struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

func TestExec_SixtyFourMiBThroughCatArriveIntact(t *testing.T) {
	l, w := running(t)
	const size = 64 << 20
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(data)
	want := sha256.Sum256(data)
	out := &hashWriter{h: sha256.New()}
	start := time.Now()
	x := l.exec(w.EnvID, workload.ExecSpec{Command: []string{"cat"}, Stdin: bytes.NewReader(data), Stdout: out})
	st, err := x.Wait()
	took := time.Since(start)
	if err != nil || st.Code != 0 {
		t.Fatalf("cat: %+v %v", st, err)
	}
	if got := out.h.Sum(nil); out.n != size || !bytes.Equal(got, want[:]) {
		t.Fatalf("%d bytes came back, hash %x; sent %d, hash %x", out.n, got, size, want)
	}
	// The rate is make bench-exec's to measure, not a test's to assert.
	t.Logf("64 MiB in and out of cat in %s", took.Round(time.Millisecond))
}

// The network namespace is the host's user namespace's: runc joins it
// before the container's user namespace (runc 1.1 did not, and could not
// exec here: New refuses it).
func TestExec_InAUserNamespaceTheCommandIsInTheContainersNamespacesAndMappedIDs(t *testing.T) {
	l := usernsLab(t)
	w := l.usernsSpec("userns", sh("sleep 1000"))
	l.ensure(w)
	_, cmdPid := l.workloadCommand(w.EnvID)
	x, _ := l.waiting(w.EnvID, workload.ExecSpec{})
	for _, ns := range []string{"user", "net", "pid", "mnt", "ipc", "uts", "cgroup"} {
		got, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", x.pid, ns))
		want, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", cmdPid, ns))
		if err1 != nil || err2 != nil || got != want {
			t.Errorf("namespace %s is %s (%v), the workload's %s (%v)", ns, got, err1, want, err2)
		}
	}
	if got, want := readProc(t, x.pid, "cgroup"), readProc(t, cmdPid, "cgroup"); got != want {
		t.Errorf("cgroup %s, the workload's %s", got, want)
	}
	out, _, st := l.run(w.EnvID, workload.ExecSpec{Command: command("id -u; cat /proc/self/uid_map; echo hi > /home/exec")})
	if f := strings.Fields(out); st.Code != 0 || len(f) < 4 || f[0] != "0" || f[2] != strconv.Itoa(testUsernsBase) {
		t.Fatalf("id -u and uid_map in the exec: %q %+v, want root mapped to %d", out, st, testUsernsBase)
	}
	var fi syscall.Stat_t
	if err := syscall.Stat(filepath.Join(l.rt.paths(l.rt.id(w.EnvID)).home, "exec"), &fi); err != nil || fi.Uid != testUsernsBase {
		t.Fatalf("a file the exec'd root wrote is owned by host uid %d (%v), want %d", fi.Uid, err, testUsernsBase)
	}
}

func TestExec_AContainerWithoutAnExecSocketAsksForARestartWhichGivesItOne(t *testing.T) {
	l, w := running(t)
	// What an isolationd before exec sockets left: a container whose init
	// serves no sessions, and no socket at the path.
	if err := os.Remove(l.rt.paths(l.rt.id(w.EnvID)).execSock); err != nil {
		t.Fatal(err)
	}
	_, err := l.rt.Exec(context.Background(), w.EnvID, workload.ExecSpec{Command: []string{"true"}})
	if !errors.Is(err, workload.ErrNeedsRestart) || !strings.Contains(err.Error(), "restart the workload") {
		t.Fatalf("exec into a container without an exec socket: %v, want ErrNeedsRestart", err)
	}
	w.Workload.Env["MODE"] = "restarted"
	if a := l.ensure(w); !a.Restarted {
		t.Fatalf("a changed spec did not restart the container: %+v", a)
	}
	if out, _, st := l.run(w.EnvID, workload.ExecSpec{Command: command("echo $MODE")}); out != "restarted\n" || st.Code != 0 {
		t.Fatalf("exec after the restart: %q %+v", out, st)
	}
}

// fds lists a process's open descriptors.
func fds(t *testing.T, pid int) []string {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func TestExec_TheExecSocketIsTheHostRootsAndNeitherTheWorkloadNorACommandInheritsIt(t *testing.T) {
	l, w := running(t)
	sock := l.rt.paths(l.rt.id(w.EnvID)).execSock
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || st.Mode&0o777 != 0o600 || st.Uid != 0 {
		t.Fatalf("the exec socket %s: mode %o, owner %d; want a socket of mode 0600, root's", sock, st.Mode, st.Uid)
	}
	_, cmdPid := l.workloadCommand(w.EnvID)
	x, _ := l.waiting(w.EnvID, workload.ExecSpec{})
	y, _ := l.waiting(w.EnvID, workload.ExecSpec{TTY: true})
	for name, pid := range map[string]int{"the workload's command": cmdPid, "an exec'd command": x.pid, "an exec'd command with a terminal": y.pid} {
		if got := fds(t, pid); !slices.Equal(got, []string{"0", "1", "2"}) {
			t.Errorf("%s holds descriptors %v, want stdin, stdout and stderr alone", name, got)
		}
	}
}

func TestExec_TheSessionEndsWhenItsConnectionDoesAsWhenIsolationdDies(t *testing.T) {
	l, w := running(t)
	before := l.procs(w.EnvID)
	out := newStream()
	x := l.exec(w.EnvID, workload.ExecSpec{Command: command("sleep 1000 & echo ready; wait"), Stdout: out})
	out.waitFor(t, "ready", 5*time.Second)
	x.conn.Close() // what isolationd's death does to it
	if st, err := x.Wait(); err != nil || st.Signal != "HUP" {
		t.Fatalf("after the connection closed: %+v (%v), want the command hung up", st, err)
	}
	deadline := time.Now().Add(execGrace + 5*time.Second)
	for after := l.procs(w.EnvID); !slices.Equal(after, before); after = l.procs(w.EnvID) {
		if time.Now().After(deadline) {
			t.Fatalf("the cgroup holds %v after the connection closed, %v before the exec", after, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
}
