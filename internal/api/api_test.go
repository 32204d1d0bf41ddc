package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/simulate"
	"github.com/isolationhq/terraform-provider-isolation/internal/logbuf"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func TestProjects_CreateReadUpdateDelete(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "payments", Labels: map[string]string{"team": "pay"}})
	var p apiv1.Project
	r.json(t, 201, &p)
	if r.header.Get("ETag") != `"1"` || p.ETag != `"1"` || r.header.Get("Location") != "/v1/projects/"+p.ID || !strings.HasPrefix(p.ID, "prj_") {
		t.Fatalf("create: headers %v, body %+v", r.header, p)
	}
	h.do("GET", "/v1/projects/"+p.ID, nil).json(t, 200, &p)
	var patched apiv1.Project
	r = h.do("PATCH", "/v1/projects/"+p.ID, apiv1.ProjectPatch{Description: ptr("card payments")}, "If-Match", `"1"`)
	r.json(t, 200, &patched)
	if patched.Generation != 2 || patched.Description != "card payments" || r.header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %+v", patched)
	}
	h.do("PATCH", "/v1/projects/"+p.ID, apiv1.ProjectPatch{Description: ptr("x")}, "If-Match", `"1"`).problem(t, 412, "precondition-failed", "")
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "payments"}).problem(t, 409, "conflict", "name")

	env := h.environment(p.ID, "api", nil)
	h.do("DELETE", "/v1/projects/"+p.ID, nil).problem(t, 409, "conflict", "")
	h.do("DELETE", "/v1/environments/"+env.ID, nil).json(t, 202, nil)
	h.wait(env.ID, "deleted")
	h.do("DELETE", "/v1/projects/"+p.ID, nil, "If-Match", `"2"`).json(t, 204, nil)
	h.do("GET", "/v1/projects/"+p.ID, nil).problem(t, 404, "not-found", "")
}

func TestProjects_DeleteContentsDeletesItsPoliciesAndEnvironmentsInOneAuditedChange(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	other := h.project("other")
	api, db := h.environment(p.ID, "api", nil), h.environment(p.ID, "db", nil)
	kept := h.environment(other.ID, "api", nil)
	var pol apiv1.Policy
	port := 443
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: apiv1.PolicySpec{Name: "web", PolicyTypes: []string{"egress"},
		Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{CIDR: "203.0.113.0/24"}}, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: &port}}}}}}).json(t, 201, &pol)
	// Deleting the policy alone would break this assertion (422): emptying
	// the project deletes it first.
	var assertion apiv1.Assertion
	h.do("POST", "/v1/projects/"+p.ID+"/assertions", apiv1.AssertionCreate{AssertionSpec: apiv1.AssertionSpec{
		Name: "api-reaches-out", From: apiv1.AssertionSource{Environment: "api"}, To: apiv1.AssertionTarget{CIDR: "203.0.113.0/24"},
		Protocol: apiv1.ProtocolTCP, Port: 443, Expect: apiv1.ExpectAllow,
	}}).json(t, 201, &assertion)
	h.do("DELETE", "/v1/policies/"+pol.ID, nil).problem(t, 422, "assertion-broken", "")

	// Without it, the refusal names what the project holds.
	refused := h.do("DELETE", "/v1/projects/"+p.ID, nil).problem(t, 409, "conflict", "")
	if want := "still holds 2 environments (api, db) and 1 policy (web)"; !strings.Contains(refused.Detail, want) || !strings.Contains(refused.Detail, "/contents") {
		t.Fatalf("409 detail %q, want it to say %q and how to delete them all", refused.Detail, want)
	}
	h.do("DELETE", "/v1/projects/"+p.ID+"/contents", nil, "If-Match", `"7"`).problem(t, 412, "precondition-failed", "")

	var held apiv1.ProjectContents
	h.do("DELETE", "/v1/projects/"+p.ID+"/contents", nil, "If-Match", `"1"`).json(t, 200, &held)
	want := apiv1.ProjectContents{
		Environments: []apiv1.ObjectRef{{ID: api.ID, Name: "api"}, {ID: db.ID, Name: "db"}},
		Policies:     []apiv1.ObjectRef{{ID: pol.ID, Name: "web"}},
		Assertions:   []apiv1.ObjectRef{{ID: assertion.ID, Name: "api-reaches-out"}},
	}
	// Environments are listed by id, which orders them by creation.
	if fmt.Sprint(held) != fmt.Sprint(want) {
		t.Fatalf("contents %+v, want %+v", held, want)
	}
	h.do("GET", "/v1/policies/"+pol.ID, nil).problem(t, 404, "not-found", "")
	h.do("GET", "/v1/projects/"+p.ID+"/assertions/"+assertion.ID, nil).problem(t, 404, "not-found", "")
	h.wait(api.ID, "deleted")
	h.wait(db.ID, "deleted")
	h.do("GET", "/v1/environments/"+kept.ID, nil).json(t, 200, nil)
	var events apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=project.delete_contents", nil).json(t, 200, &events)
	if len(events.Items) != 1 || events.Items[0].Resource.ID != p.ID || !strings.Contains(string(mustJSON(t, events.Items[0].Changes)), pol.ID) {
		t.Fatalf("audit %+v, want one project.delete_contents event naming what it deleted", events.Items)
	}
	// Emptied, the project goes as any empty one does.
	h.do("DELETE", "/v1/projects/"+p.ID, nil).json(t, 204, nil)
}

