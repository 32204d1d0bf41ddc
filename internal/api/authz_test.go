package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// The authorization matrix: every route of api.Routes() crossed with every
// kind of caller, each cell's expected status computed from authzRules
// below, which is written independently of internal/auth. A route without
// a rule fails the test, so a route added later must say who may call it.

// caller is a column of the matrix.
type caller string

const (
	noToken      caller = "no token"
	badToken     caller = "bad token"
	expiredToken caller = "expired token"
	revokedToken caller = "revoked token"
	admin        caller = "admin"
	auditor      caller = "auditor"
	editorHere   caller = "editor of this project"
	editorOther  caller = "editor of another project"
	viewerHere   caller = "viewer of this project"
	viewerOther  caller = "viewer of another project"
)

var callers = []caller{noToken, badToken, expiredToken, revokedToken, admin, auditor, editorHere, editorOther, viewerHere, viewerOther}

// authzRule says who may call a route.
type authzRule struct {
	// need is the least role the route requires: admin, auditor (reads of
	// everything, the audit log), editor (writes in a project) or viewer
	// (reads in a project); "" for public routes.
	need string
	// scoped: the route acts on an object of one project (named by the path
	// or the body), so tokens of another project get 404, not 403.
	scoped bool
	// status is the answer when the call is allowed.
	status int
	// own: the route answers about the caller's own requests only; the
	// target is the admin's, so to every other caller it is a 404, as if
	// it did not exist, and that 404 is not a denial.
	own bool
	// target makes what the request acts on (fresh objects for requests
	// that change or remove them) and returns the request.
	target func(f *matrixFixtures) matrixRequest
}

// matrixRequest is one cell's request. home is "this project" for the
// project-scoped callers.
type matrixRequest struct {
	path string
	body any
	home string
}

// roleMay is the rule of the issue, restated: admin may do everything;
// the auditor reads everything; an editor writes in its project and reads
// it; a viewer reads its project.
func roleMay(role, need string) bool {
	switch need {
	case apiv1.RoleAdmin:
		return role == apiv1.RoleAdmin
	case apiv1.RoleAuditor:
		return role == apiv1.RoleAdmin || role == apiv1.RoleAuditor
	case apiv1.RoleEditor:
		return role == apiv1.RoleAdmin || role == apiv1.RoleEditor
	case apiv1.RoleViewer:
		return true
	}
	panic("unknown role " + need)
}

// expect computes a cell.
func (r authzRule) expect(c caller) int {
	if r.need == "" {
		return r.status
	}
	var role string
	switch c {
	case noToken, badToken, expiredToken, revokedToken:
		return http.StatusUnauthorized
	case admin:
		role = apiv1.RoleAdmin
	case auditor:
		role = apiv1.RoleAuditor
	case editorHere, editorOther:
		role = apiv1.RoleEditor
	case viewerHere, viewerOther:
		role = apiv1.RoleViewer
	}
	if r.scoped && (c == editorOther || c == viewerOther) {
		return http.StatusNotFound
	}
	if r.own && c != admin {
		return http.StatusNotFound
	}
	if !roleMay(role, r.need) {
		return http.StatusForbidden
	}
	return r.status
}

