package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	// Exec: the developer role, the developer grant, and session tokens,
	// of the environment the request is about (or, for a request about
	// none, of an environment of this project) and of another
	// environment of this project.
	developerHere  caller = "developer of this project"
	developerOther caller = "developer of another project"
	editorDev      caller = "editor of this project granted developer"
	viewerDev      caller = "viewer of this project granted developer"
	sessionHere    caller = "session token of this environment"
	sessionOther   caller = "session token of another environment"
)

var callers = []caller{noToken, badToken, expiredToken, revokedToken, admin, auditor, editorHere, editorOther, viewerHere, viewerOther,
	developerHere, developerOther, editorDev, viewerDev, sessionHere, sessionOther}

// What a route needs beyond the roles: who reads environments, who
// execs, who mints session tokens, and what any token may ask.
const (
	// needEnvRead: the reads of environments, which viewers and the
	// roles above them make, and developers too.
	needEnvRead = "environment reader"
	// needExec: exec, which admins, developers and the tokens granted
	// developer may, and a session token in its own environment.
	needExec = "exec"
	// needMint: minting and revoking session tokens, which whoever may
	// exec may, except a session token.
	needMint = "mint"
	// needAny: what a token asks about itself.
	needAny = "any token"
)

// authzRule says who may call a route.
type authzRule struct {
	// need is what the route requires: the least role (admin, auditor
	// for reads of everything and the audit log, editor for writes in a
	// project, viewer for reads in a project) or one of the needs above;
	// "" for public routes.
	need string
	// scoped: the route acts on an object of one project (named by the path
	// or the body), so tokens of another project get 404, not 403.
	scoped bool
	// env: the path names an environment, so a session token of another
	// environment gets 404, not 403.
	env bool
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
// project-scoped callers, env "this environment" for the session tokens
// ("" when the request is about no environment).
type matrixRequest struct {
	path string
	body any
	home string
	env  string
}

// may is the rule of the issues, restated: admin may do everything; the
// auditor reads everything; an editor writes in its project and reads
// it; a viewer reads its project; a developer reads its project's
// environments and execs into them, and nothing else; editor, viewer
// and auditor tokens granted developer exec too; a session token execs
// into its environment and does nothing else. Every token asks about
// itself.
func may(c caller, need string) bool {
	readsEnvs := need == needEnvRead || need == needAny
	reads := need == apiv1.RoleViewer || readsEnvs
	execs := need == needExec || need == needMint
	switch c {
	case admin:
		return true
	case auditor:
		return need == apiv1.RoleAuditor || reads
	case editorHere, editorOther:
		return need == apiv1.RoleEditor || reads
	case editorDev:
		return need == apiv1.RoleEditor || reads || execs
	case viewerHere, viewerOther:
		return reads
	case viewerDev:
		return reads || execs
	case developerHere, developerOther:
		return readsEnvs || execs
	case sessionHere, sessionOther:
		return need == needAny || need == needExec
	}
	panic("unknown caller " + string(c))
}

// neededRole is the role a 403 names for need.
func neededRole(need string) string {
	switch need {
	case needEnvRead:
		return apiv1.RoleViewer
	case needExec, needMint:
		return apiv1.RoleDeveloper
	}
	return need
}

// expect computes a cell. this is "this project", where the session
// tokens' environments are.
func (r authzRule) expect(c caller, req matrixRequest, this string) int {
	if r.need == "" {
		return r.status
	}
	session := c == sessionHere || c == sessionOther
	switch {
	case c == noToken, c == badToken, c == expiredToken, c == revokedToken:
		return http.StatusUnauthorized
	case r.scoped && (c == editorOther || c == viewerOther || c == developerOther):
		return http.StatusNotFound
	case r.scoped && session && req.home != this:
		return http.StatusNotFound
	case r.env && c == sessionOther:
		return http.StatusNotFound
	case r.own && c != admin:
		return http.StatusNotFound
	case !may(c, r.need):
		return http.StatusForbidden
	}
	return r.status
}

var authzRules = map[string]authzRule{
	"GET /healthz":         {need: "", status: 200, target: fixed("/healthz")},
	"GET /readyz":          {need: "", status: 200, target: fixed("/readyz")},
	"GET /metrics":         {need: apiv1.RoleAuditor, status: 200, target: fixed("/metrics")},
	"GET /v1/openapi.json": {need: "", status: 200, target: fixed("/v1/openapi.json")},
	"GET /v1/idempotency-keys/{key}": {need: needAny, own: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/idempotency-keys/"+f.adminKey, nil)
	}},
	"GET /v1/whoami": {need: needAny, status: 200, target: fixed("/v1/whoami")},
	// Signing in opens a console session of the caller's token; signing
	// out with a bearer token has no session to end and does nothing.
	"POST /v1/ui/sessions":           {need: needAny, status: 201, target: fixed("/v1/ui/sessions")},
	"DELETE /v1/ui/sessions/current": {need: needAny, status: 204, target: fixed("/v1/ui/sessions/current")},
	"GET /v1/environments/watch":     {need: needEnvRead, status: 200, target: fixed("/v1/environments/watch")},
	"GET /v1/audit-events/verify":    {need: apiv1.RoleAuditor, status: 200, target: fixed("/v1/audit-events/verify")},
	"GET /v1/audit-events":           {need: apiv1.RoleAuditor, status: 200, target: fixed("/v1/audit-events?limit=5")},
	"GET /v1/projects":               {need: apiv1.RoleViewer, status: 200, target: fixed("/v1/projects")},
	"GET /v1/environments":           {need: needEnvRead, status: 200, target: fixed("/v1/environments")},
	"GET /v1/policies":               {need: apiv1.RoleViewer, status: 200, target: fixed("/v1/policies")},
	"GET /v1/tokens":                 {need: apiv1.RoleAuditor, status: 200, target: fixed("/v1/tokens")},
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
	"DELETE /v1/projects/{id}/contents": {need: apiv1.RoleAdmin, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		// Who may delete a project may empty it: each cell empties its own.
		p := f.h.project(f.name("emptied"))
		f.h.environment(p.ID, "doomed", nil)
		return matrixRequest{path: "/v1/projects/" + p.ID + "/contents", home: p.ID}
	}},

	"POST /v1/environments": {need: apiv1.RoleEditor, scoped: true, status: 202, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/environments", apiv1.EnvironmentCreate{ProjectID: f.a.ID, Name: f.name("env")})
	}},
	"POST /environments/create": {need: apiv1.RoleEditor, scoped: true, status: 202, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/environments/create", apiv1.EnvironmentCreate{ProjectID: f.a.ID, Name: f.name("env")})
	}},
	"GET /v1/environments/{id}":                  {need: needEnvRead, scoped: true, env: true, status: 200, target: sharedEnv("/v1/environments/%s")},
	"GET /v1/environments/{id}/status":           {need: needEnvRead, scoped: true, env: true, status: 200, target: sharedEnv("/v1/environments/%s/status")},
	"GET /environments/{id}/status":              {need: needEnvRead, scoped: true, env: true, status: 200, target: sharedEnv("/environments/%s/status")},
	"GET /v1/environments/{id}/watch":            {need: needEnvRead, scoped: true, env: true, status: 200, target: sharedEnv("/v1/environments/%s/watch")},
	"GET /v1/environments/{id}/logs":             {need: needEnvRead, scoped: true, env: true, status: 200, target: sharedEnv("/v1/environments/%s/logs")},
	"GET /v1/flows":                              {need: needEnvRead, status: 200, target: fixed("/v1/flows?limit=5")},
	"GET /v1/environments/{id}/flows":            {need: needEnvRead, scoped: true, env: true, status: 200, target: sharedEnv("/v1/environments/%s/flows")},
	"GET /v1/environments/{id}/effective-policy": {need: needEnvRead, scoped: true, env: true, status: 200, target: sharedEnv("/v1/environments/%s/effective-policy")},
	// check is a POST, but it only reads: viewers may.
	"POST /v1/environments/{id}/check": {need: needEnvRead, scoped: true, env: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.envReq(f.env.ID, "/check", apiv1.CheckRequest{Direction: "egress", Protocol: "tcp", Address: "203.0.113.9", Port: 443})
	}},
	// Exec: on this simulate server nothing runs, so an allowed exec is
	// the 409 of a workload that is not_run, and a plain GET (no
	// WebSocket handshake) the 400 that says so, both after authorization.
	"POST /v1/environments/{id}/exec": {need: needExec, scoped: true, env: true, status: 409, target: func(f *matrixFixtures) matrixRequest {
		return f.envReq(f.env.ID, "/exec", apiv1.ExecRequest{Command: []string{"true"}})
	}},
	"GET /v1/environments/{id}/exec": {need: needExec, scoped: true, env: true, status: 400, target: sharedEnv("/v1/environments/%s/exec?command=true")},
	"PATCH /v1/environments/{id}": {need: apiv1.RoleEditor, scoped: true, env: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.envReq(f.freshEnv().ID, "", apiv1.EnvironmentPatch{Description: ptr("changed")})
	}},
	"PUT /environments/{id}/configure": {need: apiv1.RoleEditor, scoped: true, env: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		e := f.freshEnv()
		return matrixRequest{path: "/environments/" + e.ID + "/configure", body: apiv1.EnvironmentConfigure{Description: ptr("changed")}, home: f.a.ID, env: e.ID}
	}},
	"DELETE /v1/environments/{id}": {need: apiv1.RoleEditor, scoped: true, env: true, status: 202, target: func(f *matrixFixtures) matrixRequest {
		return f.envReq(f.freshEnv().ID, "", nil)
	}},
	"DELETE /environments/{id}": {need: apiv1.RoleEditor, scoped: true, env: true, status: 202, target: func(f *matrixFixtures) matrixRequest {
		e := f.freshEnv()
		return matrixRequest{path: "/environments/" + e.ID, home: f.a.ID, env: e.ID}
	}},
	// Session tokens: minted from a token that may exec, never from a
	// session token; each allowed cell mints or revokes one of its own.
	"POST /v1/environments/{id}/session-tokens": {need: needMint, scoped: true, env: true, status: 201, target: func(f *matrixFixtures) matrixRequest {
		return f.envReq(f.env.ID, "/session-tokens", apiv1.SessionTokenCreate{TTL: "5m"})
	}},
	"DELETE /v1/environments/{id}/session-tokens/{token_id}": {need: needMint, scoped: true, env: true, status: 204, target: func(f *matrixFixtures) matrixRequest {
		return f.envReq(f.env.ID, "/session-tokens/"+f.mint(f.env.ID).ID, nil)
	}},

	"POST /v1/policies": {need: apiv1.RoleEditor, scoped: true, status: 201, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/policies", f.policyBody(f.name("pol")))
	}},
	"GET /v1/policies/{id}": {need: apiv1.RoleViewer, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest { return f.req("/v1/policies/"+f.policy.ID, nil) }},
	"GET /v1/policies/{id}/environments": {need: apiv1.RoleViewer, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/policies/"+f.policy.ID+"/environments", nil)
	}},
	"PATCH /v1/policies/{id}": {need: apiv1.RoleEditor, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/policies/"+f.freshPolicy().ID, apiv1.PolicyPatch{Description: ptr("changed")})
	}},
	"DELETE /v1/policies/{id}": {need: apiv1.RoleEditor, scoped: true, status: 204, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/policies/"+f.freshPolicy().ID, nil)
	}},

	// Assertions are policy tests: who may write policies may write them.
	"POST /v1/projects/{id}/assertions": {need: apiv1.RoleEditor, scoped: true, status: 201, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/projects/"+f.a.ID+"/assertions", f.assertionBody(f.name("ast")))
	}},
	"GET /v1/projects/{id}/assertions": {need: apiv1.RoleViewer, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/projects/"+f.a.ID+"/assertions", nil)
	}},
	"GET /v1/projects/{id}/assertions/{assertion_id}": {need: apiv1.RoleViewer, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req(assertionURL(f.sharedAssertion()), nil)
	}},
	"DELETE /v1/projects/{id}/assertions/{assertion_id}": {need: apiv1.RoleEditor, scoped: true, status: 204, target: func(f *matrixFixtures) matrixRequest {
		return f.req(assertionURL(f.freshAssertion()), nil)
	}},

	"POST /v1/tokens": {need: apiv1.RoleAdmin, scoped: true, status: 201, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/tokens", apiv1.TokenCreate{Name: f.name("tok"), Role: apiv1.RoleViewer, ProjectID: f.a.ID})
	}},
	"GET /v1/tokens/{id}": {need: apiv1.RoleAuditor, scoped: true, status: 200, target: func(f *matrixFixtures) matrixRequest { return f.req("/v1/tokens/"+f.token.ID, nil) }},
	"DELETE /v1/tokens/{id}": {need: apiv1.RoleAdmin, scoped: true, status: 204, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/tokens/"+f.newToken(f.name("tok"), apiv1.RoleViewer, f.a.ID).ID, nil)
	}},

	// Images belong to no project: every role reads them, admins change them.
	"POST /v1/images": {need: apiv1.RoleAdmin, status: 201, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/images?name=matrix/"+f.name("img"), imageArchive(f.h.t, "matrix"))
	}},
	"GET /v1/images": {need: apiv1.RoleViewer, status: 200, target: fixed("/v1/images")},
	"GET /v1/images/{name...}": {need: apiv1.RoleViewer, status: 200, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/images/"+url.PathEscape(f.image("matrix/shared:1")), nil)
	}},
	"DELETE /v1/images/{name...}": {need: apiv1.RoleAdmin, status: 204, target: func(f *matrixFixtures) matrixRequest {
		return f.req("/v1/images/"+url.PathEscape(f.image("matrix/"+f.name("img"))), nil)
	}},
}

