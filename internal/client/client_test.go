package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

const testToken = "s3cr3t-token-value-that-must-never-leak"

// recorded is one request as the fake server saw it.
type recorded struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   string
	At     time.Time
}

// reply is one scripted answer; drop closes the connection without one.
type reply struct {
	status int
	header map[string]string
	body   any
	drop   bool
}

// fakeAPI is an httptest server that answers from a script, one reply per
// request in order (the last reply repeats), and records every request.
type fakeAPI struct {
	*httptest.Server
	mu       sync.Mutex
	script   []reply
	requests []recorded
}

func newFakeAPI(t *testing.T, script ...reply) *fakeAPI {
	t.Helper()
	f := &fakeAPI{script: script}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, recorded{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: string(body), At: time.Now(),
	})
	n := len(f.requests)
	rep := f.script[min(n, len(f.script))-1]
	f.mu.Unlock()

	if rep.drop {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	if rep.body != nil {
		if w.Header().Get("Content-Type") == "" {
			ct := apiv1.MediaJSON
			if rep.status >= 400 {
				ct = apiv1.MediaProblem
			}
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(rep.status)
		_ = json.NewEncoder(w).Encode(rep.body)
		return
	}
	w.WriteHeader(rep.status)
}

func (f *fakeAPI) recorded() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

// captureLogger keeps every log line, to scan for secrets.
type captureLogger struct {
	mu    sync.Mutex
	lines []string
}

func (l *captureLogger) log(level, msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s %v", level, msg, kv))
}
func (l *captureLogger) Debug(msg string, kv ...any) { l.log("DEBUG", msg, kv...) }
func (l *captureLogger) Info(msg string, kv ...any)  { l.log("INFO", msg, kv...) }
func (l *captureLogger) Warn(msg string, kv ...any)  { l.log("WARN", msg, kv...) }
func (l *captureLogger) Error(msg string, kv ...any) { l.log("ERROR", msg, kv...) }

func (l *captureLogger) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// newTestClient returns a client of f with fast backoff, so retry tests
// spend their time only where a Retry-After asks for it.
func newTestClient(t *testing.T, f *fakeAPI, mutate ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Endpoint:     f.URL,
		Token:        testToken,
		MaxRetries:   3,
		RetryWaitMin: time.Millisecond,
		RetryWaitMax: 5 * time.Millisecond,
		UserAgent:    "client-test/1.0",
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func problem(status int, title string, fields ...apiv1.FieldError) reply {
	return reply{status: status, body: apiv1.Problem{
		Type: "about:blank", Title: title, Status: status, Detail: title + " detail", Errors: fields,
	}}
}

var testProject = apiv1.Project{ID: "prj-1", Name: "payments", Labels: map[string]string{}, Generation: 1, ETag: `"1"`}

func TestNew_RejectsBadConfigWithoutEchoingTheToken(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		cfg  Config
		want string
	}{
		"missing endpoint":    {Config{Token: "tok-5ecret"}, "endpoint is required"},
		"not a URL":           {Config{Endpoint: "isolation.example.com", Token: "tok-5ecret"}, "not an http(s) URL"},
		"ftp scheme":          {Config{Endpoint: "ftp://h", Token: "tok-5ecret"}, "not an http(s) URL"},
		"credentials in URL":  {Config{Endpoint: "https://u:p@h", Token: "tok-5ecret"}, "must not contain credentials"},
		"missing token":       {Config{Endpoint: "https://h"}, "token is required"},
		"whitespace in token": {Config{Endpoint: "https://h", Token: "abc def"}, "must not contain whitespace"},
		"bad CA":              {Config{Endpoint: "https://h", Token: "tok-5ecret", CACertPEM: "not pem"}, "no valid PEM"},
		"negative timeout":    {Config{Endpoint: "https://h", Token: "tok-5ecret", RequestTimeout: -time.Second}, "must not be negative"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New() error = %v, want it to contain %q", err, tc.want)
			}
			if tc.cfg.Token != "" && strings.Contains(err.Error(), tc.cfg.Token) {
				t.Fatalf("error %q echoes the token", err)
			}
		})
	}
}