// badRequest is one rejected request and what it must be answered with.
type badRequest struct {
	name, method, path string
	body               any
	hdr                []string
	status             int
	slug, field        string
}

func TestBadInput_IsRejectedWithAProblemAndChangesNothing(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	env := h.environment(p.ID, "api", map[string]string{"app": "api"})
	h.wait(env.ID, "ready")
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: apiv1.PolicySpec{Name: "web", PolicyTypes: []string{"egress"}}}).json(t, 201, nil)
	h.wait(env.ID, "enforced") // settle the reconciler before comparing snapshots

	policy := func(egress string) string {
		return fmt.Sprintf(`{"project_id":%q,"name":"p2","policy_types":["egress"],"egress":[%s]}`, p.ID, egress)
	}
	envPath := "/v1/environments/" + env.ID
	cases := []badRequest{
		{"malformed JSON", "POST", "/v1/projects", `{"name":`, nil, 400, "malformed-request", ""},
		{"not JSON at all", "POST", "/v1/projects", `name=x`, nil, 400, "malformed-request", ""},
		{"empty body", "POST", "/v1/projects", ``, nil, 400, "malformed-request", ""},
		{"trailing garbage", "POST", "/v1/projects", `{"name":"x"} {"name":"y"}`, nil, 400, "malformed-request", ""},
		{"wrong type", "POST", "/v1/projects", `{"name":42}`, nil, 400, "malformed-request", "name"},
		{"wrong nested type", "POST", "/v1/environments", fmt.Sprintf(`{"project_id":%q,"name":"x","resources":{"cpu_millis":"lots"}}`, p.ID), nil, 400, "malformed-request", "resources.cpu_millis"},
		{"unknown field", "POST", "/v1/projects", `{"name":"x","colour":"red"}`, nil, 400, "malformed-request", "colour"},
		{"bad name", "POST", "/v1/projects", `{"name":"Not_A_DNS_Label"}`, nil, 400, "validation", "name"},
		{"invalid CIDR", "POST", "/v1/policies", policy(`{"to":[{"cidr":"10.0.0.300/8"}]}`), nil, 400, "validation", "egress[0].to[0].cidr"},
		{"except outside its cidr", "POST", "/v1/policies", policy(`{"to":[{"cidr":"10.0.0.0/8","except":["192.168.0.0/16"]}]}`), nil, 400, "validation", "egress[0].to[0].except[0]"},
		{"port 0", "POST", "/v1/policies", policy(`{"ports":[{"port":0}]}`), nil, 400, "validation", "egress[0].ports[0].port"},
		{"port 70000", "POST", "/v1/policies", policy(`{"ports":[{"port":70000}]}`), nil, 400, "validation", "egress[0].ports[0].port"},
		{"end_port below port", "POST", "/v1/policies", policy(`{"ports":[{"port":8080,"end_port":80}]}`), nil, 400, "validation", "egress[0].ports[0].end_port"},
		{"unknown protocol", "POST", "/v1/policies", policy(`{"ports":[{"protocol":"gre","port":80}]}`), nil, 400, "validation", "egress[0].ports[0].protocol"},
		{"empty policy_types", "POST", "/v1/policies", fmt.Sprintf(`{"project_id":%q,"name":"p2","policy_types":[]}`, p.ID), nil, 400, "validation", "policy_types"},
		{"duplicate environment name", "POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "api"}, nil, 409, "conflict", "name"},
		{"duplicate policy name", "POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: apiv1.PolicySpec{Name: "web", PolicyTypes: []string{"ingress"}}}, nil, 409, "conflict", "name"},
		{"project that does not exist", "POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: "prj_nope", Name: "x"}, nil, 404, "not-found", "project_id"},
		{"oversized body", "POST", "/v1/projects", `{"name":"x","description":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, nil, 413, "body-too-large", ""},
		{"wrong content type", "POST", "/v1/projects", `{"name":"x"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type", ""},
		{"stale If-Match on PATCH", "PATCH", envPath, apiv1.EnvironmentPatch{Description: ptr("x")}, []string{"If-Match", `"7"`}, 412, "precondition-failed", ""},
		{"stale If-Match on DELETE", "DELETE", envPath, nil, []string{"If-Match", `"7"`}, 412, "precondition-failed", ""},
		{"bad ttl", "PATCH", envPath, `{"ttl_seconds":-5}`, nil, 400, "validation", "ttl_seconds"},
		{"mis-cased workload field", "PATCH", envPath, `{"workload":{"Image":"busybox"}}`, nil, 400, "malformed-request", "workload.Image"},
		{"missing token", "GET", "/v1/projects", nil, []string{"Authorization", ""}, 401, "unauthorized", ""},
		{"invalid token", "POST", "/v1/projects", apiv1.ProjectCreate{Name: "x"}, []string{"Authorization", "Bearer isot_not-a-real-token"}, 401, "unauthorized", ""},
		{"not a bearer token", "GET", "/v1/projects", nil, []string{"Authorization", "Basic dXNlcjpwdw=="}, 401, "unauthorized", ""},
		{"unknown environment", "GET", "/v1/environments/env_nope", nil, nil, 404, "not-found", ""},
		{"unknown policy", "PATCH", "/v1/policies/pol_nope", apiv1.PolicyPatch{}, nil, 404, "not-found", ""},
		{"unknown route", "GET", "/v1/nothing-here", nil, nil, 404, "not-found", ""},
		{"wrong method", "PUT", "/v1/projects", nil, nil, 405, "method-not-allowed", ""},
		{"bad limit", "GET", "/v1/environments?limit=5000", nil, nil, 400, "validation", "limit"},
		{"bad label selector", "GET", "/v1/environments?label=team", nil, nil, 400, "validation", "label"},
		{"bad state filter", "GET", "/v1/environments?state=sleeping", nil, nil, 400, "validation", "state"},
		{"unknown query parameter", "GET", "/v1/environments?projectid=x", nil, nil, 400, "validation", "projectid"},
		{"bad wait_for", "GET", envPath + "?wait_for=asleep", nil, nil, 400, "validation", "wait_for"},
		{"bad check", "POST", envPath + "/check", `{"direction":"sideways","address":"10.0.0.1","port":80}`, nil, 400, "validation", "direction"},
		{"bad X-Request-Id", "GET", "/v1/projects", nil, []string{"X-Request-Id", strings.Repeat("x", 129)}, 400, "malformed-request", "X-Request-Id"},
		{"bad Idempotency-Key", "POST", "/v1/projects", apiv1.ProjectCreate{Name: "x"}, []string{"Idempotency-Key", strings.Repeat("k", 300)}, 400, "malformed-request", "Idempotency-Key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := h.snapshot()
			r := h.do(c.method, c.path, c.body, c.hdr...)
			r.problem(t, c.status, c.slug, c.field)
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			// Refusals are audited off the request path: flushing appends
			// this one's event (alone, its window closed by the last flush).
			h.flushDenials()
			after := h.snapshot()
			if refusal := h.refusalOf(r); refusal != nil {
				// A denial (401), or a 404 of an object the authorize step
				// looked for, writes exactly one audit event and nothing else.
				before = bumpAuditCount(t, before)
				if want := refusalWant(c.status); refusal.Action != want || refusal.StatusCode != c.status {
					t.Errorf("refusal audited as %s %d, want %s %d", refusal.Action, refusal.StatusCode, want, c.status)
				}
			} else if c.status == 401 {
				t.Errorf("the denial is not on the audit trail")
			}
			if before != after {
				t.Errorf("the rejected request changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// refusalWant is the action a refused request of that status is audited as.
func refusalWant(status int) string {
	if status == http.StatusNotFound {
		return "request.not_found"
	}
	return "auth.denied"
}

// refusalOf is the audit event of the refused request r answered, nil
// when it has none.
func (h *harness) refusalOf(r resp) *apiv1.AuditEvent {
	h.t.Helper()
	evs, _, err := h.srv.Store().ListAudit(context.Background(), store.AuditQuery{RequestID: r.header.Get(apiv1.HeaderRequestID), Limit: store.MaxLimit})
	must(h.t, err)
	if len(evs) > 1 {
		h.t.Fatalf("%d audit events for one refused request: %+v", len(evs), evs)
	}
	if len(evs) == 0 {
		return nil
	}
	return &evs[0]
}

// bumpAuditCount is a snapshot with one more audit event.
func bumpAuditCount(t *testing.T, snap string) string {
	lines := strings.Split(strings.TrimSuffix(snap, "\n"), "\n")
	var n int
	if _, err := fmt.Sscan(lines[len(lines)-1], &n); err != nil {
		t.Fatal(err)
	}
	lines[len(lines)-1] = fmt.Sprint(n + 1)
	return strings.Join(lines, "\n") + "\n"
}

func TestAuth_EveryRouteButThePublicOnesNeedsAToken(t *testing.T) {
	h := newHarness(t)
	public := 0
	for _, rt := range api.Routes() {
		path := strings.ReplaceAll(rt.Pattern, "{id}", "x")
		r := h.do(rt.Method, path, nil, "Authorization", "")
		if rt.Perm.Public {
			public++
			if r.status != 200 {
				t.Errorf("%s %s without a token: %d, want 200", rt.Method, path, r.status)
			}
			continue
		}
		r.problem(t, 401, "unauthorized", "")
	}
	// Every refusal is audited: the first alone, the others of its minute
	// (same source, reason and status) counted in one aggregate.
	h.flushDenials()
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?outcome=denied&limit=1000", nil).json(t, 200, &evs)
	if want, got := len(api.Routes())-public, refusals(evs.Items, "auth.denied"); got[401] != want || len(got) != 1 {
		t.Fatalf("the audit trail stands for %v denials by status, want %d of 401: %+v", got, want, evs.Items)
	}
	if ev := evs.Items[0]; ev.StatusCode != 401 || ev.Source.IP != "127.0.0.1" || ev.Reason == "" || ev.RequestID == "" {
		t.Fatalf("denial event %+v", ev)
	}
}

func TestRequestID_IsEchoedAndInTheAuditEvent(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "p"}, "X-Request-Id", "trace-42")
	r.json(t, 201, nil)
	if r.header.Get("X-Request-Id") != "trace-42" {
		t.Fatalf("X-Request-Id %q", r.header.Get("X-Request-Id"))
	}
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?request_id=trace-42", nil).json(t, 200, &evs)
	if len(evs.Items) != 1 || evs.Items[0].Action != "project.create" || evs.Items[0].Actor.Name != server.BootstrapTokenName {
		t.Fatalf("audit events of trace-42: %+v", evs.Items)
	}
}

func TestIdempotency_ReplayMismatchAndInFlight(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	body := apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "api"}
	first := h.do("POST", "/v1/environments", body, "Idempotency-Key", "k1")
	var created apiv1.Environment
	first.json(t, 202, &created)
	h.wait(created.ID, "enforced") // the reconciler's changes are not the replay's
	before := h.snapshot()
	again := h.do("POST", "/v1/environments", body, "Idempotency-Key", "k1")
	again.json(t, 202, nil)
	if string(again.body) != string(first.body) || again.header.Get("Idempotent-Replayed") != "true" || again.header.Get("ETag") != first.header.Get("ETag") {
		t.Fatalf("replay differs:\nfirst %s\nagain %s %v", first.body, again.body, again.header)
	}
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "other"}, "Idempotency-Key", "k1").problem(t, 422, "idempotency-mismatch", "")
	if after := h.snapshot(); after != before {
		t.Fatalf("replay or mismatch changed the store")
	}

	// In flight: the first request's body is still arriving.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", h.url+"/v1/projects", pr)
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "k2")
	done := make(chan *http.Response, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	if _, err := pw.Write([]byte(`{"name":`)); err != nil {
		t.Fatal(err)
	}
	// The write returning says only that the client took the bytes: the
	// key's state, which takes no mark of its own, says when the server
	// holds it. A probe sent then is answered 409.
	for deadline := time.Now().Add(20 * time.Second); ; {
		var k apiv1.IdempotencyKey
		r := h.do("GET", "/v1/idempotency-keys/k2", nil)
		if r.status == http.StatusOK {
			r.json(t, 200, &k)
		}
		if k.State == apiv1.IdempotencyInProgress {
			break
		}
		if (r.status != http.StatusOK && r.status != http.StatusNotFound) || time.Now().After(deadline) {
			t.Fatalf("the key's state while the first request is in flight: %d %s", r.status, r.body)
		}
	}
	h.do("POST", "/v1/projects", `{}`, "Idempotency-Key", "k2").problem(t, 409, "idempotency-in-flight", "")
	if _, err := pw.Write([]byte(`"slow"}`)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	res := <-done
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("the slow first request: %d", res.StatusCode)
	}
	r := h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "slow"}, "Idempotency-Key", "k2")
	r.json(t, 201, nil)
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("retry after the first finished was not replayed")
	}
}

// gatedDriver is the simulate driver with Teardown held until the test
// opens the gate, so the deleting state can be observed.
type gatedDriver struct {
	*simulate.Driver
	gate chan struct{}
}

func (g *gatedDriver) Teardown(ctx context.Context, id string) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Driver.Teardown(ctx, id)
}