func fixed(path string) func(*matrixFixtures) matrixRequest {
	return func(f *matrixFixtures) matrixRequest { return f.req(path, nil) }
}

func sharedEnv(format string) func(*matrixFixtures) matrixRequest {
	return func(f *matrixFixtures) matrixRequest {
		r := f.req(fmt.Sprintf(format, f.env.ID), nil)
		r.env = f.env.ID
		return r
	}
}

// matrixFixtures are the objects the cells act on: project a ("this
// project") with a ready environment, another environment, a policy and
// a token; project b ("another project"); and a token for every caller.
type matrixFixtures struct {
	h    *harness
	a, b apiv1.Project
	env  apiv1.Environment
	// otherEnv is "another environment" of this project, of the session
	// token that is not the request's environment's.
	otherEnv apiv1.Environment
	policy   apiv1.Policy
	token    apiv1.Token
	// hiddenPeer is an environment of another project that a policy of
	// this project picks by project_selector: only callers who read that
	// project may ever read its id, name or address.
	hiddenPeer apiv1.Environment
	// assertion is made on first use (sharedAssertion).
	assertion apiv1.Assertion
	// adminKey is the Idempotency-Key of a create the admin made.
	adminKey string
	n        int
	// secrets of project-scoped callers by role and project, made on demand.
	scoped map[string]apiv1.TokenCreated
	// sessions are the session tokens of environments, by environment.
	sessions map[string]apiv1.TokenCreated
	secrets  map[caller]string
	ids      map[caller]string
	images   map[string]bool // imported by image
}

