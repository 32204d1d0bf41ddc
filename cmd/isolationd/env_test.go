package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	go func() { done <- envContext(ctx, []string{"logs", "shop/web", "-f"}, stdio{out: out, err: errs}) }()
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

func TestEnvList_ShowsTheEnvironmentsFilteredByProjectLabelAndState(t *testing.T) {
	f := newEnvFixture(t)
	c, err := apiClient()
	if err != nil {
		t.Fatal(err)
	}
	labelled, err := c.Environments().Create(t.Context(), apiv1.EnvironmentCreate{ProjectID: f.env.ProjectID, Name: "api", Labels: map[string]string{"team": "payments"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Environments().WaitFor(t.Context(), labelled.ID, apiv1.StateReady); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runSplit("env", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "PROJECT") || !strings.Contains(lines[0], "WORKLOAD") {
		t.Fatalf("env list: exit %d, stdout %q, stderr %q; want a header and 3 environments", code, out, errs)
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		fields := strings.Fields(l)
		rows[fields[0]] = fields
	}
	// ID PROJECT NAME STATE WORKLOAD ADDRESS AGE, the project by its name.
	if got := rows[labelled.ID]; len(got) != 7 || !slices.Equal(got[1:5], []string{"shop", "api", "ready", "-"}) {
		t.Errorf("env list's row of %s: %q; want shop api ready, no workload", labelled.ID, got)
	}
	if got := rows[f.env.ID]; len(got) != 7 || !slices.Equal(got[1:3], []string{"shop", "web"}) {
		t.Errorf("env list's row of %s: %q; want shop web", f.env.ID, got)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--project", "shop"}, []string{f.env.ID, labelled.ID}},
		{[]string{"--project", f.env.ProjectID}, []string{f.env.ID, labelled.ID}},
		{[]string{"--label", "team=payments"}, []string{labelled.ID}},
		{[]string{"--project", "shop", "--state", "ready", "--label", "team=payments"}, []string{labelled.ID}},
		{[]string{"--label", "team=other"}, []string{}},
	} {
		code, out, errs := runSplit(append([]string{"env", "list", "-o", "json"}, tc.args...)...)
		var envs []apiv1.Environment
		if err := json.Unmarshal([]byte(out), &envs); err != nil || code != 0 {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q: %v", tc.args, code, out, errs, err)
		}
		ids := []string{}
		for _, e := range envs {
			ids = append(ids, e.ID)
		}
		slices.Sort(ids)
		slices.Sort(tc.want)
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%q: environments %q; want %q", tc.args, ids, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"env", "list", "--project", "nope"}, 1, `no project named "nope"`},
		{[]string{"env", "list", "--state", "sleeping"}, 1, "state"},
		{[]string{"env", "list", "--label", "team"}, 2, "must be K=V"},
		{[]string{"env", "list", "-o", "yaml"}, 2, "usage: isolationd env list"},
		{[]string{"env", "list", "shop"}, 2, "usage: isolationd env list"},
	} {
		code, _, errs := runSplit(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.says) {
			t.Errorf("%q: exit %d, stderr %q; want %d saying %q", tc.args, code, errs, tc.code, tc.says)
		}
	}
}

func TestEnvExtend_RestartsTheTTLFromNowInPlaceByIDOrProjectSlashName(t *testing.T) {
	f := newEnvFixture(t)
	c, err := apiClient()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref string
		ttl time.Duration
	}{{f.env.ID, 2 * time.Hour}, {"shop/web", 90 * time.Minute}} {
		// The server stores expires_at to the second.
		from := time.Now().Truncate(time.Second)
		code, out, errs := runSplit("env", "extend", tc.ref, tc.ttl.String())
		to := time.Now()
		e, err := c.Environments().Get(t.Context(), f.env.ID)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 || e.TTLSeconds == nil || *e.TTLSeconds != int64(tc.ttl/time.Second) || e.ExpiresAt == nil ||
			e.ExpiresAt.Before(from.Add(tc.ttl)) || e.ExpiresAt.After(to.Add(tc.ttl)) {
			t.Fatalf("extend %s %s: exit %d, stderr %q; environment ttl %v expires %v, want %s from now", tc.ref, tc.ttl, code, errs, e.TTLSeconds, e.ExpiresAt, tc.ttl)
		}
		if want := fmt.Sprintf("%s expires at %s (ttl_seconds %d)\n", f.env.ID, e.ExpiresAt.UTC().Format(time.RFC3339), *e.TTLSeconds); out != want {
			t.Errorf("extend %s: stdout %q, want %q", tc.ref, out, want)
		}
	}
}

func TestEnvExtend_ErrorsSayWhatIsWrongAndChangeNothing(t *testing.T) {
	f := newEnvFixture(t)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"env", "extend", "shop/web"}, 2, "usage: isolationd env extend ENV DURATION"},
		{[]string{"env", "extend", "shop/web", "tomorrow"}, 2, `DURATION "tomorrow" must be whole seconds from 1s to 8760h0m0s`},
		{[]string{"env", "extend", "shop/web", "500ms"}, 2, "whole seconds from 1s"},
		{[]string{"env", "extend", "shop/web", "8761h"}, 2, "(one year)"},
		{[]string{"env", "extend", "shop/nope", "1h"}, 1, `no environment named "nope" in project "shop"`},
	} {
		code, _, errs := runSplit(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.says) {
			t.Errorf("%q: exit %d, stderr %q; want %d saying %q", tc.args, code, errs, tc.code, tc.says)
		}
	}
	c, err := apiClient()
	if err != nil {
		t.Fatal(err)
	}
	if e, err := c.Environments().Get(t.Context(), f.env.ID); err != nil || e.TTLSeconds != nil {
		t.Fatalf("after refused extends: ttl %v (%v), want none", e.TTLSeconds, err)
	}
}