func TestDo_SetsHeadersOnEveryRequest(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, reply{status: 200, body: testProject})
	c := newTestClient(t, f)
	if _, err := c.Projects().Get(t.Context(), "prj-1"); err != nil {
		t.Fatal(err)
	}
	r := f.recorded()[0]
	for header, want := range map[string]string{
		"Authorization": "Bearer " + testToken,
		"User-Agent":    "client-test/1.0",
		"Accept":        "application/json, application/problem+json",
	} {
		if got := r.Header.Get(header); got != want {
			t.Errorf("%s = %q, want %q", header, got, want)
		}
	}
	if r.Header.Get("X-Request-Id") == "" {
		t.Error("X-Request-Id is not set")
	}
	if r.Header.Get("Idempotency-Key") != "" {
		t.Error("a GET carries an Idempotency-Key; only POSTs should")
	}
	if r.Path != "/v1/projects/prj-1" {
		t.Errorf("path = %q", r.Path)
	}
}

func TestDo_EscapesIDsSoTheyCannotChangeTheRoute(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(404, "Not Found"))
	c := newTestClient(t, f)
	_, _ = c.Projects().Get(t.Context(), "../tokens?x=1")
	if got := f.recorded()[0].Path; got != "/v1/projects/../tokens?x=1" {
		t.Fatalf("server saw path %q, want the id kept as one segment", got)
	}
	if got := f.recorded()[0].Query; got != "" {
		t.Fatalf("id leaked into the query: %q", got)
	}
}

func TestDo_RetriesServerErrorsAndConnectionDropsThenSucceeds(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(500, "Internal Server Error"), reply{drop: true}, problem(503, "Unavailable"), reply{status: 200, body: testProject})
	c := newTestClient(t, f)
	got, err := c.Projects().Get(t.Context(), "prj-1")
	if err != nil {
		t.Fatalf("Get after transient failures: %v", err)
	}
	if diff := cmp.Diff(&testProject, got); diff != "" {
		t.Errorf("project (-want +got):\n%s", diff)
	}
	if n := len(f.recorded()); n != 4 {
		t.Errorf("server saw %d attempts, want 4", n)
	}
}

func TestDo_DoesNotRetryClientErrors(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 401, 403, 404, 409, 412, 413, 422} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t, problem(status, http.StatusText(status)))
			c := newTestClient(t, f)
			_, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
			if StatusCode(err) != status {
				t.Fatalf("error = %v, want status %d", err, status)
			}
			if n := len(f.recorded()); n != 1 {
				t.Fatalf("server saw %d attempts for a %d, want exactly 1", n, status)
			}
		})
	}
}

func TestDo_GivesUpAfterMaxRetriesWithTheLastProblem(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(503, "Service Unavailable"))
	c := newTestClient(t, f, func(cfg *Config) { cfg.MaxRetries = 2 })
	_, err := c.Projects().Get(t.Context(), "prj-1")
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Problem.Title != "Service Unavailable" {
		t.Fatalf("error = %#v, want *Error 503 with the server's problem", err)
	}
	if n := len(f.recorded()); n != 3 {
		t.Fatalf("server saw %d attempts, want 1 + 2 retries", n)
	}
}

func TestDo_NegativeMaxRetriesDisablesRetries(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(500, "Internal Server Error"))
	c := newTestClient(t, f, func(cfg *Config) { cfg.MaxRetries = -1 })
	if _, err := c.Projects().Get(t.Context(), "prj-1"); StatusCode(err) != 500 {
		t.Fatalf("error = %v, want 500", err)
	}
	if n := len(f.recorded()); n != 1 {
		t.Fatalf("server saw %d attempts, want 1", n)
	}
}

func TestDo_HonoursRetryAfterOnAnyRetryableStatus(t *testing.T) {
	t.Parallel()
	for _, status := range []int{429, 500} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			limited := problem(status, "Slow down")
			limited.header = map[string]string{"Retry-After": "1"}
			f := newFakeAPI(t, limited, reply{status: 200, body: testProject})
			// Backoff alone would wait at most 5ms: only Retry-After explains a 1s gap.
			c := newTestClient(t, f)
			if _, err := c.Projects().Get(t.Context(), "prj-1"); err != nil {
				t.Fatal(err)
			}
			reqs := f.recorded()
			if len(reqs) != 2 {
				t.Fatalf("server saw %d attempts, want 2", len(reqs))
			}
			if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
				t.Fatalf("retried after %s, want at least the 1s of Retry-After", gap)
			}
		})
	}
}