func TestEnvironment_Lifecycle(t *testing.T) {
	gd := &gatedDriver{Driver: simulate.New(), gate: make(chan struct{})}
	h := newHarness(t, func(c *server.Config) { c.EnforceDriver = gd })
	p := h.project("payments")
	env := h.environment(p.ID, "api", map[string]string{"app": "api"})
	if env.State != apiv1.StatePending || env.Generation != 1 || env.Resources.CPUMillis != apiv1.DefaultCPUMillis || !strings.HasPrefix(env.ID, "env_") {
		t.Fatalf("created: %+v", env)
	}
	ready, _ := h.wait(env.ID, "ready")
	if ready.State != apiv1.StateReady || ready.Enforcement.Address == "" || !ready.Enforcement.Enforced || ready.Enforcement.Driver != "simulate" {
		t.Fatalf("ready: %+v", ready)
	}

	var patched apiv1.Environment
	h.do("PATCH", "/v1/environments/"+env.ID, apiv1.EnvironmentPatch{Resources: &apiv1.ResourcesSpec{MemoryMB: ptr(int64(2048))}}, "If-Match", `"1"`).json(t, 200, &patched)
	if patched.Generation != 2 || patched.State != apiv1.StateUpdating || patched.Resources.MemoryMB != 2048 {
		t.Fatalf("patched: %+v", patched)
	}
	ready, _ = h.wait(env.ID, "ready")
	if ready.Generation != 2 || ready.Enforcement.ObservedGeneration != ready.Enforcement.Generation {
		t.Fatalf("after patch: %+v", ready)
	}
	var st apiv1.EnvironmentStatus
	h.do("GET", "/v1/environments/"+env.ID+"/status", nil).json(t, 200, &st)
	if st.State != apiv1.StateReady || st.Generation != 2 {
		t.Fatalf("status: %+v", st)
	}

	got := make(chan resp, 1)
	go func() { got <- h.do("GET", "/v1/environments/"+env.ID+"?wait_for=deleting&timeout=30s", nil) }()
	var del apiv1.Environment
	h.do("DELETE", "/v1/environments/"+env.ID, nil).json(t, 202, &del)
	if w := <-got; w.header.Get("X-Wait-Timeout") != "" || !strings.Contains(string(w.body), `"state":"deleting"`) {
		t.Fatalf("wait for deleting: %s", w.body)
	}

	// While deleting: further changes are illegal transitions.
	h.do("DELETE", "/v1/environments/"+env.ID, nil).problem(t, 409, "invalid-state", "")
	h.do("PATCH", "/v1/environments/"+env.ID, apiv1.EnvironmentPatch{Description: ptr("x")}).problem(t, 409, "invalid-state", "")
	close(gd.gate)
	_, r := h.wait(env.ID, "deleted")
	r.problem(t, 404, "not-found", "")
	h.do("GET", "/v1/environments/"+env.ID, nil).problem(t, 404, "not-found", "")
}

