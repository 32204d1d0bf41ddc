package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc/inittest"
)

// execFixture is an in-process isolationd on the netns driver and the
// runc runtime, whose environment dev/box runs busybox: the environment
// env exec and env shell get into, and ISOLATION_ENDPOINT and
// ISOLATION_TOKEN (admin) set for the CLI.
type execFixture struct {
	srv *server.Server
	c   *client.Client
	box apiv1.Environment
	// idle is an environment of dev without a workload.
	idle apiv1.Environment
}

func newExecFixture(t *testing.T) *execFixture {
	t.Helper()
	needContainers(t)
	dir := t.TempDir()
	// The containers' mapped root reaches its root filesystem through the
	// data directory's parents.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	// Without a user namespace: these are the CLI's tests, and internal/
	// server's exec tests cover runc exec into a user namespace (which
	// needs runc 1.2 or later, make's bin/runc, not Debian's 1.1).
	cfg := server.Config{
		Listen: "127.0.0.1:0", DataDir: dir, Driver: "netns", NetnsPrefix: netnstest.UniquePrefix('x'),
		AddressPool: "198.18.0.0/16", InitBinary: inittest.Binary(t), Userns: "off",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	// Registered first, so run last: after the server is gone.
	t.Cleanup(func() {
		if err := server.Cleanup(context.Background(), cfg); err != nil {
			t.Errorf("cleanup of prefix %s: %v", cfg.NetnsPrefix, err)
		}
	})
	srv, err := server.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	t.Setenv(envEndpoint, srv.URL())
	t.Setenv(envToken, srv.AdminToken())
	f := &execFixture{srv: srv}
	if f.c, err = client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()}); err != nil {
		t.Fatal(err)
	}
	archive, err := os.Open(imagetest.WriteOCITar(t, imagetest.Busybox(t, imagetest.Options{Cmd: []string{"sh"}})))
	if err != nil {
		t.Fatal(err)
	}
	defer archive.Close()
	if _, err := f.c.Images().Import(t.Context(), "busybox:test", archive); err != nil {
		t.Fatal(err)
	}
	p, err := f.c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	f.box = f.create(t, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "box", Workload: &apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"sleep", "3600"}}})
	if f.box.Workload == nil || f.box.Workload.State != apiv1.WorkloadRunning {
		t.Fatalf("dev/box's workload is %+v; want it running", f.box.Workload)
	}
	f.idle = f.create(t, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "idle"})
	return f
}