func (f *matrixFixtures) name(prefix string) string {
	f.n++
	return fmt.Sprintf("%s-%d", prefix, f.n)
}

func (f *matrixFixtures) req(path string, body any) matrixRequest {
	return matrixRequest{path: path, body: body, home: f.a.ID}
}

// envReq is a request about environment id of this project: the path
// /v1/environments/{id} and then sub.
func (f *matrixFixtures) envReq(id, sub string, body any) matrixRequest {
	return matrixRequest{path: "/v1/environments/" + id + sub, body: body, home: f.a.ID, env: id}
}

func (f *matrixFixtures) newToken(name, role, projectID string) apiv1.TokenCreated {
	return f.newTokenOf(apiv1.TokenCreate{Name: name, Role: role, ProjectID: projectID})
}

func (f *matrixFixtures) newTokenOf(in apiv1.TokenCreate) apiv1.TokenCreated {
	f.h.t.Helper()
	var tc apiv1.TokenCreated
	f.h.do("POST", "/v1/tokens", in).json(f.h.t, 201, &tc)
	return tc
}

// scopedToken is the token of role for project, granted developer when
// dev is set, made once.
func (f *matrixFixtures) scopedToken(role, project string, dev bool) apiv1.TokenCreated {
	k := fmt.Sprint(role, "/", project, "/", dev)
	if tc, ok := f.scoped[k]; ok {
		return tc
	}
	tc := f.newTokenOf(apiv1.TokenCreate{Name: f.name(role), Role: role, ProjectID: project, Developer: dev})
	f.scoped[k] = tc
	return tc
}

