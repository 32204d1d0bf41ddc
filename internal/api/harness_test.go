package api_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
)

// harness is a real isolationd on a loopback listener with a fresh SQLite
// file. Every response it sees is validated against openapi.json, and
// when the test ends the audit chain of its store must verify.
type harness struct {
	t      *testing.T
	srv    *server.Server
	url    string
	token  string
	dir    string
	dsn    string // the PostgreSQL store's, "" on SQLite
	client *http.Client
}

func newHarness(t *testing.T, mods ...func(*server.Config)) *harness {
	t.Helper()
	h := startHarness(t, mods...)
	h.t = t
	return h
}

// startHarness starts the server for t, a test or a fuzz target (which
// sets h.t to each input's test before using h).
func startHarness(t testing.TB, mods ...func(*server.Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := server.Config{Listen: "127.0.0.1:0", DataDir: dir}
	if onPostgres() {
		cfg.Store = pgtest.DSN(t)
	}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	h := &harness{srv: srv, url: srv.URL(), token: srv.AdminToken(), dir: cfg.DataDir, client: &http.Client{Timeout: time.Minute}}
	if strings.HasPrefix(cfg.Store, "postgres") {
		h.dsn = cfg.Store
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		verifyAuditChain(t, cmp.Or(cfg.Store, "sqlite:"+filepath.Join(h.dir, server.DatabaseFile)))
	})
	return h
}

// storeEnv set to "postgres" runs the API's contract tests on a
// PostgreSQL store (pgtest's server), as make test does a second time;
// otherwise they run on SQLite.
const storeEnv = "ISOLATION_TEST_API_STORE"

// embeddedStore keeps a test on SQLite whatever storeEnv says: it is
// about the database file on the data volume (its size, a full disk),
// which a PostgreSQL store does not have.
func embeddedStore(c *server.Config) { c.Store = "" }

// onPostgres reports whether the tests run on PostgreSQL.
func onPostgres() bool { return os.Getenv(storeEnv) == store.KindPostgres }

func verifyAuditChain(t testing.TB, location string) {
	t.Helper()
	loc, err := store.ParseLocation(location)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), loc)
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	defer st.Close()
	res, err := audit.Verify(context.Background(), func(ctx context.Context, after int64) ([]apiv1.AuditEvent, error) {
		evs, _, err := st.ListAudit(ctx, store.AuditQuery{AfterSeq: after, Limit: store.MaxLimit})
		return evs, err
	})
	if err != nil || !res.OK() {
		t.Errorf("audit chain does not verify: %v %v", err, res.Broken)
	}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request as the admin. body is a string (sent as is) or a
// value (sent as JSON); hdr are header name/value pairs, and an
// "Authorization" pair replaces the admin's ("" sends none).
func (h *harness) do(method, path string, body any, hdr ...string) resp {
	h.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			h.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(raw))
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	r := resp{status: res.StatusCode, header: res.Header, body: out}
	validateAgainstOpenAPI(h.t, req, raw, r)
	if r.header.Get(apiv1.HeaderRequestID) == "" {
		h.t.Errorf("%s %s: no X-Request-Id in the response", method, path)
	}
	return r
}

// json decodes the body into v, failing the test on the wrong status.
func (r resp) json(t *testing.T, want int, v any) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("decode %s: %v", r.body, err)
		}
	}
}

// problem checks an error answer: status, problem media type, type slug,
// and (when field is not "") a field error naming field.
func (r resp) problem(t *testing.T, status int, slug, field string) apiv1.Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != apiv1.MediaProblem {
		t.Fatalf("Content-Type %q, want %s", ct, apiv1.MediaProblem)
	}
	var p apiv1.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Type != api.ProblemBase+slug || p.Status != status || p.Title == "" || p.RequestID == "" {
		t.Fatalf("problem %+v, want type %s status %d with title and request_id", p, slug, status)
	}
	if field != "" {
		found := false
		for _, e := range p.Errors {
			found = found || (e.Field == field && e.Message != "")
		}
		if !found {
			t.Fatalf("problem errors %+v do not name field %q", p.Errors, field)
		}
	}
	for _, leak := range []string{"goroutine ", "sqlite", "SELECT ", "INSERT ", ".go:"} {
		if bytes.Contains(r.body, []byte(leak)) {
			t.Fatalf("problem body leaks internals (%q): %s", leak, r.body)
		}
	}
	return p
}