// create creates an environment and waits until it is ready.
func (f *execFixture) create(t *testing.T, in apiv1.EnvironmentCreate) apiv1.Environment {
	t.Helper()
	e, err := f.c.Environments().Create(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if e, err = f.c.Environments().WaitFor(ctx, e.ID, apiv1.StateReady); err != nil {
		t.Fatal(err)
	}
	return *e
}

// runIn runs the command line with stdin, its stdout and stderr apart.
func runIn(stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = envContext(context.Background(), args, stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

func TestEnvExec_AgainstARealServer(t *testing.T) {
	f := newExecFixture(t)

	t.Run("ListShowsTheEnvironmentAndItsRunningWorkload", func(t *testing.T) {
		code, out, errs := runSplit("env", "list", "--project", "dev")
		var row []string
		for _, l := range strings.Split(out, "\n") {
			if fields := strings.Fields(l); len(fields) == 7 && fields[0] == f.box.ID {
				row = fields
			}
		}
		if code != 0 || row == nil || row[1] != "dev" || row[2] != "box" || row[3] != apiv1.StateReady || row[4] != apiv1.WorkloadRunning || row[5] != f.box.Enforcement.Address {
			t.Errorf("env list: exit %d, stdout %q, stderr %q; want dev box ready running at %s", code, out, errs, f.box.Enforcement.Address)
		}
	})

	t.Run("TheExitCodeIsTheCommands", func(t *testing.T) {
		for _, ref := range []string{"dev/box", f.box.ID} {
			code, out, errs := runSplit("env", "exec", ref, "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
			if code != 3 || out != "hi\n" || errs != "oops\n" {
				t.Errorf("exec %s: exit %d, stdout %q, stderr %q; want 3, hi and oops", ref, code, out, errs)
			}
		}
		if code, out, errs := runSplit("env", "exec", "dev/box", "--", "true"); code != 0 || out != "" || errs != "" {
			t.Errorf("exec true: exit %d, stdout %q, stderr %q; want 0 and nothing", code, out, errs)
		}
	})

	t.Run("WithoutIStdinIsEmpty", func(t *testing.T) {
		if code, out, errs := runIn("ignored\n", "exec", "dev/box", "--", "cat"); code != 0 || out != "" {
			t.Errorf("exec cat without -i: exit %d, stdout %q, stderr %q; want 0 and nothing read", code, out, errs)
		}
	})

	t.Run("IStreamsStdinToTheCommand", func(t *testing.T) {
		in := "one\ntwo\n" + strings.Repeat("0123456789abcdef", 8<<10) + "\n"
		if code, out, errs := runIn(in, "exec", "-i", "dev/box", "--", "cat"); code != 0 || out != in {
			t.Errorf("exec -i cat: exit %d, %d bytes of stdout for %d in, stderr %q; want 0 and stdin back", code, len(out), len(in), errs)
		}
		code, out, errs := runIn("a\nb\n", "exec", "-i", "dev/box", "--", "sh", "-c", "wc -l; echo done >&2; exit 5")
		if code != 5 || strings.TrimSpace(out) != "2" || errs != "done\n" {
			t.Errorf("exec -i wc -l: exit %d, stdout %q, stderr %q; want 5, 2 lines and done", code, out, errs)
		}
	})

	t.Run("FlagsReachTheCommand", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--uid", "1000", "--gid", "100", "--", "sh", "-c", "id -u; id -g"}, "1000\n100\n"},
			{[]string{"-w", "/tmp", "--", "pwd"}, "/tmp\n"},
			{[]string{"-e", "GREETING=hello", "-e", "NAME=dev", "--", "sh", "-c", "echo $GREETING $NAME"}, "hello dev\n"},
		} {
			args := append([]string{"env", "exec", "dev/box"}, tc.args...)
			if code, out, errs := runSplit(args...); code != 0 || out != tc.want {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and %q", tc.args, code, out, errs, tc.want)
			}
		}
	})

	t.Run("ATimeoutKillsTheCommand", func(t *testing.T) {
		code, _, errs := runSplit("env", "exec", "--timeout", "1s", "dev/box", "--", "sleep", "60")
		if code != 128+9 || !strings.Contains(errs, "its --timeout passed") {
			t.Errorf("exec --timeout 1s sleep 60: exit %d, stderr %q; want 137 saying the timeout passed", code, errs)
		}
	})

	t.Run("ErrorsExit125WithTheProblem", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			says *regexp.Regexp
		}{
			{[]string{"dev/box", "--", "no-such-program"}, regexp.MustCompile(`400 .*command`)},
			{[]string{"-i", "dev/box", "--", "no-such-program"}, regexp.MustCompile(`400 .*command`)},
			{[]string{"dev/idle", "--", "true"}, regexp.MustCompile(`409 .*environment ` + f.idle.ID + ` has no workload`)},
			{[]string{"dev/nope", "--", "true"}, regexp.MustCompile(`no environment named "nope" in project "dev"`)},
			{[]string{"nope/box", "--", "true"}, regexp.MustCompile(`no project named "nope"`)},
			{[]string{"env_nope", "--", "true"}, regexp.MustCompile(`no environment "env_nope"`)},
		} {
			code, out, errs := runSplit(append([]string{"env", "exec"}, tc.args...)...)
			if code != execFailed || out != "" || !tc.says.MatchString(errs) {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want 125 matching %s", tc.args, code, out, errs, tc.says)
			}
		}
	})

	t.Run("ASessionTokenExecsIntoItsEnvironmentByID", func(t *testing.T) {
		// It may not read its environment (GET is 403): the id is used as
		// it is, and the exec is authorized on its own.
		tok, err := f.c.SessionTokens(f.box.ID).Create(t.Context(), apiv1.SessionTokenCreate{})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(envToken, tok.Secret)
		if code, out, errs := runIn("in\n", "exec", "-i", f.box.ID, "--", "sh", "-c", "cat; exit 7"); code != 7 || out != "in\n" {
			t.Errorf("exec -i by id with a session token: exit %d, stdout %q, stderr %q; want 7 and stdin back", code, out, errs)
		}
		code, _, errs := runSplit("env", "exec", "dev/box", "--", "true")
		if code != execFailed || !strings.Contains(errs, "403") || !strings.Contains(errs, "names it by its id") {
			t.Errorf("exec dev/box with a session token: exit %d, stderr %q; want 125, the 403 and the advice to name it by its id", code, errs)
		}
		code, _, errs = runSplit("env", "exec", f.idle.ID, "--", "true")
		if code != execFailed || !strings.Contains(errs, `no environment "`+f.idle.ID+`" (or not one your token can see)`) {
			t.Errorf("exec into another environment with a session token: exit %d, stderr %q; want 125 saying it sees no such environment", code, errs)
		}
	})

	t.Run("ShellThroughAPTY", func(t *testing.T) {
		testShellThroughPTY(t, f)
	})
}

