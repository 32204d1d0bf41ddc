package initproc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc/inittest"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 20 * time.Second

// theInit is the init, run as an ordinary child process of the test:
// it makes itself a child subreaper, as it does outside a container.
type theInit struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	stderr bytes.Buffer
	exited chan struct{}
	code   int
}

// startInit runs the init with flags (the directory and quick restarts
// added) and the command after "--".
func startInit(t *testing.T, flags []string, command ...string) *theInit {
	t.Helper()
	return startInitWith(t, nil, flags, command...)
}

// startInitWith is startInit with files passed from descriptor 3 on.
func startInitWith(t *testing.T, files []*os.File, flags []string, command ...string) *theInit {
	t.Helper()
	in := &theInit{t: t, dir: filepath.Join(t.TempDir(), "run"), exited: make(chan struct{})}
	args := append([]string{"--dir", in.dir, "--backoff", "10ms", "--max-backoff", "40ms"}, flags...)
	args = append(append(args, "--"), command...)
	in.cmd = exec.Command(inittest.Binary(t), args...)
	in.cmd.ExtraFiles = files
	in.cmd.Stderr = &in.stderr
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(in.exited)
		err := in.cmd.Wait()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			in.code = exit.ExitCode()
		}
	}()
	t.Cleanup(func() {
		// The command runs in its own process group, which outlives a
		// killed init: kill both.
		if s, err := in.readStatus(); err == nil && s.Pid > 0 {
			_ = syscall.Kill(-s.Pid, syscall.SIGKILL)
		}
		_ = in.cmd.Process.Kill()
		<-in.exited
		if t.Failed() {
			t.Logf("the init's stderr:\n%s", in.stderr.String())
		}
	})
	return in
}

func (in *theInit) readStatus() (initspec.Status, error) {
	var s initspec.Status
	b, err := os.ReadFile(filepath.Join(in.dir, initspec.StatusFile))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// waitStatus waits for a status that satisfies ok, reading the file at
// every change of the directory, and returns it.
func (in *theInit) waitStatus(what string, ok func(initspec.Status) bool) initspec.Status {
	in.t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		in.t.Fatal(err)
	}
	defer w.Close()
	deadline := time.After(waitTimeout)
	// The directory is the init's to make: until it exists, wait for it
	// from its parent.
	for w.Add(in.dir) != nil {
		if err := w.Add(filepath.Dir(in.dir)); err != nil {
			in.t.Fatal(err)
		}
		if w.Add(in.dir) == nil {
			break
		}
		select {
		case <-w.Events:
		case <-deadline:
			in.t.Fatalf("no status directory after %s", waitTimeout)
		}
	}
	var last initspec.Status
	for {
		if s, err := in.readStatus(); err == nil {
			if last = s; ok(s) {
				return s
			}
		}
		select {
		case <-w.Events:
		case err := <-w.Errors:
			in.t.Fatal(err)
		case <-in.exited:
			if s, err := in.readStatus(); err == nil && ok(s) {
				return s
			}
			in.t.Fatalf("the init exited with %d before its status was %s; last %+v", in.code, what, last)
		case <-deadline:
			in.t.Fatalf("the status was not %s after %s; last %+v", what, waitTimeout, last)
		}
	}
}

// waitLine follows the init's log until a line satisfies ok.
func (in *theInit) waitLine(what string, ok func(apiv1.LogLine) bool) apiv1.LogLine {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var found *apiv1.LogLine
	errFound := errors.New("found")
	err := logs.Read(ctx, filepath.Join(in.dir, initspec.LogDir), logs.Query{Tail: logs.All, Follow: true}, func(l apiv1.LogLine) error {
		if ok(l) {
			found = &l
			return errFound
		}
		return nil
	})
	if found == nil {
		in.t.Fatalf("no %s in the log after %s (%v)", what, waitTimeout, err)
	}
	return *found
}

func (in *theInit) waitOutput(stream, line string) {
	in.t.Helper()
	in.waitLine(fmt.Sprintf("%s line %q", stream, line), func(l apiv1.LogLine) bool { return l.Stream == stream && l.Line == line })
}