// mint is a fresh session token of environment id, minted by the admin.
func (f *matrixFixtures) mint(id string) apiv1.TokenCreated {
	f.h.t.Helper()
	var tc apiv1.TokenCreated
	f.h.do("POST", "/v1/environments/"+id+"/session-tokens", apiv1.SessionTokenCreate{}).json(f.h.t, 201, &tc)
	return tc
}

// session is the session token of environment id, minted once.
func (f *matrixFixtures) session(id string) apiv1.TokenCreated {
	if tc, ok := f.sessions[id]; ok {
		return tc
	}
	tc := f.mint(id)
	f.sessions[id] = tc
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

// image imports a small image as name, once, and returns its name.
func (f *matrixFixtures) image(name string) string {
	f.h.t.Helper()
	if !f.images[name] {
		f.h.importImage(name, imageArchive(f.h.t, name))
		f.images[name] = true
	}
	return name
}

// assertionBody is an assertion that holds: its source names no
// environment.
func (f *matrixFixtures) assertionBody(name string) apiv1.AssertionCreate {
	return apiv1.AssertionCreate{AssertionSpec: apiv1.AssertionSpec{
		Name: name, From: apiv1.AssertionSource{Environment: "nobody"}, To: apiv1.AssertionTarget{CIDR: "0.0.0.0/0"},
		Port: 22, Expect: apiv1.ExpectDeny,
	}}
}

func (f *matrixFixtures) freshAssertion() apiv1.Assertion {
	f.h.t.Helper()
	var a apiv1.Assertion
	f.h.do("POST", "/v1/projects/"+f.a.ID+"/assertions", f.assertionBody(f.name("ast"))).json(f.h.t, 201, &a)
	return a
}

// sharedAssertion is the assertion every read cell reads, made once.
func (f *matrixFixtures) sharedAssertion() apiv1.Assertion {
	if f.assertion.ID == "" {
		f.assertion = f.freshAssertion()
	}
	return f.assertion
}

func (f *matrixFixtures) freshPolicy() apiv1.Policy {
	f.h.t.Helper()
	var p apiv1.Policy
	f.h.do("POST", "/v1/policies", f.policyBody(f.name("pol"))).json(f.h.t, 201, &p)
	return p
}

func newMatrixFixtures(t *testing.T, h *harness) *matrixFixtures {
	f := &matrixFixtures{h: h, scoped: map[string]apiv1.TokenCreated{}, sessions: map[string]apiv1.TokenCreated{}, secrets: map[caller]string{}, ids: map[caller]string{}, images: map[string]bool{}}
	f.a, f.b = h.project("this"), h.project("other")
	f.env = h.environment(f.a.ID, "shared", nil)
	f.env, _ = h.wait(f.env.ID, "ready")
	f.otherEnv = h.environment(f.a.ID, "another", nil)
	f.policy = f.freshPolicy()
	h.do("PATCH", "/v1/projects/"+f.b.ID, map[string]any{"labels": map[string]string{"team": "other"}}).json(t, 200, nil)
	f.hiddenPeer, _ = h.wait(h.environment(f.b.ID, "zz-hidden-peer", nil).ID, "ready")
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: f.a.ID, PolicySpec: apiv1.PolicySpec{
		Name: "from-other", PolicyTypes: []string{"ingress"},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{ProjectSelector: &apiv1.Selector{MatchLabels: map[string]string{"team": "other"}}}}}},
	}}).json(t, 201, nil)
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

