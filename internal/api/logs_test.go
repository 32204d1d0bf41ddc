package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

func init() {
	// NDJSON answers are validated line by line against LogLine: the
	// document describes them as the list of their lines.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		lines := []any{}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var v any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				return nil, err
			}
			lines = append(lines, v)
		}
		return lines, sc.Err()
	})
}

// logRoot is the API's WorkloadLogs for tests: every environment's
// output is in a directory of root named by its id (no directory: no
// output yet).
type logRoot string

func (root logRoot) LogDir(envID string) (string, error) {
	return filepath.Join(string(root), envID), nil
}

// noWorkload answers as a runtime that runs nothing for any environment.
type noWorkload struct{}

func (noWorkload) LogDir(string) (string, error) { return "", workload.ErrUnknown }

func withLogs(root string) func(*server.Config) {
	return func(c *server.Config) { c.WorkloadLogs = logRoot(root) }
}

// logsFixture is a server whose environment env has output in its log
// directory, written as the init writes it.
type logsFixture struct {
	*harness
	env apiv1.Environment
	w   *logs.Writer
}

func newLogsFixture(t *testing.T) *logsFixture {
	root := t.TempDir()
	h := newHarness(t, withLogs(root))
	env := h.environment(h.project("logs").ID, "app", nil)
	w, err := logs.NewWriter(filepath.Join(root, env.ID), logs.DefaultMaxBytes)
	must(t, err)
	t.Cleanup(func() { w.Close() })
	return &logsFixture{harness: h, env: env, w: w}
}

func (f *logsFixture) path(query string) string {
	return "/v1/environments/" + f.env.ID + "/logs" + query
}

func TestEnvironmentLogs_PlainTextByDefault(t *testing.T) {
	f := newLogsFixture(t)
	fmt.Fprintln(f.w.Stream(logs.Stdout), "listening on :8080")
	fmt.Fprintln(f.w.Stream(logs.Stderr), `warning: "x" < 1`)
	r := f.do("GET", f.path(""), nil)
	if r.status != 200 || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("status %d, Content-Type %q; want 200 text/plain", r.status, r.header.Get("Content-Type"))
	}
	if want := "listening on :8080\nwarning: \"x\" < 1\n"; string(r.body) != want {
		t.Errorf("body %q; want %q", r.body, want)
	}
}

func TestEnvironmentLogs_NDJSONWhenAskedByAcceptOrFormat(t *testing.T) {
	f := newLogsFixture(t)
	fmt.Fprintln(f.w.Stream(logs.Stdout), "out")
	fmt.Fprintln(f.w.Stream(logs.Stderr), "err")
	for name, r := range map[string]resp{
		"Accept": f.do("GET", f.path(""), nil, "Accept", "text/html, application/x-ndjson;q=0.9"),
		"format": f.do("GET", f.path("?format=ndjson"), nil),
	} {
		if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%s: status %d, Content-Type %q; want 200 NDJSON", name, r.status, r.header.Get("Content-Type"))
		}
		var got []string
		for line := range strings.Lines(string(r.body)) {
			var l apiv1.LogLine
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("%s: line %q: %v", name, line, err)
			}
			if l.Time.IsZero() || l.Time.Location() != time.UTC {
				t.Errorf("%s: line %q has no UTC time", name, line)
			}
			got = append(got, l.Stream+":"+l.Line)
		}
		if want := []string{"stdout:out", "stderr:err"}; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: lines %q; want %q", name, got, want)
		}
	}
	if r := f.do("GET", f.path("?format=text"), nil, "Accept", "application/x-ndjson"); string(r.body) != "out\nerr\n" {
		t.Errorf("format=text with Accept NDJSON: %q; want the text (format wins)", r.body)
	}
}