var authzRules = map[string]authzRule{
	"GET /healthz":         {need: "", status: 200, target: fixed("/healthz")},
	"GET /readyz":          {need: "", status: 200, target: fixed("/readyz")},
	"GET /metrics":         {need: apiv1.RoleAuditor, status: 200, target: fixed("/metrics")},
	"GET /v1/openapi.json": {need: "", status: 200, target: fixed("/v1/openapi.json")},
	"GET /v1/idempotency-keys/{key}": {need: apiv1.RoleViewer, own: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/idempotency-keys/"+f.adminKey, nil)
	}},
	"GET /v1/whoami":       {need: apiv1.RoleViewer, status: 200, target: fixed("/v1/whoami")},
	"GET /v1/audit-events": {need: apiv1.RoleAuditor, status: 200, target: fixed("/v1/audit-events?limit=5")},
	"GET /v1/projects":     {need: apiv1.RoleViewer, status: 200, target: fixed("/v1/projects")},
	"GET /v1/environments": {need: apiv1.RoleViewer, status: 200, target: fixed("/v1/environments")},
	"GET /v1/policies":     {need: apiv1.RoleViewer, status: 200, target: fixed("/v1/policies")},
	"GET /v1/tokens":       {need: apiv1.RoleAuditor, status: 200, target: fixed("/v1/tokens")},
	"POST /v1/projects": {need: apiv1.RoleAdmin, status: 201, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/projects", apiv1.ProjectCreate{Name: f.name("prj")})
	}},
	"GET /v1/projects/{id}": {need: apiv1.RoleViewer, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest { return f.req("/v1/projects/"+f.a.ID, nil) }},
	"PATCH /v1/projects/{id}": {need: apiv1.RoleAdmin, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/projects/"+f.a.ID, apiv1.ProjectPatch{Description: ptr(f.name("d"))})
	}},
	"DELETE /v1/projects/{id}": {need: apiv1.RoleAdmin, scoped: true, status: 204, target: func(f *matrixFixtures) matrixRequest {
		// Only an empty project can go, so each cell gets its own, with
		// its own editor and viewer.
		p := f.h.project(f.name("empty"))
		return matrixRequest{path: "/v1/projects/" + p.ID, home: p.ID}
	}},

	"POST /v1/environments": {need: apiv1.RoleEditor, scoped: true, status: 202, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/environments", apiv1.EnvironmentCreate{ProjectID: f.a.ID, Name: f.name("env")})
	}},
	"POST /environments/create": {need: apiv1.RoleEditor, scoped: true, status: 202, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/environments/create", apiv1.EnvironmentCreate{ProjectID: f.a.ID, Name: f.name("env")})
	}},
	"GET /v1/environments/{id}":                  {need: apiv1.RoleViewer, scoped: true, status: 200, target: sharedEnv("/v1/environments/%s")},
	"GET /v1/environments/{id}/status":           {need: apiv1.RoleViewer, scoped: true, status: 200, target: sharedEnv("/v1/environments/%s/status")},
	"GET /environments/{id}/status":              {need: apiv1.RoleViewer, scoped: true, status: 200, target: sharedEnv("/environments/%s/status")},
	"GET /v1/environments/{id}/watch":            {need: apiv1.RoleViewer, scoped: true, status: 200, target: sharedEnv("/v1/environments/%s/watch")},
	"GET /v1/environments/{id}/logs":             {need: apiv1.RoleViewer, scoped: true, status: 200, target: sharedEnv("/v1/environments/%s/logs")},
	"GET /v1/environments/{id}/effective-policy": {need: apiv1.RoleViewer, scoped: true, status: 200, target: sharedEnv("/v1/environments/%s/effective-policy")},
	// check is a POST, but it only reads: viewers may.
	"POST /v1/environments/{id}/check": {need: apiv1.RoleViewer, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/environments/"+f.env.ID+"/check", apiv1.CheckRequest{Direction: "egress", Protocol: "tcp", Address: "203.0.113.9", Port: 443})
	}},
	"PATCH /v1/environments/{id}": {need: apiv1.RoleEditor, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/environments/"+f.freshEnv().ID, apiv1.EnvironmentPatch{Description: ptr("changed")})
	}},
	"PUT /environments/{id}/configure": {need: apiv1.RoleEditor, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/environments/"+f.freshEnv().ID+"/configure", apiv1.EnvironmentConfigure{Description: ptr("changed")})
	}},
	"DELETE /v1/environments/{id}": {need: apiv1.RoleEditor, scoped: true, status: 202, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/environments/"+f.freshEnv().ID, nil)
	}},
	"DELETE /environments/{id}": {need: apiv1.RoleEditor, scoped: true, status: 202, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/environments/"+f.freshEnv().ID, nil)
	}},

	"POST /v1/policies": {need: apiv1.RoleEditor, scoped: true, status: 201, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/policies", f.policyBody(f.name("pol")))
	}},
	"GET /v1/policies/{id}": {need: apiv1.RoleViewer, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest { return f.req("/v1/policies/"+f.policy.ID, nil) }},
	"PATCH /v1/policies/{id}": {need: apiv1.RoleEditor, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/policies/"+f.freshPolicy().ID, apiv1.PolicyPatch{Description: ptr("changed")})
	}},
	"DELETE /v1/policies/{id}": {need: apiv1.RoleEditor, scoped: true, status: 204, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/policies/"+f.freshPolicy().ID, nil)
	}},

	"POST /v1/tokens": {need: apiv1.RoleAdmin, scoped: true, status: 201, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/tokens", apiv1.TokenCreate{Name: f.name("tok"), Role: apiv1.RoleViewer, ProjectID: f.a.ID})
	}},
	"GET /v1/tokens/{id}": {need: apiv1.RoleAuditor, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest { return f.req("/v1/tokens/"+f.token.ID, nil) }},
	"DELETE /v1/tokens/{id}": {need: apiv1.RoleAdmin, scoped: true, status: 204, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/tokens/"+f.newToken(f.name("tok"), apiv1.RoleViewer, f.a.ID).ID, nil)
	}},
}