func TestEnvironment_TTLExpiryTearsDownAndIsAudited(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().UTC())
	h := newHarness(t, func(c *server.Config) { c.Clock = clock })
	p := h.project("payments")
	var env apiv1.Environment
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "short", TTLSeconds: ptr(int64(1))}).json(t, 202, &env)
	if env.ExpiresAt == nil || env.TTLSeconds == nil || *env.TTLSeconds != 1 {
		t.Fatalf("created: %+v", env)
	}
	h.wait(env.ID, "ready") // the pass that made it ready had armed its deadline
	outsider := h.apiToken("outsider", apiv1.RoleEditor, h.project("other").ID)
	clock.Advance(time.Second)
	// Gone because it expired, and saying so, to the wait that saw it go
	// and to every request about it after.
	_, r := h.wait(env.ID, "deleted")
	expired(t, r, env)
	expired(t, h.do("GET", "/v1/environments/"+env.ID, nil), env)
	expired(t, h.do("PATCH", "/v1/environments/"+env.ID, apiv1.EnvironmentPatch{TTLSeconds: ptr(int64(60))}), env)
	// A caller who could not read it learns nothing of it.
	h.do("GET", "/v1/environments/"+env.ID, nil, bearer(outsider.Secret)...).problem(t, 404, "not-found", "")
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=environment.expire&resource_id="+env.ID, nil).json(t, 200, &evs)
	if len(evs.Items) != 1 || evs.Items[0].Actor.Name != "isolationd" || evs.Items[0].ProjectID != p.ID {
		t.Fatalf("expire events: %+v", evs.Items)
	}
}