func TestEnvExec_UsageErrorsExit2(t *testing.T) {
	newEnvFixture(t)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"env", "exec"}, "usage: isolationd env exec [-i]"},
		{[]string{"env", "exec", "shop/web"}, "usage: isolationd env exec [-i]"},
		{[]string{"env", "exec", "--uid", "-1", "shop/web", "--", "id"}, "must be a number"},
		{[]string{"env", "exec", "--gid", "10", "shop/web", "--", "id"}, "gid: needs uid"},
		{[]string{"env", "exec", "--timeout", "forever", "shop/web", "--", "id"}, "timeout: must be a duration"},
		{[]string{"env", "exec", "-w", "tmp", "shop/web", "--", "pwd"}, "working_dir:"},
		{[]string{"env", "exec", "-e", "NOVALUE", "shop/web", "--", "env"}, "must be K=V"},
		{[]string{"env", "exec", "shop/web", "--", ""}, "command: must name the program"},
		{[]string{"env", "shell"}, "usage: isolationd env shell"},
		// The test's stdin is no terminal.
		{[]string{"env", "shell", "shop/web"}, "stdin is not a terminal; use isolationd env exec -i"},
	} {
		code, out, errs := runSplit(tc.args...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.says) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 saying %q", tc.args, code, out, errs, tc.says)
		}
	}
}

// terminal is the parent's side of a pty, whose output a goroutine
// collects as it comes, and the process on the other side.
type terminal struct {
	ptmx    *os.File
	mu      sync.Mutex
	out     bytes.Buffer
	written chan struct{}
	exited  chan struct{} // closed when the process has exited, with err
	err     error
}