func fixed(path string) func(*matrixFixtures) matrixRequest {
	return func(f *matrixFixtures) matrixRequest { return f.req(path, nil) }
}

func sharedEnv(format string) func(*matrixFixtures) matrixRequest {
	return func(f *matrixFixtures) matrixRequest { return f.req(fmt.Sprintf(format, f.env.ID), nil) }
}

// matrixFixtures are the objects the cells act on: project a ("this
// project") with a ready environment, a policy and a token; project b
// ("another project"); and a token for every caller.
type matrixFixtures struct {
	h      *harness
	a, b   apiv1.Project
	env    apiv1.Environment
	policy apiv1.Policy
	token  apiv1.Token
	// adminKey is the Idempotency-Key of a create the admin made.
	adminKey string
	n        int
	// secrets of project-scoped callers by role and project, made on demand.
	scoped  map[string]apiv1.TokenCreated
	secrets map[caller]string
	ids     map[caller]string
}

func (f *matrixFixtures) name(prefix string) string {
	f.n++
	return fmt.Sprintf("%s-%d", prefix, f.n)
}

func (f *matrixFixtures) req(path string, body any) matrixRequest {
	return matrixRequest{path: path, body: body, home: f.a.ID}
}

func (f *matrixFixtures) newToken(name, role, projectID string) apiv1.TokenCreated {
	f.h.t.Helper()
	var tc apiv1.TokenCreated
	f.h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: name, Role: role, ProjectID: projectID}).json(f.h.t, 201, &tc)
	return tc
}

// scopedToken is the token of role for project, made once.
func (f *matrixFixtures) scopedToken(role, project string) apiv1.TokenCreated {
	k := role + "/" + project
	if tc, ok := f.scoped[k]; ok {
		return tc
	}
	tc := f.newToken(f.name(role), role, project)
	f.scoped[k] = tc
	return tc
}

func (f *matrixFixtures) freshEnv() apiv1.Environment {
	return f.h.environment(f.a.ID, f.name("env"), nil)
}

func (f *matrixFixtures) policyBody(name string) apiv1.PolicyCreate {
	return apiv1.PolicyCreate{ProjectID: f.a.ID, PolicySpec: apiv1.PolicySpec{
		Name: name, PolicyTypes: []string{"egress"},
		Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{CIDR: "0.0.0.0/0"}}, Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(443)}}}},
	}}
}

func (f *matrixFixtures) freshPolicy() apiv1.Policy {
	f.h.t.Helper()
	var p apiv1.Policy
	f.h.do("POST", "/v1/policies", f.policyBody(f.name("pol"))).json(f.h.t, 201, &p)
	return p
}