// expired checks that r is the 410 of env, expired by its TTL.
func expired(t *testing.T, r resp, env apiv1.Environment) {
	t.Helper()
	p := r.problem(t, 410, "gone", "")
	at := env.ExpiresAt.UTC().Format(time.RFC3339)
	if p.ExpiredAt == nil || !p.ExpiredAt.Equal(*env.ExpiresAt) || p.TTLSeconds == nil || *p.TTLSeconds != *env.TTLSeconds ||
		!strings.Contains(p.Detail, "expired at "+at+" (ttl_seconds 1)") {
		t.Fatalf("410 %+v, want it to say it expired at %s (ttl_seconds %d)", p, at, *env.TTLSeconds)
	}
}

func TestEnvironment_FailedProvisioningIsReportedAndAudited(t *testing.T) {
	// A /30 has two usable addresses: the third environment cannot get one.
	h := newHarness(t, func(c *server.Config) { c.AddressPool = "198.18.0.0/30" })
	p := h.project("payments")
	for _, n := range []string{"a", "b"} {
		e := h.environment(p.ID, n, nil)
		if got, _ := h.wait(e.ID, "ready"); got.State != apiv1.StateReady {
			t.Fatalf("%s: %+v", n, got)
		}
	}
	c := h.environment(p.ID, "c", nil)
	failed, _ := h.wait(c.ID, "ready")
	if failed.State != apiv1.StateFailed || !strings.Contains(failed.StateMessage, "address pool exhausted") {
		t.Fatalf("third environment: %+v", failed)
	}
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=environment.fail&outcome=failure", nil).json(t, 200, &evs)
	if len(evs.Items) != 1 || evs.Items[0].Resource.ID != c.ID || !strings.Contains(evs.Items[0].Reason, "exhausted") {
		t.Fatalf("fail events: %+v", evs.Items)
	}
	// Freeing an address and changing the failed environment retries it.
	h.do("DELETE", "/v1/environments/"+failed.ID, nil).json(t, 202, nil)
	h.wait(failed.ID, "deleted")
}