func (in *theInit) lines() []apiv1.LogLine {
	in.t.Helper()
	var got []apiv1.LogLine
	if err := logs.Read(context.Background(), filepath.Join(in.dir, initspec.LogDir), logs.Query{Tail: logs.All}, func(l apiv1.LogLine) error {
		got = append(got, l)
		return nil
	}); err != nil {
		in.t.Fatal(err)
	}
	return got
}

func (in *theInit) signal(sig syscall.Signal) {
	in.t.Helper()
	if err := in.cmd.Process.Signal(sig); err != nil {
		in.t.Fatal(err)
	}
}

// wait returns the init's exit code once it has exited.
func (in *theInit) wait() int {
	in.t.Helper()
	select {
	case <-in.exited:
		return in.code
	case <-time.After(waitTimeout):
		in.t.Fatalf("the init did not exit within %s", waitTimeout)
		return 0
	}
}

// running reports that the init has not exited.
func (in *theInit) running() bool {
	select {
	case <-in.exited:
		return false
	default:
		return true
	}
}

func exitedWith(code int) func(initspec.Status) bool {
	return func(s initspec.Status) bool {
		return s.State == apiv1.WorkloadExited && s.ExitCode != nil && *s.ExitCode == code
	}
}

func restartedAtLeast(n int) func(initspec.Status) bool {
	return func(s initspec.Status) bool { return s.RestartCount >= n }
}

func TestInit_OnFailureLeavesASuccessExited(t *testing.T) {
	in := startInit(t, []string{"--restart", "on-failure"}, "sh", "-c", "echo done")
	s := in.waitStatus("exited with 0", exitedWith(0))
	if s.RestartCount != 0 || s.Pid != 0 || s.StartedAt == nil || s.ExitedAt == nil || s.Error != "" {
		t.Errorf("status %+v; want exited once, with its times", s)
	}
	if !in.running() {
		t.Fatal("the init exited with its command; it stays up for exec")
	}
	in.signal(syscall.SIGTERM)
	if code := in.wait(); code != 0 {
		t.Errorf("the init exited with %d; want the command's 0", code)
	}
}

func TestInit_OnFailureRestartsAFailure(t *testing.T) {
	in := startInit(t, []string{"--restart", "on-failure"}, "sh", "-c", "echo run; exit 3")
	s := in.waitStatus("restarted 3 times", restartedAtLeast(3))
	if s.ExitCode == nil || *s.ExitCode != 3 {
		t.Errorf("status %+v; want the last exit code, 3", s)
	}
	in.waitLine("a fourth run's output", func() func(apiv1.LogLine) bool {
		n := 0
		return func(l apiv1.LogLine) bool { n++; return l.Line == "run" && n >= 4 }
	}())
}

func TestInit_AlwaysRestartsASuccess(t *testing.T) {
	in := startInit(t, []string{"--restart", "always"}, "true")
	in.waitStatus("restarted 3 times", restartedAtLeast(3))
}

func TestInit_NeverRestartsAFailure(t *testing.T) {
	in := startInit(t, []string{"--restart", "never"}, "sh", "-c", "exit 5")
	s := in.waitStatus("exited with 5", exitedWith(5))
	if s.RestartCount != 0 {
		t.Errorf("restart count %d; want 0", s.RestartCount)
	}
	in.signal(syscall.SIGTERM)
	if code := in.wait(); code != 5 {
		t.Errorf("the init exited with %d; want the command's last, 5", code)
	}
}

func TestInit_QuickExitsCrashLoopWithACappedBackoff(t *testing.T) {
	in := startInit(t, []string{"--restart", "always", "--backoff", "20ms", "--max-backoff", "200ms"}, "false")
	// After 6 quick exits, uncapped, the delay would be 20ms * 2^5 = 640ms.
	s := in.waitStatus("crash-looping after 6 restarts", func(s initspec.Status) bool {
		return s.State == apiv1.WorkloadCrashLooping && s.RestartCount >= 6
	})
	if s.NextRestartAt == nil || s.ExitedAt == nil {
		t.Fatalf("status %+v; want when it exited and when it restarts", s)
	}
	if d := s.NextRestartAt.Sub(*s.ExitedAt); d < 200*time.Millisecond || d >= 640*time.Millisecond {
		t.Errorf("it restarts %s after its exit; want the cap, 200ms", d)
	}
	if s.ExitCode == nil || *s.ExitCode != 1 || s.Pid != 0 {
		t.Errorf("status %+v; want the last exit code, 1, and no pid", s)
	}
}