// callerToken is the secret (and token id) a caller sends for req, whose
// "this project" is req.home and "this environment" req.env (or, when it
// names none, this project's shared environment).
func (f *matrixFixtures) callerToken(c caller, req matrixRequest) (secret, id string) {
	var tc apiv1.TokenCreated
	switch c {
	case editorHere:
		tc = f.scopedToken(apiv1.RoleEditor, req.home, false)
	case viewerHere:
		tc = f.scopedToken(apiv1.RoleViewer, req.home, false)
	case editorOther:
		tc = f.scopedToken(apiv1.RoleEditor, f.b.ID, false)
	case viewerOther:
		tc = f.scopedToken(apiv1.RoleViewer, f.b.ID, false)
	case developerHere:
		tc = f.scopedToken(apiv1.RoleDeveloper, req.home, false)
	case developerOther:
		tc = f.scopedToken(apiv1.RoleDeveloper, f.b.ID, false)
	case editorDev:
		tc = f.scopedToken(apiv1.RoleEditor, req.home, true)
	case viewerDev:
		tc = f.scopedToken(apiv1.RoleViewer, req.home, true)
	case sessionHere:
		env := req.env
		if env == "" {
			env = f.env.ID
		}
		tc = f.session(env)
	case sessionOther:
		tc = f.session(f.otherEnv.ID)
	default:
		return f.secrets[c], f.ids[c]
	}
	return tc.Secret, tc.ID
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
			secret, tokenID := f.callerToken(c, req)
			rid := fmt.Sprintf("authz-%d", len(cells))
			want := rule.expect(c, req, f.a.ID)
			got := matrixSend(t, h, rt.Method, req.path, req.body, secret, rid)
			cells = append(cells, cell{key, string(c), rid, tokenID, want})
			if got.status != want {
				t.Errorf("%s %s as %s: %d, want %d; body %s", rt.Method, req.path, c, got.status, want, got.body)
				continue
			}
			f.noHiddenPeer(t, c, key, got)
			switch want {
			case http.StatusForbidden:
				p := got.problem(t, 403, "forbidden", "")
				if !strings.Contains(p.Detail, "requires role "+neededRole(rule.need)) {
					t.Errorf("%s as %s: 403 detail %q does not name the role needed (%s)", key, c, p.Detail, neededRole(rule.need))
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

// seesOther reports whether c may read "another project", the one of
// the hidden peer.
func seesOther(c caller) bool {
	switch c {
	case admin, auditor, editorOther, viewerOther, developerOther:
		return true
	}
	return false
}

// noHiddenPeer fails when a caller who may not read the hidden peer's
// project reads its id, name or address in any answer.
func (f *matrixFixtures) noHiddenPeer(t *testing.T, c caller, route string, got resp) {
	t.Helper()
	if seesOther(c) {
		return
	}
	for _, v := range []string{f.hiddenPeer.ID, f.hiddenPeer.Name, f.hiddenPeer.Enforcement.Address} {
		if v != "" && bytes.Contains(got.body, []byte(`"`+v+`"`)) {
			t.Errorf("%s as %s: the answer names %q, of a project the caller may not read: %s", route, c, v, got.body)
		}
	}
}

// matrixSend sends one cell's request with secret ("" for none). An
// event stream is answered by its headers and closed at once.
func matrixSend(t *testing.T, h *harness, method, path string, body any, secret, requestID string) resp {
	t.Helper()
	raw, archive := body.([]byte) // an image archive, sent as it is
	if body != nil && !archive {
		var err error
		raw, err = json.Marshal(body)
		must(t, err)
	}
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(raw))
	must(t, err)
	switch {
	case archive:
		req.Header.Set("Content-Type", "application/x-tar")
	case body != nil:
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

func assertionURL(a apiv1.Assertion) string {
	return "/v1/projects/" + a.ProjectID + "/assertions/" + a.ID
}