func TestBackoff_PrefersRetryAfterToExponentialBackoff(t *testing.T) {
	t.Parallel()
	header := func(retryAfter string) http.Header {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return h
	}
	// The jitter's upper bound, so the ceiling of each wait shows.
	ceiling := func(d time.Duration) time.Duration { return d }
	cases := []struct {
		name    string
		header  http.Header
		attempt int
		want    time.Duration
	}{
		{"429 seconds", header("7"), 0, 7 * time.Second},
		{"503 seconds", header("2"), 3, 2 * time.Second},
		{"502 seconds", header("3"), 0, 3 * time.Second},
		{"no header: exponential", header(""), 2, 400 * time.Millisecond},
		{"garbage header: exponential", header("soon"), 0, 100 * time.Millisecond},
		{"connection error: exponential", nil, 1, 200 * time.Millisecond},
		{"capped at max", header(""), 10, time.Second},
		{"no overflow far out", header(""), 500, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := backoff(100*time.Millisecond, time.Second, tc.attempt, tc.header, ceiling); got != tc.want {
				t.Fatalf("backoff = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestBackoff_FullJitterSpreadsWaitsOverZeroToTheCeiling(t *testing.T) {
	t.Parallel()
	const draws = 2000
	var below, above int
	for range draws {
		d := backoff(100*time.Millisecond, time.Second, 2, nil, fullJitter)
		if d < 0 || d > 400*time.Millisecond {
			t.Fatalf("backoff = %s, want within [0, 400ms]", d)
		}
		if d < 200*time.Millisecond {
			below++
		} else {
			above++
		}
	}
	// Uniform: each half holds about half the draws (5 sigma is ±112).
	if below < draws/2-112 || above < draws/2-112 {
		t.Fatalf("%d waits below 200ms and %d above: not spread over [0, 400ms]", below, above)
	}
}

func TestRetryAfter_ParsesSecondsAndHTTPDates(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 2 * time.Minute, true},
		{" 0 ", 0, true},
		{"-1", 0, false},
		{"", 0, false},
		{"later", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	}
	for _, tc := range cases {
		got, ok := retryAfter(tc.in, now)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestCreate_RetriesReuseOneIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(502, "Bad Gateway"), reply{drop: true}, problem(429, "Too Many Requests"), reply{status: 201, body: testProject})
	c := newTestClient(t, f)
	if _, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"}); err != nil {
		t.Fatal(err)
	}
	reqs := f.recorded()
	if len(reqs) != 4 {
		t.Fatalf("server saw %d attempts, want 4", len(reqs))
	}
	key, rid := reqs[0].Header.Get("Idempotency-Key"), reqs[0].Header.Get("X-Request-Id")
	if key == "" {
		t.Fatal("POST carries no Idempotency-Key")
	}
	for i, r := range reqs {
		if got := r.Header.Get("Idempotency-Key"); got != key {
			t.Errorf("attempt %d Idempotency-Key = %q, want %q (the same on every retry)", i, got, key)
		}
		if got := r.Header.Get("X-Request-Id"); got != rid {
			t.Errorf("attempt %d X-Request-Id = %q, want %q", i, got, rid)
		}
		if r.Body != `{"name":"payments"}` {
			t.Errorf("attempt %d body = %q, want the same body on every retry", i, r.Body)
		}
	}

	// A second logical create is a new operation with a new key.
	if _, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"}); err != nil {
		t.Fatal(err)
	}
	if again := f.recorded()[4].Header.Get("Idempotency-Key"); again == key || again == "" {
		t.Fatalf("second create reused key %q", again)
	}
}

func TestError_DecodesProblemWithFieldErrors(t *testing.T) {
	t.Parallel()
	rep := problem(422, "Validation failed",
		apiv1.FieldError{Field: "name", Message: "must be a DNS label"},
		apiv1.FieldError{Field: "labels[\"a b\"]", Message: "key must be a label key"})
	rep.header = map[string]string{"X-Request-Id": "req-from-server"}
	f := newFakeAPI(t, rep)
	c := newTestClient(t, f)
	_, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "Bad Name"})

	var apiErr *Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %T is not *client.Error", err)
	}
	want := apiv1.Problem{
		Type: "about:blank", Title: "Validation failed", Status: 422, Detail: "Validation failed detail",
		Errors: []apiv1.FieldError{{Field: "name", Message: "must be a DNS label"}, {Field: "labels[\"a b\"]", Message: "key must be a label key"}},
	}
	if diff := cmp.Diff(want, apiErr.Problem); diff != "" {
		t.Errorf("problem (-want +got):\n%s", diff)
	}
	if apiErr.RequestID != "req-from-server" {
		t.Errorf("RequestID = %q, want the server's", apiErr.RequestID)
	}
	for _, part := range []string{"422", "Validation failed", "name: must be a DNS label", "req-from-server"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
}

