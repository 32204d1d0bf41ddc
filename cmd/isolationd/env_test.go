package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// logRoot finds every environment's output in a directory of its own,
// named by its id, as a runtime would.
type logRoot string

func (root logRoot) LogDir(envID string) (string, error) {
	return filepath.Join(string(root), envID), nil
}

// envFixture is an in-process isolationd whose environment web (in
// project shop) has output, and the environment the env commands read.
type envFixture struct {
	env apiv1.Environment
	w   *logs.Writer
}

func newEnvFixture(t *testing.T) *envFixture {
	t.Helper()
	root := t.TempDir()
	srv, err := server.Start(t.Context(), server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), WorkloadLogs: logRoot(root)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	t.Setenv(envEndpoint, srv.URL())
	t.Setenv(envToken, srv.AdminToken())
	c, err := client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	// Another project's environment of the same name, not to be picked.
	other, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Environments().Create(t.Context(), apiv1.EnvironmentCreate{ProjectID: other.ID, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	e, err := c.Environments().Create(t.Context(), apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := logs.NewWriter(filepath.Join(root, e.ID), logs.DefaultMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return &envFixture{env: *e, w: w}
}

// runSplit runs the command line, its stdout and stderr apart.
func runSplit(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestEnvLogs_PrintsTheOutputByIDOrProjectSlashName(t *testing.T) {
	f := newEnvFixture(t)
	fmt.Fprintln(f.w.Stream(logs.Stdout), "GET / 200")
	fmt.Fprintln(f.w.Stream(logs.Stderr), "warning: slow")
	fmt.Fprintln(f.w.Stream(logs.Stdout), "GET /health 200")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"env", "logs", f.env.ID}, "GET / 200\nwarning: slow\nGET /health 200\n"},
		{[]string{"env", "logs", "shop/web"}, "GET / 200\nwarning: slow\nGET /health 200\n"},
		{[]string{"env", "logs", "shop/web", "--tail", "1"}, "GET /health 200\n"},
		{[]string{"env", "logs", "--tail=2", "shop/web"}, "warning: slow\nGET /health 200\n"},
		{[]string{"env", "logs", "--since", "1h", "shop/web"}, "GET / 200\nwarning: slow\nGET /health 200\n"},
	} {
		code, out, errs := runSplit(tc.args...)
		if code != 0 || out != tc.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and %q", tc.args, code, out, errs, tc.want)
		}
	}
}

// syncBuffer is a bytes.Buffer written by one goroutine and read by
// another, which learns of each write on written.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{written: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.written <- struct{}{}:
	default: // a wake-up is pending already
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestEnvLogs_FollowPrintsNewLinesUntilInterrupted(t *testing.T) {
	f := newEnvFixture(t)
	fmt.Fprintln(f.w.Stream(logs.Stdout), "started")
	ctx, interrupt := context.WithCancel(t.Context())
	defer interrupt()
	out, errs := newSyncBuffer(), newSyncBuffer()
	done := make(chan int, 1)
	go func() { done <- envContext(ctx, []string{"logs", "shop/web", "-f"}, out, errs) }()
	// Each line is printed as it comes: wait for it before writing the next.
	wait := func(want string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for !strings.HasSuffix(out.String(), want) {
			select {
			case code := <-done:
				t.Fatalf("env logs -f exited with %d (stderr %q) before printing %q", code, errs.String(), want)
			case <-deadline:
				t.Fatalf("stdout %q after 20s; want it to end with %q", out.String(), want)
			case <-out.written:
			}
		}
	}
	wait("started\n")
	fmt.Fprintln(f.w.Stream(logs.Stdout), "request 1")
	wait("started\nrequest 1\n")
	interrupt()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("env logs -f exited with %d after the interrupt (stderr %q); want 0", code, errs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("env logs -f still runs 20s after the interrupt")
	}
}

func TestEnvLogs_ErrorsSayWhatIsWrong(t *testing.T) {
	newEnvFixture(t)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"env", "logs", "env_nope"}, 1, `no environment "env_nope"`},
		{[]string{"env", "logs", "nope/web"}, 1, `no project named "nope"`},
		{[]string{"env", "logs", "shop/nope"}, 1, `no environment named "nope" in project "shop"`},
		{[]string{"env", "logs", "shop/web", "--since", "yesterday"}, 1, "since"},
		{[]string{"env", "logs"}, 2, "usage: isolationd env logs ENV"},
		{[]string{"env", "logs", "a", "b"}, 2, "usage: isolationd env logs ENV"},
		{[]string{"env", "logs", "--tail"}, 2, "flag needs an argument"},
		{[]string{"env"}, 2, "isolationd env logs ENV [-f]"},
		{[]string{"env", "bogus"}, 2, "isolationd env logs ENV [-f]"},
	} {
		code, _, errs := runSplit(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.says) {
			t.Errorf("%q: exit %d, stderr %q; want %d saying %q", tc.args, code, errs, tc.code, tc.says)
		}
	}
	t.Setenv(envToken, "")
	if code, _, errs := runSplit("env", "logs", "shop/web"); code != 2 || !strings.Contains(errs, envToken) {
		t.Errorf("without a token: exit %d, stderr %q; want 2 naming %s", code, errs, envToken)
	}
}

func TestParseInterspersed_FlagsAnywhereUntilDoubleDash(t *testing.T) {
	for _, tc := range []struct {
		args, rest []string
		follow     bool
	}{
		{[]string{"ENV", "-f"}, []string{"ENV"}, true},
		{[]string{"-f", "ENV"}, []string{"ENV"}, true},
		{[]string{"ENV"}, []string{"ENV"}, false},
		{nil, nil, false},
		{[]string{"--", "-f"}, []string{"-f"}, false},
		{[]string{"A", "--", "-f", "B"}, []string{"A", "-f", "B"}, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		follow := fs.Bool("f", false, "")
		rest, err := parseInterspersed(fs, tc.args)
		if err != nil || !slices.Equal(rest, tc.rest) || *follow != tc.follow {
			t.Errorf("%q: rest %q, -f %v, err %v; want %q, %v", tc.args, rest, *follow, err, tc.rest, tc.follow)
		}
	}
}