var (
	oaOnce   sync.Once
	oaRouter routers.Router
	oaErr    error
)

func openAPIRouter() (routers.Router, error) {
	oaOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(api.OpenAPI)
		if err != nil {
			oaErr = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			oaErr = err
			return
		}
		doc.Servers = nil // match any host: the test servers listen on random ports
		oaRouter, oaErr = gorillamux.NewRouter(doc)
	})
	return oaRouter, oaErr
}

// validateAgainstOpenAPI checks a real exchange against openapi.json: the
// response always (problems included), the request when it succeeded.
func validateAgainstOpenAPI(t *testing.T, req *http.Request, reqBody []byte, r resp) {
	t.Helper()
	router, err := openAPIRouter()
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(vreq)
	if err != nil {
		// Unknown routes and wrong methods are not in the document.
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s answered %d but is not in openapi.json: %v", req.Method, req.URL.Path, r.status, err)
		}
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if r.status < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: request does not match openapi.json: %v", req.Method, req.URL.Path, err)
		}
	}
	if strings.HasPrefix(r.header.Get("Content-Type"), "text/") {
		return
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.status, Header: r.header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	out.SetBodyBytes(r.body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: response %d does not match openapi.json: %v\nbody: %s", req.Method, req.URL.Path, r.status, err, r.body)
	}
}

// snapshot is everything a rejected request must leave as it was: the
// lists of every kind and the length of the audit trail.
func (h *harness) snapshot() string {
	h.t.Helper()
	ctx := context.Background()
	st := h.srv.Store()
	var b strings.Builder
	ps, _, err := st.ListProjects(ctx, store.ListQuery{Limit: store.MaxLimit})
	must(h.t, err)
	es, _, err := st.ListEnvironments(ctx, store.ListQuery{Limit: store.MaxLimit})
	must(h.t, err)
	pols, _, err := st.ListPolicies(ctx, store.ListQuery{Limit: store.MaxLimit})
	must(h.t, err)
	evs, _, err := st.ListAudit(ctx, store.AuditQuery{Limit: store.MaxLimit})
	must(h.t, err)
	for _, v := range []any{ps, es, pols, len(evs)} {
		j, _ := json.Marshal(v)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// flushDenials appends the audit of every refused request counted so far
// (they are audited off the request path, aggregated per minute).
func (h *harness) flushDenials() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(h.t, h.srv.FlushDenials(ctx))
}

// refusals adds up the refused requests the audit events of actions
// (each one, and the aggregates that count more of it) stand for, per
// status.
func refusals(evs []apiv1.AuditEvent, action string) map[int]int {
	n := map[int]int{}
	for _, ev := range evs {
		switch ev.Action {
		case action:
			n[ev.StatusCode]++
		case action + api.AggregateSuffix:
			n[ev.StatusCode] += aggregateCount(ev)
		}
	}
	return n
}

// aggregateCount is the count of an aggregate event, 0 for any other.
func aggregateCount(ev apiv1.AuditEvent) int {
	if ev.Changes == nil {
		return 0
	}
	raw, err := json.Marshal(ev.Changes.After)
	if err != nil {
		return 0
	}
	var agg apiv1.DenialAggregate
	if json.Unmarshal(raw, &agg) != nil {
		return 0
	}
	return agg.Count
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fixtures

func (h *harness) project(name string) apiv1.Project {
	h.t.Helper()
	var p apiv1.Project
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: name}).json(h.t, 201, &p)
	return p
}

func (h *harness) environment(projectID, name string, labels map[string]string) apiv1.Environment {
	h.t.Helper()
	var e apiv1.Environment
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: projectID, Name: name, Labels: labels}).json(h.t, 202, &e)
	return e
}

// wait blocks on the API's wait_for and returns the environment.
func (h *harness) wait(id, states string) (apiv1.Environment, resp) {
	h.t.Helper()
	var e apiv1.Environment
	r := h.do("GET", "/v1/environments/"+id+"?wait_for="+states+"&timeout=20s", nil)
	if r.status == http.StatusOK {
		r.json(h.t, 200, &e)
		if r.header.Get("X-Wait-Timeout") == "true" {
			h.t.Fatalf("waiting for %s on %s timed out: %s", states, id, r.body)
		}
	}
	return e, r
}

func ptr[T any](v T) *T { return &v }