func TestError_AFieldItsDetailAlreadyNamesIsSaidOnce(t *testing.T) {
	t.Parallel()
	e := &Error{StatusCode: 409, method: "POST", path: "/v1/environments", Problem: apiv1.Problem{
		Title: "Conflict", Detail: "name is already taken by another environment of this project (env_1)",
		Errors: []apiv1.FieldError{{Field: "name", Message: "is already taken by another environment of this project"}},
	}}
	if got := strings.Count(e.Error(), "already taken"); got != 1 {
		t.Errorf("error %q says it %d times, want once", e, got)
	}
}

func TestError_NonProblemBodyStillYieldsAnError(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, reply{status: 404, header: map[string]string{"Content-Type": "text/html"}, body: "<html>nope</html>"})
	c := newTestClient(t, f)
	_, err := c.Projects().Get(t.Context(), "x")
	if !IsNotFound(err) {
		t.Fatalf("error = %v, want IsNotFound", err)
	}
}

func TestErrorHelpers_ClassifyWrappedErrors(t *testing.T) {
	t.Parallel()
	wrap := func(status int) error { return fmt.Errorf("context: %w", &Error{StatusCode: status}) }
	if !IsNotFound(wrap(404)) || IsNotFound(wrap(410)) {
		t.Error("IsNotFound")
	}
	if !IsPreconditionFailed(wrap(412)) || IsPreconditionFailed(wrap(409)) {
		t.Error("IsPreconditionFailed")
	}
	if !IsConflict(wrap(409)) || IsConflict(errors.New("409")) {
		t.Error("IsConflict")
	}
}

func TestDo_TokenNeverLoggedNorInErrors(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(500, "boom"), reply{drop: true}, problem(401, "Unauthorized"))
	logs := &captureLogger{}
	c := newTestClient(t, f, func(cfg *Config) { cfg.Logger = logs })
	_, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
	if err == nil {
		t.Fatal("want an error")
	}
	if logs.text() == "" {
		t.Fatal("the logger got nothing; the test would prove nothing")
	}
	if strings.Contains(logs.text(), testToken) {
		t.Fatalf("token in logs:\n%s", logs.text())
	}
	if strings.Contains(err.Error(), testToken) {
		t.Fatalf("token in error: %v", err)
	}

	// A connection error after every retry is also free of the token.
	dead := newFakeAPI(t, reply{drop: true})
	c = newTestClient(t, dead, func(cfg *Config) { cfg.Logger = logs; cfg.MaxRetries = 1 })
	_, err = c.Projects().Get(t.Context(), "p")
	if err == nil || strings.Contains(err.Error(), testToken) || strings.Contains(logs.text(), testToken) {
		t.Fatalf("connection failure error %v or logs carry the token", err)
	}
}

func TestRedactingLogger_ScrubsTheSecretFromEveryValue(t *testing.T) {
	t.Parallel()
	logs := &captureLogger{}
	l := redactingLogger{next: logs, secret: testToken}
	l.Debug("msg "+testToken, "header", "Bearer "+testToken, "err", errors.New("bad "+testToken), "n", 3)
	l.Error("x", "any", struct{ T string }{testToken})
	if strings.Contains(logs.text(), testToken) || !strings.Contains(logs.text(), redacted) {
		t.Fatalf("logs not scrubbed:\n%s", logs.text())
	}
}