func TestPolicies_EffectivePolicyAndCheckAgreeAndFollowLabels(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	apiEnv := h.environment(p.ID, "api", map[string]string{"app": "api"})
	dbEnv := h.environment(p.ID, "db", map[string]string{"app": "db"})
	apiEnv, _ = h.wait(apiEnv.ID, "ready")
	dbEnv, _ = h.wait(dbEnv.ID, "ready")

	var pol apiv1.Policy
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: apiv1.PolicySpec{
		Name: "api-to-db", EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{"app": "api"}},
		PolicyTypes: []string{"egress"},
		Egress: []apiv1.EgressRule{
			{To: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"app": "db"}}}}, Ports: []apiv1.Port{{Port: ptr(5432)}}},
			{To: []apiv1.Peer{{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}}}, Ports: []apiv1.Port{{Port: ptr(443)}}},
		},
	}}).json(t, 201, &pol)
	apiEnv, _ = h.wait(apiEnv.ID, "enforced")
	if apiEnv.Enforcement.Generation < 2 {
		t.Fatalf("the policy did not re-enforce api: %+v", apiEnv.Enforcement)
	}

	var eff apiv1.EffectivePolicy
	h.do("GET", "/v1/environments/"+apiEnv.ID+"/effective-policy", nil).json(t, 200, &eff)
	if len(eff.Policies) != 1 || eff.Policies[0].ID != pol.ID || len(eff.Egress) != 2 ||
		len(eff.Egress[0].Peers[0].Environments) != 1 || eff.Egress[0].Peers[0].Environments[0].Address != dbEnv.Enforcement.Address {
		t.Fatalf("effective policy: %+v", eff)
	}
	check := func(addr string, port int) apiv1.CheckResult {
		var res apiv1.CheckResult
		h.do("POST", "/v1/environments/"+apiEnv.ID+"/check", apiv1.CheckRequest{Direction: "egress", Protocol: "tcp", Address: addr, Port: port}).json(t, 200, &res)
		return res
	}
	if res := check(dbEnv.Enforcement.Address, 5432); !res.Allowed || res.Matched.PolicyID != pol.ID || res.Matched.RuleIndex != 0 {
		t.Fatalf("api -> db:5432: %+v", res)
	}
	if res := check(dbEnv.Enforcement.Address, 5433); res.Allowed {
		t.Fatalf("api -> db:5433 allowed: %+v", res)
	}
	if res := check("203.0.113.7", 443); !res.Allowed || res.Matched.RuleIndex != 1 {
		t.Fatalf("api -> internet:443: %+v", res)
	}
	if res := check("10.1.2.3", 443); res.Allowed {
		t.Fatalf("api -> excepted 10/8 allowed: %+v", res)
	}
	var dbCheck apiv1.CheckResult
	h.do("POST", "/v1/environments/"+dbEnv.ID+"/check", apiv1.CheckRequest{Direction: "egress", Protocol: "tcp", Address: "203.0.113.7", Port: 443}).json(t, 200, &dbCheck)
	if dbCheck.Allowed {
		t.Fatal("db is not selected by the policy, yet its egress is allowed")
	}

	// Relabelling db takes it out of the peer selector: api is re-enforced.
	gen := apiEnv.Enforcement.Generation
	h.do("PATCH", "/v1/environments/"+dbEnv.ID, apiv1.EnvironmentPatch{Labels: &map[string]string{"app": "cache"}}).json(t, 200, nil)
	apiEnv, _ = h.wait(apiEnv.ID, "enforced")
	if apiEnv.Enforcement.Generation <= gen || apiEnv.Enforcement.ObservedGeneration != apiEnv.Enforcement.Generation {
		t.Fatalf("label change did not re-enforce api: %+v", apiEnv.Enforcement)
	}
	if res := check(dbEnv.Enforcement.Address, 5432); res.Allowed {
		t.Fatalf("api -> relabelled db still allowed: %+v", res)
	}

	// Policy update and delete re-enforce too.
	var upd apiv1.Policy
	h.do("PATCH", "/v1/policies/"+pol.ID, apiv1.PolicyPatch{Egress: &[]apiv1.EgressRule{{Ports: []apiv1.Port{{Protocol: "udp", Port: ptr(53)}}}}}, "If-Match", `"1"`).json(t, 200, &upd)
	h.wait(apiEnv.ID, "enforced")
	if res := check("203.0.113.7", 443); res.Allowed {
		t.Fatal("rule removed by PATCH still allows")
	}
	h.do("DELETE", "/v1/policies/"+pol.ID, nil, "If-Match", `"2"`).json(t, 204, nil)
	h.wait(apiEnv.ID, "enforced")
	h.do("GET", "/v1/environments/"+apiEnv.ID+"/effective-policy", nil).json(t, 200, &eff)
	if len(eff.Policies) != 0 || len(eff.Egress) != 0 {
		t.Fatalf("after delete: %+v", eff)
	}
}

// The environment cannot become ready while the driver holds Provision,
// so the waiter is necessarily blocked when the gate opens: its answer
// comes from the notify hub waking it.
func TestWait_IsAnsweredPromptlyAfterTheChangeAndCheckBeforeProvisioningConflicts(t *testing.T) {
	gd := &gatedProvision{Driver: simulate.New(), gate: make(chan struct{})}
	h := newHarness(t, func(c *server.Config) { c.EnforceDriver = gd })
	p := h.project("payments")
	e := h.environment(p.ID, "api", nil)
	type answer struct {
		at time.Time
		r  resp
	}
	got := make(chan answer, 1)
	go func() {
		r := h.do("GET", "/v1/environments/"+e.ID+"?wait_for=ready&timeout=30s", nil)
		got <- answer{time.Now(), r}
	}()
	h.do("POST", "/v1/environments/"+e.ID+"/check", apiv1.CheckRequest{Direction: "ingress", Address: "10.0.0.1", Port: 22}).problem(t, 409, "invalid-state", "")
	select {
	case a := <-got:
		t.Fatalf("the wait answered before the environment could be ready: %s", a.r.body)
	default:
	}
	opened := time.Now()
	close(gd.gate)
	a := <-got
	if a.r.header.Get("X-Wait-Timeout") != "" || !strings.Contains(string(a.r.body), `"state":"ready"`) {
		t.Fatalf("wait: %s", a.r.body)
	}
	// Generous bound for a loaded CI machine; a polling waiter would not
	// explain a miss here, only a lost wake-up would.
	if lag := a.at.Sub(opened); lag > 2*time.Second {
		t.Fatalf("the waiter answered %s after the change", lag)
	}
	t.Logf("wait answered %s after the driver was released", a.at.Sub(opened))
}