func (term *terminal) collect() {
	buf := make([]byte, 4096)
	for {
		n, err := term.ptmx.Read(buf)
		term.mu.Lock()
		term.out.Write(buf[:n])
		term.mu.Unlock()
		select {
		case term.written <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// await waits until the output since mark matches re, and returns the
// output's end then (the next mark) and the match.
func (term *terminal) await(t *testing.T, mark int, re *regexp.Regexp) (int, []string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		out := term.String()
		if m := re.FindStringSubmatch(out[mark:]); m != nil {
			return len(out), m
		}
		select {
		case <-term.written:
		case <-term.exited:
			if m := re.FindStringSubmatch(term.String()[mark:]); m != nil {
				return len(term.String()), m
			}
			t.Fatalf("env shell exited (%v) before the terminal showed %s; it showed %q", term.err, re, term.String()[mark:])
		case <-deadline:
			t.Fatalf("the terminal showed %q in 30s, not %s", out[mark:], re)
		}
	}
}

func (term *terminal) String() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

func (term *terminal) typeIn(t *testing.T, s string) {
	t.Helper()
	if _, err := term.ptmx.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// testShellThroughPTY runs env shell in isolationd's binary under a pty,
// as a person's terminal: the remote shell sees the local size, then the
// new one after a resize, and its exit code is the CLI's; the terminal is
// as it was before when the CLI has exited.
func testShellThroughPTY(t *testing.T, f *execFixture) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 80}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "env", "shell", "dev/box")
	cmd.Env = append(os.Environ(), "TERM=xterm-test")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term := &terminal{ptmx: ptmx, written: make(chan struct{}, 1), exited: make(chan struct{})}
	go func() {
		term.err = cmd.Wait()
		close(term.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it has exited already when the test passes
		<-term.exited
	})
	go term.collect()

	// The remote shell echoes what it is typed (its terminal is in
	// canonical mode with echo; ours is raw), and answers.
	term.typeIn(t, "echo $TERM; stty size\r")
	mark, _ := term.await(t, 0, regexp.MustCompile(`xterm-test\r\n24 80\r\n`))
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 132}); err != nil {
		t.Fatal(err)
	}
	// The resize reaches the server beside the keys typed after it, not
	// necessarily before them: ask until the shell sees it.
	for {
		term.typeIn(t, "stty size\r")
		var m []string
		mark, m = term.await(t, mark, regexp.MustCompile(`\r\n(\d+ \d+)\r\n`))
		if m[1] == "40 132" {
			break
		}
		if m[1] != "24 80" {
			t.Fatalf("stty size %q after a resize from 24 80 to 40 132", m[1])
		}
	}
	term.typeIn(t, "exit 4\r")
	select {
	case <-term.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("env shell still runs 30s after exit 4")
	}
	var exitErr *exec.ExitError
	if !errors.As(term.err, &exitErr) || exitErr.ExitCode() != 4 {
		t.Fatalf("env shell exited with %v; want exit code 4 (output %q)", term.err, term.String())
	}
	after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Errorf("the terminal's modes after env shell exited: %+v; want them restored to %+v", *after, *before)
	}
}

// A developer token may not list projects: it names its own project's
// environments as PROJECT/NAME through whoami, and sees no other. The
// fixture's environment has no workload, so the exec itself is refused:
// that refusal (409) says the name was resolved and the exec asked for.
func TestEnvExec_ADeveloperTokenNamesItsProjectsEnvironments(t *testing.T) {
	f := newEnvFixture(t)
	c, err := apiClient()
	if err != nil {
		t.Fatal(err)
	}
	token := func(role string) string {
		tok, err := c.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: role, Role: role, ProjectID: f.env.ProjectID})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Secret
	}
	developer, viewer := token(apiv1.RoleDeveloper), token(apiv1.RoleViewer)
	notRun := regexp.MustCompile(`409 .*environment ` + f.env.ID + ` has no workload`)
	for _, tc := range []struct {
		token string
		args  []string
		code  int
		says  *regexp.Regexp
	}{
		{developer, []string{"exec", "shop/web", "--", "true"}, execFailed, notRun},
		{developer, []string{"exec", "-i", f.env.ID, "--", "true"}, execFailed, notRun},
		{developer, []string{"exec", "other/web", "--", "true"}, execFailed, regexp.MustCompile(`no project named "other" \(or not one your token can see\)`)},
		{developer, []string{"logs", "shop/web"}, 0, regexp.MustCompile(`^$`)},
		// A viewer reads the environment and may not exec into it.
		{viewer, []string{"exec", "shop/web", "--", "true"}, execFailed, regexp.MustCompile(`403 .*developer`)},
	} {
		t.Setenv(envToken, tc.token)
		code, _, errs := runSplit(append([]string{"env"}, tc.args...)...)
		if code != tc.code || !tc.says.MatchString(errs) {
			t.Errorf("%q: exit %d, stderr %q; want %d matching %s", tc.args, code, errs, tc.code, tc.says)
		}
	}
	t.Setenv(envToken, developer)
	code, out, errs := runSplit("env", "list")
	if fields := strings.Fields(out); code != 0 || len(fields) != 14 || fields[7] != f.env.ID || fields[8] != "shop" {
		t.Errorf("env list as the developer: exit %d, stdout %q, stderr %q; want its project's one environment, of project shop", code, out, errs)
	}
	if code, out, errs := runSplit("env", "list", "--project", "shop", "-o", "json"); code != 0 || !strings.Contains(out, f.env.ID) {
		t.Errorf("env list --project shop as the developer: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