func newMatrixFixtures(t *testing.T, h *harness) *matrixFixtures {
	f := &matrixFixtures{h: h, scoped: map[string]apiv1.TokenCreated{}, secrets: map[caller]string{}, ids: map[caller]string{}}
	f.a, f.b = h.project("this"), h.project("other")
	f.env = h.environment(f.a.ID, "shared", nil)
	f.env, _ = h.wait(f.env.ID, "ready")
	f.policy = f.freshPolicy()
	f.token = f.newToken("shared", apiv1.RoleViewer, f.a.ID).Token
	f.adminKey = "matrix-admin-key"
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: f.name("keyed")}, apiv1.HeaderIdempotencyKey, f.adminKey).json(t, 201, nil)

	f.secrets[admin] = h.token
	aud := f.newToken("auditor", apiv1.RoleAuditor, "")
	f.secrets[auditor], f.ids[auditor] = aud.Secret, aud.ID
	f.secrets[badToken] = auth.SecretPrefix + "not-a-token-anyone-was-given"

	revoked := f.newToken("revoked", apiv1.RoleAdmin, "")
	h.do("DELETE", "/v1/tokens/"+revoked.ID, nil).json(t, 204, nil)
	f.secrets[revokedToken] = revoked.Secret

	// An expired token cannot be made through the API (expires_at must be
	// in the future), so it goes into the store directly, already expired.
	secret, err := auth.NewSecret()
	must(t, err)
	past := time.Now().Add(-time.Minute).UTC()
	must(t, h.srv.Store().Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateToken(context.Background(), store.TokenRecord{
			Token: apiv1.Token{ID: "tok_expired", Name: "expired", Role: apiv1.RoleAdmin, CreatedAt: past.Add(-time.Hour), ExpiresAt: &past, ETag: `"1"`},
			Hash:  auth.HashSecret(secret),
		})
	}))
	f.secrets[expiredToken] = secret
	return f
}

// callerToken is the secret (and token id) a caller sends for a request
// whose "this project" is home.
func (f *matrixFixtures) callerToken(c caller, home string) (secret, id string) {
	switch c {
	case editorHere:
		tc := f.scopedToken(apiv1.RoleEditor, home)
		return tc.Secret, tc.ID
	case viewerHere:
		tc := f.scopedToken(apiv1.RoleViewer, home)
		return tc.Secret, tc.ID
	case editorOther:
		tc := f.scopedToken(apiv1.RoleEditor, f.b.ID)
		return tc.Secret, tc.ID
	case viewerOther:
		tc := f.scopedToken(apiv1.RoleViewer, f.b.ID)
		return tc.Secret, tc.ID
	}
	return f.secrets[c], f.ids[c]
}