type gatedProvision struct {
	*simulate.Driver
	gate chan struct{}
}

func (g *gatedProvision) Provision(ctx context.Context, id, addr string) (enforce.Endpoint, error) {
	<-g.gate
	return g.Driver.Provision(ctx, id, addr)
}

func TestLists_PaginateAndFilter(t *testing.T) {
	h := newHarness(t)
	p1, p2 := h.project("one"), h.project("two")
	for i := range 5 {
		tier := "dev"
		if i%2 == 1 {
			tier = "prod"
		}
		h.environment(p1.ID, fmt.Sprintf("e%d", i), map[string]string{"team": "pay", "tier": tier})
	}
	h.environment(p2.ID, "other", map[string]string{"team": "pay", "tier": "dev"})

	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		var page apiv1.List[apiv1.Environment]
		h.do("GET", "/v1/environments?limit=2&project_id="+p1.ID+"&cursor="+cursor, nil).json(t, 200, &page)
		pages++
		for _, e := range page.Items {
			if seen[e.ID] || e.ProjectID != p1.ID {
				t.Fatalf("page %d repeats or leaks %s", pages, e.ID)
			}
			seen[e.ID] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != 5 || pages != 3 {
		t.Fatalf("%d environments over %d pages, want 5 over 3", len(seen), pages)
	}
	var l apiv1.List[apiv1.Environment]
	h.do("GET", "/v1/environments?label=team=pay,tier=dev", nil).json(t, 200, &l)
	if len(l.Items) != 4 {
		t.Fatalf("label filter: %d items, want 4", len(l.Items))
	}
	h.do("GET", "/v1/environments?state=deleting", nil).json(t, 200, &l)
	if len(l.Items) != 0 {
		t.Fatalf("state filter: %d", len(l.Items))
	}
	var pl apiv1.List[apiv1.Project]
	h.do("GET", "/v1/projects?limit=1", nil).json(t, 200, &pl)
	if len(pl.Items) != 1 || pl.NextCursor == "" {
		t.Fatalf("projects page: %+v", pl)
	}
}

func TestLegacyEndpoints_WorkOnTheV1Model(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	var created api.LegacyCreated
	h.do("POST", "/environments/create", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "legacy"}).json(t, 202, &created)
	if created.ID == "" || created.Status.State != apiv1.StatePending {
		t.Fatalf("legacy create: %+v", created)
	}
	h.wait(created.ID, "ready")
	var env apiv1.Environment
	h.do("PUT", "/environments/"+created.ID+"/configure", apiv1.EnvironmentConfigure{
		Labels: &map[string]string{"app": "legacy"},
		Policy: &apiv1.ConfigurePolicy{Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{CIDR: "192.0.2.0/24"}}, Ports: []apiv1.Port{{Port: ptr(22)}}}}},
	}).json(t, 200, &env)
	if env.Labels["app"] != "legacy" || env.Generation != 2 {
		t.Fatalf("configured: %+v", env)
	}
	h.wait(created.ID, "enforced")
	var pols apiv1.List[apiv1.Policy]
	h.do("GET", "/v1/policies?project_id="+p.ID, nil).json(t, 200, &pols)
	if len(pols.Items) != 1 || pols.Items[0].OwnerEnvironmentID != created.ID {
		t.Fatalf("owned policy: %+v", pols.Items)
	}
	h.do("PATCH", "/v1/policies/"+pols.Items[0].ID, apiv1.PolicyPatch{Description: ptr("x")}).problem(t, 409, "conflict", "")
	var res apiv1.CheckResult
	h.do("POST", "/v1/environments/"+created.ID+"/check", apiv1.CheckRequest{Direction: "ingress", Address: "192.0.2.9", Port: 22}).json(t, 200, &res)
	if !res.Allowed {
		t.Fatalf("configured rule does not allow: %+v", res)
	}
	var st apiv1.EnvironmentStatus
	h.do("GET", "/environments/"+created.ID+"/status", nil).json(t, 200, &st)
	if st.ID != created.ID || st.State != apiv1.StateReady {
		t.Fatalf("legacy status: %+v", st)
	}
	h.do("DELETE", "/environments/"+created.ID, nil).json(t, 202, nil)
	h.wait(created.ID, "deleted")
	h.do("GET", "/v1/policies?project_id="+p.ID, nil).json(t, 200, &pols)
	if len(pols.Items) != 0 {
		t.Fatalf("owned policy outlived its environment: %+v", pols.Items)
	}
}

func TestRateLimit_AnswersTooManyRequestsWithRetryAfter(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().UTC().Truncate(time.Minute))
	h := newHarness(t, func(c *server.Config) { c.RateLimit = 0.5; c.RateBurst = 2; c.Clock = clock })
	h.do("GET", "/v1/projects", nil).json(t, 200, nil)
	h.do("GET", "/v1/projects", nil).json(t, 200, nil)
	r := h.do("GET", "/v1/projects", nil)
	r.problem(t, 429, "rate-limited", "")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	// The bucket refills on the server's clock: one request every 2 s.
	clock.Advance(2 * time.Second)
	h.do("GET", "/v1/projects", nil).json(t, 200, nil)
}