func TestInit_RunsLongerThanHealthyNeverCrashLoop(t *testing.T) {
	in := startInit(t, []string{"--restart", "always", "--healthy-after", "200ms"}, "sh", "-c", "sleep 0.3; exit 1")
	in.waitStatus("restarted 4 times, never crash-looping", func(s initspec.Status) bool {
		if s.State == apiv1.WorkloadCrashLooping {
			t.Fatalf("status %+v; runs that last past --healthy-after do not crash-loop", s)
		}
		return s.RestartCount >= 4
	})
}

func TestInit_CommandThatCannotStartExitsWithoutRestart(t *testing.T) {
	notExecutable := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		command string
		code    int
	}{
		{"not found", "/no/such/program", initproc.ExitNotFound},
		{"not found in PATH", "no-such-program-anywhere", initproc.ExitNotFound},
		{"not executable", notExecutable, initproc.ExitCannotExecute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := startInit(t, []string{"--restart", "always"}, tc.command)
			s := in.waitStatus(fmt.Sprintf("exited with %d", tc.code), exitedWith(tc.code))
			if s.Error == "" || s.RestartCount != 0 || s.StartedAt != nil {
				t.Errorf("status %+v; want why it could not start, and no restart", s)
			}
			if lines := in.lines(); len(lines) != 1 || lines[0].Stream != logs.Stderr || !strings.Contains(lines[0].Line, s.Error) {
				t.Errorf("log %+v; want the error on stderr", lines)
			}
			in.signal(syscall.SIGTERM)
			if code := in.wait(); code != tc.code {
				t.Errorf("the init exited with %d; want %d", code, tc.code)
			}
		})
	}
}

func TestInit_ForwardsSignalsAndExitsWithTheCommandsCode(t *testing.T) {
	script := `trap 'echo got USR1' USR1
trap 'echo got TERM; exit 7' TERM
echo ready
while :; do sleep 1 & wait $!; done`
	in := startInit(t, []string{"--restart", "always"}, "sh", "-c", script)
	in.waitOutput(logs.Stdout, "ready")
	s := in.waitStatus("running", func(s initspec.Status) bool { return s.State == apiv1.WorkloadRunning })
	if s.Pid <= 0 || s.StartedAt == nil {
		t.Fatalf("status %+v; want the command's pid and start", s)
	}
	in.signal(syscall.SIGUSR1)
	in.waitOutput(logs.Stdout, "got USR1")
	if s, _ := in.readStatus(); s.RestartCount != 0 {
		t.Errorf("status %+v; SIGUSR1 is forwarded, not a restart", s)
	}
	in.signal(syscall.SIGTERM)
	if code := in.wait(); code != 7 {
		t.Errorf("the init exited with %d; want the command's 7", code)
	}
	in.waitOutput(logs.Stdout, "got TERM")
	if s, _ := in.readStatus(); s.State != apiv1.WorkloadExited || s.RestartCount != 0 {
		t.Errorf("status %+v; want exited, not restarted after SIGTERM", s)
	}
}

func TestInit_CommandKilledBySignalExitsWith128PlusIt(t *testing.T) {
	in := startInit(t, []string{"--restart", "on-failure"}, "sleep", "100")
	in.waitStatus("running", func(s initspec.Status) bool { return s.State == apiv1.WorkloadRunning })
	in.signal(syscall.SIGINT)
	if code := in.wait(); code != 128+int(syscall.SIGINT) {
		t.Errorf("the init exited with %d; want 128+SIGINT", code)
	}
	s, err := in.readStatus()
	if err != nil {
		t.Fatal(err)
	}
	if s.State != apiv1.WorkloadExited || s.Signal != "INT" || s.ExitCode == nil || *s.ExitCode != 130 {
		t.Errorf("status %+v; want exited by INT with 130", s)
	}
}

func TestInit_WithoutACommandRunsAloneUntilTerminated(t *testing.T) {
	in := startInit(t, nil)
	s := in.waitStatus("running", func(s initspec.Status) bool { return s.State == apiv1.WorkloadRunning })
	if s.Pid != 0 {
		t.Errorf("status %+v; want pid 0", s)
	}
	in.signal(syscall.SIGHUP) // not a stopping signal
	in.signal(syscall.SIGTERM)
	if code := in.wait(); code != 0 {
		t.Errorf("the init exited with %d; want 0", code)
	}
}