func TestAuthz_MatrixOfEveryRouteAndEveryKindOfCaller(t *testing.T) {
	h := newHarness(t, withLogs(t.TempDir()))
	f := newMatrixFixtures(t, h)

	seen := map[string]bool{}
	type cell struct {
		route, caller, requestID, tokenID string
		want                              int
	}
	var cells []cell
	for _, rt := range api.Routes() {
		key := rt.Method + " " + rt.Pattern
		seen[key] = true
		rule, ok := authzRules[key]
		if !ok {
			t.Errorf("route %s has no rule in authzRules: say who may call it", key)
			continue
		}
		if (rule.need == "") != rt.Perm.Public {
			t.Errorf("route %s: the rule says public=%v, the route table %v", key, rule.need == "", rt.Perm.Public)
		}
		for _, c := range callers {
			req := rule.target(f)
			secret, tokenID := f.callerToken(c, req.home)
			rid := fmt.Sprintf("authz-%d", len(cells))
			want := rule.expect(c)
			got := matrixSend(t, h, rt.Method, req.path, req.body, secret, rid)
			cells = append(cells, cell{key, string(c), rid, tokenID, want})
			if got.status != want {
				t.Errorf("%s %s as %s: %d, want %d; body %s", rt.Method, req.path, c, got.status, want, got.body)
				continue
			}
			switch want {
			case http.StatusForbidden:
				p := got.problem(t, 403, "forbidden", "")
				if !strings.Contains(p.Detail, "requires role "+rule.need) {
					t.Errorf("%s as %s: 403 detail %q does not name the role needed (%s)", key, c, p.Detail, rule.need)
				}
			case http.StatusNotFound:
				p := got.problem(t, 404, "not-found", "")
				if strings.Contains(p.Detail, "scope") || strings.Contains(p.Detail, "role") {
					t.Errorf("%s as %s: the 404 says why (%q): existence leaks", key, c, p.Detail)
				}
			case http.StatusUnauthorized:
				got.problem(t, 401, "unauthorized", "")
			}
		}
	}
	for key := range authzRules {
		if !seen[key] {
			t.Errorf("authzRules has a rule for %s, which is not a route", key)
		}
	}

	// Every denial, and nothing else, is on the audit trail with the
	// request's id, the actor and a reason: the first of its kind (source,
	// token, status, reason) in a minute alone, the others counted in an
	// aggregate event of that kind.
	h.flushDenials()
	type kind struct {
		tokenID string
		status  int
	}
	denials := map[string]apiv1.AuditEvent{}
	aggregated := map[kind]int{}
	var cursor int64
	for {
		evs, next, err := h.srv.Store().ListAudit(context.Background(), store.AuditQuery{Outcome: apiv1.OutcomeDenied, AfterSeq: cursor, Limit: store.MaxLimit})
		must(t, err)
		for _, ev := range evs {
			switch ev.Action {
			case "auth.denied":
				if _, dup := denials[ev.RequestID]; dup {
					t.Errorf("request %s has two denial events", ev.RequestID)
				}
				denials[ev.RequestID] = ev
			case "auth.denied" + api.AggregateSuffix:
				if ev.Reason == "" || aggregateCount(ev) < 1 {
					t.Errorf("aggregate event %+v", ev)
				}
				aggregated[kind{ev.Actor.TokenID, ev.StatusCode}] += aggregateCount(ev)
			}
		}
		if next == "" {
			break
		}
		if _, err := fmt.Sscan(next, &cursor); err != nil {
			t.Fatalf("next cursor %q: %v", next, err)
		}
	}
	counted := map[kind]int{}
	for _, c := range cells {
		ev, denied := denials[c.requestID]
		wantDenied := c.want == 401 || c.want == 403 || (c.want == 404 && c.caller != string(admin) && !authzRules[c.route].own)
		if wantDenied && !denied {
			actor := c.tokenID
			if c.want == 401 {
				actor = ""
			}
			counted[kind{actor, c.want}]++
			continue
		}
		switch {
		case denied != wantDenied:
			t.Errorf("%s as %s (%d): audited denial %v, want %v", c.route, c.caller, c.want, denied, wantDenied)
		case denied && (ev.Outcome != apiv1.OutcomeDenied || ev.StatusCode != c.want || ev.Reason == ""):
			t.Errorf("%s as %s: denial event %+v", c.route, c.caller, ev)
		case denied && c.want != 401 && ev.Actor.TokenID != c.tokenID:
			t.Errorf("%s as %s: denial names actor %+v, want token %s", c.route, c.caller, ev.Actor, c.tokenID)
		}
	}
	if diff := cmp.Diff(counted, aggregated); diff != "" {
		t.Errorf("denials without an event of their own are not what the aggregates count (-want +got):\n%s", diff)
	}
	t.Logf("%d cells over %d routes", len(cells), len(seen))
}

// matrixSend sends one cell's request with secret ("" for none). An
// event stream is answered by its headers and closed at once.
func matrixSend(t *testing.T, h *harness, method, path string, body any, secret, requestID string) resp {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		raw, err = json.Marshal(body)
		must(t, err)
	}
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(raw))
	must(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	req.Header.Set(apiv1.HeaderRequestID, requestID)
	res, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return resp{status: res.StatusCode, header: res.Header}
	}
	out, err := io.ReadAll(res.Body)
	must(t, err)
	r := resp{status: res.StatusCode, header: res.Header, body: out}
	validateAgainstOpenAPI(t, req, raw, r)
	return r
}