func TestOperations_HealthReadinessMetricsAndOpenAPI(t *testing.T) {
	h := newHarness(t)
	h.do("GET", "/healthz", nil, "Authorization", "").json(t, 200, nil)
	h.do("GET", "/readyz", nil, "Authorization", "").json(t, 200, nil)
	p := h.project("payments")
	h.wait(h.environment(p.ID, "api", nil).ID, "ready")
	r := h.do("GET", "/metrics", nil)
	for _, series := range []string{
		`isolationd_http_requests_total{code="201",route="POST /v1/projects"} 1`,
		`isolationd_environments{state="ready"} 1`,
		`isolationd_reconcile_duration_seconds_count`,
		`isolationd_http_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(string(r.body), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	var doc map[string]any
	h.do("GET", "/v1/openapi.json", nil).json(t, 200, &doc)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi version %v", doc["openapi"])
	}
}

func TestWatch_StreamsEveryChangeAsServerSentEvents(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	e := h.environment(p.ID, "api", nil)
	h.wait(e.ID, "ready")
	req, _ := http.NewRequest("GET", h.url+"/v1/environments/"+e.ID+"/watch", nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("Content-Type %q", res.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		buf := make([]byte, 64<<10)
		var acc strings.Builder
		for {
			n, err := res.Body.Read(buf)
			acc.Write(buf[:n])
			for {
				s := acc.String()
				i := strings.Index(s, "\n\n")
				if i < 0 {
					break
				}
				events <- s[:i]
				acc.Reset()
				acc.WriteString(s[i+2:])
			}
			if err != nil {
				close(events)
				return
			}
		}
	}()
	next := func() string {
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return ""
	}
	if ev := next(); !strings.Contains(ev, "event: environment") || !strings.Contains(ev, `"state":"ready"`) {
		t.Fatalf("first event: %s", ev)
	}
	h.do("DELETE", "/v1/environments/"+e.ID, nil).json(t, 202, nil)
	for {
		ev := next()
		if strings.HasPrefix(ev, "event: deleted") {
			break
		}
		if !strings.Contains(ev, "event: environment") {
			t.Fatalf("unexpected event %s", ev)
		}
	}
}

func TestAuditTrail_RecordsChangesAndFilters(t *testing.T) {
	var sink logbuf.Buffer
	h := newHarness(t, func(c *server.Config) { c.AuditLog = &sink })
	p := h.project("payments")
	h.do("PATCH", "/v1/projects/"+p.ID, apiv1.ProjectPatch{Description: ptr("d")}).json(t, 200, nil)
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?resource_type=project&project_id="+p.ID, nil).json(t, 200, &evs)
	if len(evs.Items) != 2 || evs.Items[0].Action != "project.create" || evs.Items[1].Action != "project.update" {
		t.Fatalf("project events: %+v", evs.Items)
	}
	upd := evs.Items[1]
	if upd.Changes == nil || upd.Changes.Before == nil || upd.Changes.After == nil || upd.PrevHash != evs.Items[0].Hash || upd.StatusCode != 200 {
		t.Fatalf("update event: %+v", upd)
	}
	var page apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?limit=1", nil).json(t, 200, &page)
	if len(page.Items) != 1 || page.NextCursor == "" {
		t.Fatalf("audit page: %+v", page)
	}
	h.do("GET", "/v1/audit-events?limit=1&cursor="+page.NextCursor, nil).json(t, 200, &page)
	if page.Items[0].Seq != 2 {
		t.Fatalf("second page starts at seq %d", page.Items[0].Seq)
	}
	// The JSON-lines sink got every committed event, in order.
	lines := strings.Split(strings.TrimSpace(sink.String()), "\n")
	var last apiv1.AuditEvent
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || len(lines) < 3 {
		t.Fatalf("sink: %d lines, last %q: %v", len(lines), lines[len(lines)-1], err)
	}
	for _, l := range lines {
		if strings.Contains(l, h.token) {
			t.Fatal("a token secret reached the audit sink")
		}
	}
}

func TestEnvironments_APatchReplacesTheWorkloadWholeAndNullRemovesIt(t *testing.T) {
	h := newHarness(t)
	p := h.project("work")
	env := h.environment(p.ID, "app", nil)
	h.wait(env.ID, "ready")
	var got apiv1.Environment
	h.do("PATCH", "/v1/environments/"+env.ID, `{"workload":{"image":"busybox","command":["sh"],"env":{"GREETING":"hi"}}}`).json(t, 200, &got)
	if w := got.Workload; w == nil || w.Image != "busybox" || len(w.Command) != 1 || w.Env["GREETING"] != "hi" || w.Restart != apiv1.RestartAlways {
		t.Fatalf("workload after PATCH = %+v, want the spec sent, normalized", w)
	}
	h.wait(env.ID, "ready")
	var removed apiv1.Environment
	h.do("PATCH", "/v1/environments/"+env.ID, `{"workload":null}`).json(t, 200, &removed)
	if removed.Workload != nil {
		t.Fatalf("workload after PATCH null = %+v, want none", removed.Workload)
	}
}