func TestInit_ReapsOrphans(t *testing.T) {
	// The command starts a background process and exits: the process is
	// orphaned to the init, which must reap it when it exits.
	orphan := `echo "orphan $$"; trap 'echo orphan done; exit 0' USR1; while :; do sleep 1 & wait $!; done`
	in := startInit(t, []string{"--restart", "never"}, "sh", "-c", `sh -c "$0" & exit 0`, orphan)
	l := in.waitLine("the orphan's pid", func(l apiv1.LogLine) bool { return strings.HasPrefix(l.Line, "orphan ") })
	pid, err := strconv.Atoi(strings.TrimPrefix(l.Line, "orphan "))
	if err != nil {
		t.Fatalf("%q: %v", l.Line, err)
	}
	in.waitStatus("exited", exitedWith(0))
	if ppid := parentOf(t, pid); ppid != in.cmd.Process.Pid {
		t.Errorf("the orphan's parent is %d; want the init, %d", ppid, in.cmd.Process.Pid)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	in.waitOutput(logs.Stdout, "orphan done")
	// Once it has written its last line it exits; the init reaps it, so
	// its /proc entry goes instead of staying a zombie.
	deadline := time.Now().Add(waitTimeout)
	for state := procState(t, pid); state != ""; state = procState(t, pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the orphan %d is still in state %s after %s", pid, state, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procStat returns the fields of /proc/pid/stat after the command's name,
// nil when the process is gone.
func procStat(t *testing.T, pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.Fields(rest)
}

func procState(t *testing.T, pid int) string {
	if f := procStat(t, pid); len(f) > 0 {
		return f[0]
	}
	return ""
}

func parentOf(t *testing.T, pid int) int {
	f := procStat(t, pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func TestInit_CapturesBothStreams(t *testing.T) {
	in := startInit(t, []string{"--restart", "never"}, "sh", "-c", "echo to out; echo to err >&2; printf 'no newline'")
	in.waitStatus("exited", exitedWith(0))
	var got []string
	for _, l := range in.lines() {
		got = append(got, l.Stream+": "+l.Line)
	}
	want := map[string]bool{"stdout: to out": true, "stderr: to err": true, "stdout: no newline": true}
	if len(got) != len(want) {
		t.Fatalf("log %q; want %d lines", got, len(want))
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("log %q; want the lines of %v", got, want)
		}
	}
}

// requireRoot skips a test that needs root, saying why.
func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running the command as another user needs root")
	}
}

func TestInit_RunsTheCommandAsTheGivenUser(t *testing.T) {
	requireRoot(t)
	in := startInit(t, []string{"--restart", "never", "--uid", "65534", "--gid", "65533", "--groups", "65532,65531"}, "sh", "-c", "id -u; id -g; id -G")
	in.waitStatus("exited", exitedWith(0))
	var got []string
	for _, l := range in.lines() {
		groups := strings.Fields(l.Line)
		slices.Sort(groups)
		got = append(got, strings.Join(groups, " "))
	}
	if want := []string{"65534", "65533", "65531 65532 65533"}; !slices.Equal(got, want) {
		t.Errorf("the command says %q; want %q", got, want)
	}
}

func TestInit_TheCommandGetsANormalOOMScore(t *testing.T) {
	requireRoot(t)
	in := startInit(t, []string{"--restart", "always"}, "sleep", "100")
	s := in.waitStatus("running", func(s initspec.Status) bool { return s.State == apiv1.WorkloadRunning })
	// Another score than the default for the init, which its children
	// inherit (runc may give it one that protects it; lowering it below
	// 0 would take CAP_SYS_RESOURCE, which a sandbox may not have).
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", in.cmd.Process.Pid), []byte("500"), 0); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(s.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s = in.waitStatus("running again", func(s initspec.Status) bool {
		return s.State == apiv1.WorkloadRunning && s.RestartCount == 1
	})
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", s.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "0" {
		t.Errorf("the command's oom_score_adj is %s; want 0 while the init's is 500", got)
	}
}