func TestUpdate_SendsIfMatchAndReportsPreconditionFailed(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(412, "Precondition Failed"))
	c := newTestClient(t, f)
	name := "renamed"
	_, err := c.Projects().Update(t.Context(), "prj-1", apiv1.ProjectPatch{Name: &name}, `"1"`)
	if !IsPreconditionFailed(err) {
		t.Fatalf("error = %v, want IsPreconditionFailed", err)
	}
	r := f.recorded()
	if len(r) != 1 || r[0].Method != http.MethodPatch || r[0].Header.Get("If-Match") != `"1"` || r[0].Body != `{"name":"renamed"}` {
		t.Fatalf("request = %+v, want one PATCH with If-Match and only the present fields", r)
	}
}

func TestGet_FillsETagFromHeaderWhenBodyLacksIt(t *testing.T) {
	t.Parallel()
	p := testProject
	p.ETag = ""
	f := newFakeAPI(t, reply{status: 200, header: map[string]string{"ETag": `"7"`}, body: p})
	got, err := newTestClient(t, f).Projects().Get(t.Context(), "prj-1")
	if err != nil || got.ETag != `"7"` {
		t.Fatalf("Get = %+v, %v; want ETag from the header", got, err)
	}
}

func TestList_FollowsEveryPageWithTheSameFilters(t *testing.T) {
	t.Parallel()
	env := func(id string) apiv1.Environment { return apiv1.Environment{ID: id} }
	f := newFakeAPI(t,
		reply{status: 200, body: apiv1.List[apiv1.Environment]{Items: []apiv1.Environment{env("a"), env("b")}, NextCursor: "c1"}},
		reply{status: 200, body: apiv1.List[apiv1.Environment]{Items: []apiv1.Environment{env("c")}, NextCursor: "c2"}},
		reply{status: 200, body: apiv1.List[apiv1.Environment]{Items: []apiv1.Environment{}}},
	)
	c := newTestClient(t, f)
	got, err := c.Environments().List(t.Context(), ListOptions{
		ProjectID: "prj-1", Labels: map[string]string{"tier": "dev", "team": "payments"}, State: "ready", Limit: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.ID)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	want := []string{
		"label=team%3Dpayments%2Ctier%3Ddev&limit=2&project_id=prj-1&state=ready",
		"cursor=c1&label=team%3Dpayments%2Ctier%3Ddev&limit=2&project_id=prj-1&state=ready",
		"cursor=c2&label=team%3Dpayments%2Ctier%3Ddev&limit=2&project_id=prj-1&state=ready",
	}
	var queries []string
	for _, r := range f.recorded() {
		queries = append(queries, r.Query)
	}
	if diff := cmp.Diff(want, queries); diff != "" {
		t.Errorf("queries (-want +got):\n%s", diff)
	}
}

func TestWaitFor_LongPollsUntilTheStateIsReached(t *testing.T) {
	t.Parallel()
	provisioning := apiv1.Environment{ID: "env-1", State: apiv1.StateProvisioning}
	ready := apiv1.Environment{ID: "env-1", State: apiv1.StateReady, ETag: `"2"`}
	f := newFakeAPI(t,
		reply{status: 200, header: map[string]string{"X-Wait-Timeout": "true"}, body: provisioning},
		reply{status: 200, body: ready},
	)
	c := newTestClient(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got, err := c.Environments().WaitFor(ctx, "env-1", apiv1.StateReady)
	if err != nil || got.State != apiv1.StateReady || got.ETag != `"2"` {
		t.Fatalf("WaitFor = %+v, %v", got, err)
	}
	for _, r := range f.recorded() {
		if !strings.Contains(r.Query, "wait_for=ready") || !strings.Contains(r.Query, "timeout=") {
			t.Errorf("poll query %q lacks wait_for and timeout", r.Query)
		}
	}
}

func TestWaitFor_FailedEnvironmentReturnsTheServerMessage(t *testing.T) {
	t.Parallel()
	failed := apiv1.Environment{ID: "env-1", State: apiv1.StateFailed, StateMessage: "address pool exhausted"}
	f := newFakeAPI(t, reply{status: 200, body: failed})
	got, err := newTestClient(t, f).Environments().WaitFor(t.Context(), "env-1", apiv1.StateReady)
	var stateErr *StateError
	if !errors.As(err, &stateErr) || !strings.Contains(err.Error(), "address pool exhausted") {
		t.Fatalf("error = %v, want a *StateError with the server's message", err)
	}
	if got == nil || got.State != apiv1.StateFailed {
		t.Fatalf("WaitFor returned %+v, want the failed environment", got)
	}
}

func TestWaitFor_StopsAtTheContextDeadlineWithTheLastState(t *testing.T) {
	t.Parallel()
	// The server honours the timeout it is asked for, as isolationd does.
	var polls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		polls++
		mu.Unlock()
		d, err := time.ParseDuration(r.URL.Query().Get("timeout"))
		if err != nil {
			http.Error(w, "bad timeout", 400)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("X-Wait-Timeout", "true")
		_ = json.NewEncoder(w).Encode(apiv1.Environment{ID: "env-1", State: apiv1.StateProvisioning})
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{Endpoint: srv.URL, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	// Long enough that the tenth left for the answer (300ms) survives a
	// loaded machine.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err = c.Environments().WaitFor(ctx, "env-1", apiv1.StateReady)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last state provisioning") {
		t.Fatalf("error = %v, want a deadline error naming the last state", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if polls < 1 || polls > 20 {
		t.Fatalf("%d polls in 3s: the wait should ride long polls, not spin", polls)
	}
}

func TestWaitDeleted_ReturnsOnceTheEnvironmentIsGone(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t,
		reply{status: 200, header: map[string]string{"X-Wait-Timeout": "true"}, body: apiv1.Environment{ID: "env-1", State: apiv1.StateDeleting}},
		problem(404, "Not Found"),
	)
	if err := newTestClient(t, f).Environments().WaitDeleted(t.Context(), "env-1"); err != nil {
		t.Fatalf("WaitDeleted: %v", err)
	}
	if q := f.recorded()[0].Query; !strings.Contains(q, "wait_for=deleted") {
		t.Fatalf("query %q does not wait for deleted", q)
	}
}

func TestEnvironments_CheckAndEffectivePolicyHitTheirRoutes(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t,
		reply{status: 200, body: apiv1.CheckResult{Allowed: true, Matched: &apiv1.Match{PolicyName: "db"}}},
		reply{status: 200, body: apiv1.EffectivePolicy{EnvironmentID: "env-1", Policies: []apiv1.PolicyRef{{ID: "pol-1", Name: "db"}}}},
		reply{status: 200, body: apiv1.EnvironmentStatus{ID: "env-1", State: "ready"}},
	)
	envs := newTestClient(t, f).Environments()
	res, err := envs.Check(t.Context(), "env-1", apiv1.CheckRequest{Direction: "egress", Protocol: "tcp", Address: "10.0.0.1", Port: 5432})
	if err != nil || !res.Allowed || res.Matched.PolicyName != "db" {
		t.Fatalf("Check = %+v, %v", res, err)
	}
	eff, err := envs.EffectivePolicy(t.Context(), "env-1")
	if err != nil || len(eff.Policies) != 1 {
		t.Fatalf("EffectivePolicy = %+v, %v", eff, err)
	}
	st, err := envs.Status(t.Context(), "env-1")
	if err != nil || st.State != "ready" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	var paths []string
	for _, r := range f.recorded() {
		paths = append(paths, r.Method+" "+r.Path)
	}
	want := []string{"POST /v1/environments/env-1/check", "GET /v1/environments/env-1/effective-policy", "GET /v1/environments/env-1/status"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}

func TestExpiry_IsTheGoneAnswerOfAnExpiredEnvironmentOnly(t *testing.T) {
	t.Parallel()
	at, ttl := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), int64(60)
	gone := fmt.Errorf("context: %w", &Error{StatusCode: 410, Problem: apiv1.Problem{Status: 410, ExpiredAt: &at, TTLSeconds: &ttl}})
	if got, gotTTL, ok := Expiry(gone); !ok || !got.Equal(at) || gotTTL != ttl {
		t.Errorf("Expiry(410) = %s, %d, %v; want %s, %d", got, gotTTL, ok, at, ttl)
	}
	if !IsGone(gone) || IsNotFound(gone) || !IsGone(&Error{StatusCode: 404}) {
		t.Error("IsGone is a 404 or a 410, IsNotFound a 404 only")
	}
	if _, _, ok := Expiry(&Error{StatusCode: 404}); ok {
		t.Error("Expiry(404) is ok")
	}
}