func TestEnvironmentLogs_TailAndSince(t *testing.T) {
	f := newLogsFixture(t)
	s := f.w.Stream(logs.Stdout)
	fmt.Fprintln(s, "one")
	fmt.Fprintln(s, "two")
	between := time.Now().UTC()
	fmt.Fprintln(s, "three")
	for _, tc := range []struct{ query, want string }{
		{"?tail=2", "two\nthree\n"},
		{"?tail=0", ""},
		{"?tail=10000", "one\ntwo\nthree\n"},
		{"?since=" + url.QueryEscape(between.Format(time.RFC3339Nano)), "three\n"},
		{"?since=1h", "one\ntwo\nthree\n"},
		{"?since=1h&tail=1", "three\n"},
		{"?since=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), ""},
		{"?follow=false", "one\ntwo\nthree\n"},
	} {
		if r := f.do("GET", f.path(tc.query), nil); r.status != 200 || string(r.body) != tc.want {
			t.Errorf("%s: %d %q; want %q", tc.query, r.status, r.body, tc.want)
		}
	}
}

func TestEnvironmentLogs_BadParametersAreProblemsNamingThem(t *testing.T) {
	f := newLogsFixture(t)
	for _, tc := range []struct{ query, field string }{
		{"?tail=-1", "tail"},
		{"?tail=10001", "tail"},
		{"?tail=all", "tail"},
		{"?since=yesterday", "since"},
		{"?since=-5m", "since"},
		{"?since=2026-01-02", "since"},
		{"?follow=maybe", "follow"},
		{"?format=xml", "format"},
		{"?tail=1&tail=2", "tail"},
		{"?lines=5", "lines"},
	} {
		f.do("GET", f.path(tc.query), nil).problem(t, 400, "validation", tc.field)
	}
}

func TestEnvironmentLogs_ScopedLikeEveryRead(t *testing.T) {
	f := newLogsFixture(t)
	fmt.Fprintln(f.w.Stream(logs.Stdout), "secret output")
	other := f.project("other")
	outsider := f.apiToken("outsider", apiv1.RoleViewer, other.ID)
	r := f.do("GET", f.path(""), nil, bearer(outsider.Secret)...)
	r.problem(t, 404, "not-found", "")
	if bytes.Contains(r.body, []byte("secret output")) {
		t.Errorf("a token of another project read the output: %s", r.body)
	}
	viewer := f.apiToken("viewer", apiv1.RoleViewer, f.env.ProjectID)
	if r := f.do("GET", f.path(""), nil, bearer(viewer.Secret)...); r.status != 200 || string(r.body) != "secret output\n" {
		t.Errorf("the project's viewer: %d %q; want the output", r.status, r.body)
	}
}

func TestEnvironmentLogs_WithoutWorkloadOutputIs404(t *testing.T) {
	for name, mod := range map[string]func(*server.Config){
		"a server that runs no workloads": func(*server.Config) {},
		"an environment without workload": func(c *server.Config) { c.WorkloadLogs = noWorkload{} },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, mod)
			env := h.environment(h.project("p").ID, "e", nil)
			p := h.do("GET", "/v1/environments/"+env.ID+"/logs", nil).problem(t, 404, "not-found", "")
			if !strings.Contains(p.Detail, "has no workload output") {
				t.Errorf("detail %q; want it to say the environment has no workload output", p.Detail)
			}
		})
	}
}

func TestEnvironmentLogs_FollowStreamsNewLinesUntilTheEnvironmentIsDeleted(t *testing.T) {
	f := newLogsFixture(t)
	s := f.w.Stream(logs.Stdout)
	fmt.Fprintln(s, "before")
	req, err := http.NewRequest("GET", f.url+f.path("?follow=true&tail=1"), nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+f.token)
	res, err := (&http.Client{Timeout: time.Minute}).Do(req)
	must(t, err)
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	lines := make(chan string)
	ended := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		ended <- sc.Err()
	}()
	next := func() string {
		t.Helper()
		select {
		case l := <-lines:
			return l
		case err := <-ended:
			t.Fatalf("the stream ended (%v); want more lines", err)
		case <-time.After(20 * time.Second):
			t.Fatal("no line within 20s")
		}
		return ""
	}
	if got := next(); got != "before" {
		t.Fatalf("first line %q; want before", got)
	}
	for _, want := range []string{"after 1", "after 2"} {
		fmt.Fprintln(s, want)
		if got := next(); got != want {
			t.Fatalf("line %q; want %q", got, want)
		}
	}
	f.do("DELETE", "/v1/environments/"+f.env.ID, nil).json(t, 202, nil)
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("the stream ended with %v; want its end", err)
		}
	case l := <-lines:
		t.Fatalf("line %q after the delete", l)
	case <-time.After(20 * time.Second):
		t.Fatal("the stream is still open 20s after the environment was deleted")
	}
}
