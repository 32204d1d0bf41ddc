package api

import (
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
)

// Scope says how the authorize step finds the project a request targets,
// which is what project-scoped roles are checked against.
type Scope int

const (
	// ScopeNone: the request is not about one project (org-wide routes;
	// list routes, whose handlers show only what the caller may see).
	ScopeNone Scope = iota
	// ScopeProject: the {id} in the path is a project.
	ScopeProject
	// ScopeEnvironment: the {id} in the path is an environment.
	ScopeEnvironment
	// ScopePolicy: the {id} in the path is a policy.
	ScopePolicy
	// ScopeToken: the {id} in the path is a token (its project_id, "" for
	// organization-wide tokens).
	ScopeToken
	// ScopeBody: the project_id of the request body; the handler
	// authorizes after decoding it.
	ScopeBody
)

// Perm is what a route requires. Public routes need no token at all.
type Perm struct {
	Public bool
	auth.Permission
	Scope Scope
}

// Route is one entry of the route table: the router, the authorize step,
// the OpenAPI document and the authorization-matrix test all read it.
type Route struct {
	Method  string
	Pattern string
	Perm    Perm
	// Idempotent routes honour Idempotency-Key: every POST that creates,
	// and the PATCH and PUT routes, so that a client retrying a change whose
	// answer was lost gets that answer, not a 412 against its own write.
	Idempotent bool
	Doc        Doc
	handle     func(*API, http.ResponseWriter, *http.Request) error
}

// Doc describes a route for the OpenAPI document.
type Doc struct {
	OperationID string
	Summary     string
	Tag         string
	Request     any // a value of the request body type; nil for none
	// RequestMedia are the media types of a body that is not JSON (an
	// image archive): the handler reads it itself, unbounded by readBody.
	RequestMedia []string
	Status       int // the success status
	Response     any // a value of the success body type; nil for none
	Query        []string
	// Problems lists the error statuses the route documents beyond the
	// ones every authenticated route can answer (400, 401, 403, 429, 500).
	Problems []int
}

var (
	permProjectRead  = Perm{Permission: auth.Permission{Resource: auth.ResourceProject, Verb: auth.VerbRead}}
	permProjectWrite = Perm{Permission: auth.Permission{Resource: auth.ResourceProject, Verb: auth.VerbWrite}}
	permEnvRead      = Perm{Permission: auth.Permission{Resource: auth.ResourceEnvironment, Verb: auth.VerbRead}}
	permEnvWrite     = Perm{Permission: auth.Permission{Resource: auth.ResourceEnvironment, Verb: auth.VerbWrite}}
	permEnvExec      = Perm{Permission: auth.Permission{Resource: auth.ResourceEnvironment, Verb: auth.VerbExec}}
	// permEnvSession mints and revokes an environment's session tokens:
	// who may exec there may, except a session token.
	permEnvSession  = Perm{Permission: auth.Permission{Resource: auth.ResourceEnvironment, Verb: auth.VerbSession}}
	permPolicyRead  = Perm{Permission: auth.Permission{Resource: auth.ResourcePolicy, Verb: auth.VerbRead}}
	permPolicyWrite = Perm{Permission: auth.Permission{Resource: auth.ResourcePolicy, Verb: auth.VerbWrite}}
	permAuditRead   = Perm{Permission: auth.Permission{Resource: auth.ResourceAudit, Verb: auth.VerbRead}}
	permTokenRead   = Perm{Permission: auth.Permission{Resource: auth.ResourceToken, Verb: auth.VerbRead}}
	permTokenWrite  = Perm{Permission: auth.Permission{Resource: auth.ResourceToken, Verb: auth.VerbWrite}}
	permImageRead   = Perm{Permission: auth.Permission{Resource: auth.ResourceImage, Verb: auth.VerbRead}}
	permImageWrite  = Perm{Permission: auth.Permission{Resource: auth.ResourceImage, Verb: auth.VerbWrite}}
)

func scoped(p Perm, s Scope) Perm { p.Scope = s; return p }

var (
	listQuery = []string{"limit", "cursor", "project_id", "label"}
	envQuery  = append(append([]string{}, listQuery...), "state")
)

// flowsSummary documents the flow lists.
const flowsSummary = "The environment's flow records (netns driver with flow logs on), oldest first, by id: every connection it opened or received, allowed (written when the kernel forgets the connection, with packets and bytes both ways, policy_id and rule) or denied (counted by the kernel, about once a second, count = packets). " +
	"Records of one peer, protocol and port within a second are aggregated (count, first_seen, last_seen, no src_port); a denied record without a port summarises a port scan, one without a peer address counts packets the kernel could not itemise. " +
	"Filters: verdict (allowed, denied), direction (ingress, egress), peer (an address: the source or the destination), since and until (RFC 3339, until excluded). next_cursor is the last record's id: records only grow, so it also follows new ones."

// routes is the route table. Every route of the server is here.
var routes = []Route{
	{Method: "GET", Pattern: "/healthz", Perm: Perm{Public: true}, handle: (*API).healthz,
		Doc: Doc{OperationID: "healthz", Summary: "The process is up.", Tag: "operations", Status: 200, Response: health{}}},
	{Method: "GET", Pattern: "/readyz", Perm: Perm{Public: true}, handle: (*API).readyz,
		Doc: Doc{OperationID: "readyz", Summary: "The store is reachable and can write (a probe write, at most one a second while it can), and the reconciler has started.", Tag: "operations", Status: 200, Response: health{}, Problems: []int{503}}},
	{Method: "GET", Pattern: "/metrics", Perm: permAuditRead, handle: (*API).serveMetrics,
		Doc: Doc{OperationID: "metrics", Summary: "Prometheus metrics (text exposition format); needs a token that may read the audit log.", Tag: "operations", Status: 200}},
	// Public: the document describes the API and holds no data.
	{Method: "GET", Pattern: "/v1/openapi.json", Perm: Perm{Public: true}, handle: (*API).openapi,
		Doc: Doc{OperationID: "openapi", Summary: "This OpenAPI document; no token needed.", Tag: "operations", Status: 200}},
	{Method: "GET", Pattern: "/v1/whoami", Perm: permAnyToken, handle: (*API).whoami,
		Doc: Doc{OperationID: "whoami", Summary: "The caller's token (id, name, role, project scope, expiry; never its secret) and the server's name and version.", Tag: "operations", Status: 200, Response: apiv1.WhoAmI{}}},

	{Method: "POST", Pattern: "/v1/projects", Perm: permProjectWrite, Idempotent: true, handle: (*API).createProject,
		Doc: Doc{OperationID: "createProject", Summary: "Create a project.", Tag: "projects", Request: apiv1.ProjectCreate{}, Status: 201, Response: apiv1.Project{}, Problems: []int{409, 415, 413, 422}}},
	{Method: "GET", Pattern: "/v1/projects", Perm: permProjectRead, handle: (*API).listProjects,
		Doc: Doc{OperationID: "listProjects", Summary: "List projects.", Tag: "projects", Status: 200, Response: apiv1.List[apiv1.Project]{}, Query: []string{"limit", "cursor", "label"}}},
	{Method: "GET", Pattern: "/v1/projects/{id}", Perm: scoped(permProjectRead, ScopeProject), handle: (*API).getProject,
		Doc: Doc{OperationID: "getProject", Summary: "Read a project.", Tag: "projects", Status: 200, Response: apiv1.Project{}, Problems: []int{404}}},
	{Method: "PATCH", Pattern: "/v1/projects/{id}", Perm: scoped(permProjectWrite, ScopeProject), Idempotent: true, handle: (*API).patchProject,
		Doc: Doc{OperationID: "patchProject", Summary: "Change a project; fields present replace the stored ones.", Tag: "projects", Request: apiv1.ProjectPatch{}, Status: 200, Response: apiv1.Project{}, Problems: []int{404, 409, 412, 413, 415, 422}}},
	{Method: "DELETE", Pattern: "/v1/projects/{id}", Perm: scoped(permProjectWrite, ScopeProject), handle: (*API).deleteProject,
		Doc: Doc{OperationID: "deleteProject", Summary: "Delete a project that has no environments and no policies; the 409 otherwise names what it still holds.", Tag: "projects", Status: 204, Problems: []int{404, 409, 412}}},
	{Method: "DELETE", Pattern: "/v1/projects/{id}/contents", Perm: scoped(permProjectWrite, ScopeProject), handle: (*API).deleteProjectContents,
		Doc: Doc{OperationID: "deleteProjectContents", Summary: "Delete every policy of a project and start deleting every environment of it, in one change, audited as project.delete_contents; the answer lists them. Once the environments are gone (wait for each), the project can be deleted.", Tag: "projects", Status: 200, Response: apiv1.ProjectContents{}, Problems: []int{404, 412}}},

	{Method: "POST", Pattern: "/v1/environments", Perm: scoped(permEnvWrite, ScopeBody), Idempotent: true, handle: (*API).createEnvironment,
		Doc: Doc{OperationID: "createEnvironment", Summary: "Create an environment; it is provisioned asynchronously (state pending).", Tag: "environments", Request: apiv1.EnvironmentCreate{}, Status: 202, Response: apiv1.Environment{}, Problems: []int{404, 409, 413, 415, 422}}},
	{Method: "GET", Pattern: "/v1/environments", Perm: permEnvRead, handle: (*API).listEnvironments,
		Doc: Doc{OperationID: "listEnvironments", Summary: "List environments.", Tag: "environments", Status: 200, Response: apiv1.List[apiv1.Environment]{}, Query: envQuery, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/environments/watch", Perm: permEnvRead, handle: (*API).watchEnvironments,
		Doc: Doc{OperationID: "watchEnvironments", Summary: "Server-Sent Events of the list that GET /v1/environments with the same filters shows (every page): one `list` event ({items}) now, then an `environment` event for each environment created or changed and a `deleted` event ({id}) for each one gone or no longer matching.", Tag: "environments", Status: 200, Query: []string{"project_id", "label", "state"}, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/environments/{id}", Perm: scoped(permEnvRead, ScopeEnvironment), handle: (*API).getEnvironment,
		Doc: Doc{OperationID: "getEnvironment", Summary: "Read an environment; with wait_for, answer once it reaches one of those states (or failed, or timeout).", Tag: "environments", Status: 200, Response: apiv1.Environment{}, Query: []string{"wait_for", "timeout"}, Problems: []int{404}}},
	{Method: "PATCH", Pattern: "/v1/environments/{id}", Perm: scoped(permEnvWrite, ScopeEnvironment), Idempotent: true, handle: (*API).patchEnvironment,
		Doc: Doc{OperationID: "patchEnvironment", Summary: "Change an environment (generation+1, state updating, then ready).", Tag: "environments", Request: apiv1.EnvironmentPatch{}, Status: 200, Response: apiv1.Environment{}, Problems: []int{404, 409, 412, 413, 415, 422}}},
	{Method: "DELETE", Pattern: "/v1/environments/{id}", Perm: scoped(permEnvWrite, ScopeEnvironment), handle: (*API).deleteEnvironment,
		Doc: Doc{OperationID: "deleteEnvironment", Summary: "Delete an environment (state deleting, then gone).", Tag: "environments", Status: 202, Response: apiv1.Environment{}, Problems: []int{404, 409, 412}}},
	{Method: "GET", Pattern: "/v1/environments/{id}/status", Perm: scoped(permEnvRead, ScopeEnvironment), handle: (*API).environmentStatus,
		Doc: Doc{OperationID: "getEnvironmentStatus", Summary: "An environment's lifecycle and enforcement status.", Tag: "environments", Status: 200, Response: apiv1.EnvironmentStatus{}, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/environments/{id}/logs", Perm: scoped(permEnvRead, ScopeEnvironment), handle: (*API).environmentLogs,
		Doc: Doc{OperationID: "getEnvironmentLogs", Summary: "The workload's output (stdout and stderr, oldest first), as plain text, one line per line of output, or as NDJSON {time, stream, line} with Accept: application/x-ndjson or format=ndjson. With follow=true it streams new lines until the client goes away or the environment is deleted. 404 when the environment has no workload output (a server that runs no workloads, or none has run yet).", Tag: "environments", Status: 200, Query: []string{"tail", "since", "follow", "format"}, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/environments/{id}/watch", Perm: scoped(permEnvRead, ScopeEnvironment), handle: (*API).watchEnvironment,
		Doc: Doc{OperationID: "watchEnvironment", Summary: "Server-Sent Events: one `environment` event with the object now and after every change, a `deleted` event when it is gone.", Tag: "environments", Status: 200, Problems: []int{404}}},
	{Method: "POST", Pattern: "/v1/environments/{id}/exec", Perm: scoped(permEnvExec, ScopeEnvironment), handle: (*API).execRun,
		Doc: Doc{OperationID: "execEnvironment", Summary: "Run a command in the environment's container (its namespaces, cgroup and limits; as the image's user or uid/gid), with an empty stdin and no terminal (tty: true needs the WebSocket: GET with Upgrade: websocket). " +
			"The answer streams NDJSON ExecFrame lines, {stream, data} (data base64) as the output comes, then one {exit} (exit_code, signal, reason, duration_ms, bytes_in, bytes_out, session_id), or {error} when the server failed mid-session. " +
			"409 names the environment's state unless it is ready with its workload running; 400 names command when the image has no such program; 429 past the token's open sessions (isolationd serve --exec-sessions-per-token). " +
			"Every session is audited (session.start before the command starts, session.end with its exit); refused attempts as failed session.start events. Idempotency-Key is ignored.",
			Tag: "environments", Request: apiv1.ExecRequest{}, Status: 200, Problems: []int{404, 409, 413, 415, 507}}},
	{Method: "GET", Pattern: "/v1/environments/{id}/exec", Perm: scoped(permEnvExec, ScopeEnvironment), handle: (*API).execAttach,
		Doc: Doc{OperationID: "attachEnvironment", Summary: "The same, interactive: a WebSocket (Upgrade: websocket, subprotocol " + apiv1.ExecSubprotocol + ") with the request in the query (command and env=NAME=VALUE repeated, working_dir, uid, gid, tty, rows, cols, timeout). " +
			"Binary messages are [channel][data]: 0 stdin from the client, 1 stdout and 2 stderr (without tty) from the server; text messages are ExecControl JSON: resize, signal and eof from the client, then exit (or error) from the server before a normal close. " +
			"Every refusal is an ordinary problem before the upgrade. Closing the socket ends the session (reason closed): SIGHUP to its processes, SIGKILL after a grace.",
			Tag: "environments", Status: 101, Query: execParams, Problems: []int{404, 409, 507}}},
	{Method: "GET", Pattern: "/v1/environments/{id}/effective-policy", Perm: scoped(permEnvRead, ScopeEnvironment), handle: (*API).effectivePolicy,
		Doc: Doc{OperationID: "getEffectivePolicy", Summary: "The policies that select the environment and their merged allow rules.", Tag: "environments", Status: 200, Response: apiv1.EffectivePolicy{}, Problems: []int{404}}},
	{Method: "POST", Pattern: "/v1/environments/{id}/check", Perm: scoped(permEnvRead, ScopeEnvironment), handle: (*API).checkEnvironment,
		Doc: Doc{OperationID: "checkEnvironment", Summary: "Would the enforced rules allow this packet? Read-only: Idempotency-Key is not needed. warnings says when an allowed packet goes no further (\"allowed by policy, but no uplink\") or the matched CIDR covers other projects' environments. A replica that does not enforce (not the leader) answers 503 with Retry-After.", Tag: "environments", Request: apiv1.CheckRequest{}, Status: 200, Response: apiv1.CheckResult{}, Problems: []int{404, 409, 413, 415, 503}}},
	{Method: "GET", Pattern: "/v1/environments/{id}/flows", Perm: scoped(permEnvRead, ScopeEnvironment), handle: (*API).listEnvironmentFlows,
		Doc: Doc{OperationID: "listEnvironmentFlows", Summary: flowsSummary, Tag: "flows", Status: 200, Response: apiv1.List[apiv1.Flow]{}, Query: flowParams, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/flows", Perm: permEnvRead, handle: (*API).listFlows,
		Doc: Doc{OperationID: "listFlows", Summary: "The flow records of every environment the caller may see (a project-scoped token: its project's), oldest first; as GET /v1/environments/{id}/flows, with project_id.", Tag: "flows", Status: 200, Response: apiv1.List[apiv1.Flow]{}, Query: append([]string{"project_id"}, flowParams...), Problems: []int{404}}},
	{Method: "POST", Pattern: "/v1/environments/{id}/session-tokens", Perm: scoped(permEnvSession, ScopeEnvironment), Idempotent: true, handle: (*API).createSessionToken,
		Doc: Doc{OperationID: "createSessionToken", Summary: "Mint a session token for the environment from the caller's token (which must be allowed to exec there, and not be a session token): role session, good for exec into this environment only (and whoami), expiring after ttl (a Go duration from 1m to 24h, default 15m) or with the caller's token, whichever is first. " +
			"The answer holds its secret, this once; an Idempotency-Key replay answers the token without it. Revoking the caller's token, or deleting the environment, revokes it.",
			Tag: "environments", Request: apiv1.SessionTokenCreate{}, Status: 201, Response: apiv1.TokenCreated{}, Problems: []int{404, 409, 413, 415}}},
	{Method: "DELETE", Pattern: "/v1/environments/{id}/session-tokens/{token_id}", Perm: scoped(permEnvSession, ScopeEnvironment), handle: (*API).deleteSessionToken,
		Doc: Doc{OperationID: "deleteSessionToken", Summary: "Revoke a session token of the environment: from the next request on it is refused with 401, and its exec sessions end. 404 when it is revoked already, or is not a session token of this environment.", Tag: "environments", Status: 204, Problems: []int{404, 412}}},

	{Method: "POST", Pattern: "/v1/projects/{id}/assertions", Perm: scoped(permPolicyWrite, ScopeProject), Idempotent: true, handle: (*API).createAssertion,
		Doc: Doc{OperationID: "createAssertion", Summary: "Create an assertion (a policy test): traffic that must stay allowed, or denied. One that does not hold now is refused (422) with its first failing packet; from then on every write that would break it is refused.", Tag: "assertions", Request: apiv1.AssertionCreate{}, Status: 201, Response: apiv1.Assertion{}, Problems: []int{404, 409, 413, 415, 422}}},
	{Method: "GET", Pattern: "/v1/projects/{id}/assertions", Perm: scoped(permPolicyRead, ScopeProject), handle: (*API).listAssertions,
		Doc: Doc{OperationID: "listAssertions", Summary: "List a project's assertions.", Tag: "assertions", Status: 200, Response: apiv1.List[apiv1.Assertion]{}, Query: []string{"limit", "cursor"}, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/projects/{id}/assertions/{assertion_id}", Perm: scoped(permPolicyRead, ScopeProject), handle: (*API).getAssertion,
		Doc: Doc{OperationID: "getAssertion", Summary: "Read an assertion.", Tag: "assertions", Status: 200, Response: apiv1.Assertion{}, Problems: []int{404}}},
	{Method: "DELETE", Pattern: "/v1/projects/{id}/assertions/{assertion_id}", Perm: scoped(permPolicyWrite, ScopeProject), handle: (*API).deleteAssertion,
		Doc: Doc{OperationID: "deleteAssertion", Summary: "Delete an assertion.", Tag: "assertions", Status: 204, Problems: []int{404, 412}}},
	{Method: "POST", Pattern: "/v1/policies", Perm: scoped(permPolicyWrite, ScopeBody), Idempotent: true, handle: (*API).createPolicy,
		Doc: Doc{OperationID: "createPolicy", Summary: "Create a network policy.", Tag: "policies", Request: apiv1.PolicyCreate{}, Status: 201, Response: apiv1.Policy{}, Problems: []int{404, 409, 413, 415, 422}}},
	{Method: "GET", Pattern: "/v1/policies", Perm: permPolicyRead, handle: (*API).listPolicies,
		Doc: Doc{OperationID: "listPolicies", Summary: "List policies.", Tag: "policies", Status: 200, Response: apiv1.List[apiv1.Policy]{}, Query: listQuery, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/policies/{id}", Perm: scoped(permPolicyRead, ScopePolicy), handle: (*API).getPolicy,
		Doc: Doc{OperationID: "getPolicy", Summary: "Read a policy.", Tag: "policies", Status: 200, Response: apiv1.Policy{}, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/policies/{id}/environments", Perm: scoped(permPolicyRead, ScopePolicy), handle: (*API).policyEnvironments,
		Doc: Doc{OperationID: "getPolicyEnvironments", Summary: "The environments the policy selects now (of its project; one page with all of them).", Tag: "policies", Status: 200, Response: apiv1.List[apiv1.Environment]{}, Problems: []int{404}}},
	{Method: "PATCH", Pattern: "/v1/policies/{id}", Perm: scoped(permPolicyWrite, ScopePolicy), Idempotent: true, handle: (*API).patchPolicy,
		Doc: Doc{OperationID: "patchPolicy", Summary: "Change a policy; fields present replace the stored ones whole.", Tag: "policies", Request: apiv1.PolicyPatch{}, Status: 200, Response: apiv1.Policy{}, Problems: []int{404, 409, 412, 413, 415, 422}}},
	{Method: "DELETE", Pattern: "/v1/policies/{id}", Perm: scoped(permPolicyWrite, ScopePolicy), handle: (*API).deletePolicy,
		Doc: Doc{OperationID: "deletePolicy", Summary: "Delete a policy.", Tag: "policies", Status: 204, Problems: []int{404, 412, 422}}},

	{Method: "POST", Pattern: "/v1/tokens", Perm: scoped(permTokenWrite, ScopeBody), Idempotent: true, handle: (*API).createToken,
		Doc: Doc{OperationID: "createToken", Summary: "Create an API token. The answer holds its secret, this once: only the secret's SHA-256 is stored. " +
			"An Idempotency-Key replay answers the same token without the secret (it is not stored), with a note saying so; revoke that token and create another if the first answer was lost.",
			Tag: "tokens", Request: apiv1.TokenCreate{}, Status: 201, Response: apiv1.TokenCreated{}, Problems: []int{404, 409, 413, 415, 422}}},
	{Method: "GET", Pattern: "/v1/tokens", Perm: permTokenRead, handle: (*API).listTokens,
		Doc: Doc{OperationID: "listTokens", Summary: "List tokens that are not revoked (never their secrets).", Tag: "tokens", Status: 200, Response: apiv1.List[apiv1.Token]{}, Query: []string{"limit", "cursor", "project_id"}, Problems: []int{404}}},
	{Method: "GET", Pattern: "/v1/tokens/{id}", Perm: scoped(permTokenRead, ScopeToken), handle: (*API).getToken,
		Doc: Doc{OperationID: "getToken", Summary: "Read a token (never its secret); a revoked token is 404.", Tag: "tokens", Status: 200, Response: apiv1.Token{}, Problems: []int{404}}},
	{Method: "DELETE", Pattern: "/v1/tokens/{id}", Perm: scoped(permTokenWrite, ScopeToken), handle: (*API).deleteToken,
		Doc: Doc{OperationID: "deleteToken", Summary: "Revoke a token: from the next request on, it is refused with 401.", Tag: "tokens", Status: 204, Problems: []int{404, 412}}},

	// Images belong to no project: every token reads them, admins change
	// them. Names hold '/': the document has them escaped as %2F in one
	// path segment, and {name...} takes them unescaped too (curl users).
	{Method: "POST", Pattern: "/v1/images", Perm: permImageWrite, handle: (*API).importImage,
		Doc: Doc{OperationID: "importImage", Summary: "Import an image (admin): the body is a tar of an OCI image layout (oci-layout, index.json, blobs/) or a docker archive (manifest.json, as docker save writes it), streamed into the image store with every digest checked; name is what workloads give as workload.image, and an image of the same name is replaced. " +
			"Not idempotent by key (Idempotency-Key is ignored): the same archive imported again gives the same image.",
			Tag: "images", RequestMedia: imageMediaTypes, Status: 201, Response: apiv1.Image{}, Query: []string{"name"}, Problems: []int{413, 415, 501}}},
	{Method: "GET", Pattern: "/v1/images", Perm: permImageRead, handle: (*API).listImages,
		Doc: Doc{OperationID: "listImages", Summary: "List the image store's images, by name, each with the number of environments whose workload uses it (in_use).", Tag: "images", Status: 200, Response: apiv1.List[apiv1.Image]{}, Problems: []int{501}}},
	{Method: "GET", Pattern: "/v1/images/{name...}", Perm: permImageRead, handle: (*API).getImage,
		Doc: Doc{OperationID: "getImage", Summary: "Read an image; name is its name with each '/' escaped as %2F (team%2Fdev:1.4; the server takes it unescaped too). The ETag is the image's digest.", Tag: "images", Status: 200, Response: apiv1.Image{}, Problems: []int{404, 501}}},
	{Method: "DELETE", Pattern: "/v1/images/{name...}", Perm: permImageWrite, handle: (*API).deleteImage,
		Doc: Doc{OperationID: "deleteImage", Summary: "Delete an image (admin), with the layers no other image shares; refused with 409 while an environment's workload uses it. name as for getImage.", Tag: "images", Status: 204, Problems: []int{404, 409, 412, 501}}},

	// Every token may ask about its own keys, and only its own.
	{Method: "GET", Pattern: "/v1/idempotency-keys/{key}", Perm: permAnyToken, handle: (*API).getIdempotencyKey,
		Doc: Doc{OperationID: "getIdempotencyKey", Summary: "Whether this token's write with that Idempotency-Key was committed (state committed, with what it did) or is still running (in_progress); 404 when it did nothing, or the key is another token's.", Tag: "idempotency", Status: 200, Response: apiv1.IdempotencyKey{}, Problems: []int{404}}},

	{Method: "GET", Pattern: "/v1/audit-events", Perm: permAuditRead, handle: (*API).listAudit,
		Doc: Doc{OperationID: "listAuditEvents", Summary: "The audit trail, oldest first.", Tag: "audit", Status: 200, Response: apiv1.List[apiv1.AuditEvent]{}, Query: []string{"limit", "cursor", "project_id", "action", "resource_type", "resource_id", "outcome", "request_id", "since"}}},

	{Method: "GET", Pattern: "/v1/audit-events/verify", Perm: permAuditRead, handle: (*API).verifyAudit,
		Doc: Doc{OperationID: "verifyAuditEvents", Summary: "Verify the audit chain from from_seq (default 1) to to_seq (default the newest event): every event's hash matches its content, seqs follow each other, and each prev_hash is the hash before it, the first linking to the stored event before from_seq. Keyed events are checked with the server's HMAC key.", Tag: "audit", Status: 200, Response: apiv1.AuditVerification{}, Query: []string{"from_seq", "to_seq"}}},

	// The web console's sign-in: a bearer token opens a session whose
	// cookie the console sends instead (uisessions.go).
	{Method: "POST", Pattern: "/v1/ui/sessions", Perm: permAnyToken, handle: (*API).signIn,
		Doc: Doc{OperationID: "signIn", Summary: "Sign in to the web console with the bearer token: the answer sets the session cookie " + SessionCookie + " (HttpOnly, SameSite=Strict, Secure over TLS), which authenticates later requests as that token, reading only, until sign-out, the token's revocation or expiry, or 12 hours. Only the secret's SHA-256 is stored. Audited as ui.sign_in.", Tag: "console", Status: 201, Response: apiv1.UISession{}}},
	{Method: "DELETE", Pattern: "/v1/ui/sessions/current", Perm: permAnyToken, handle: (*API).signOut,
		Doc: Doc{OperationID: "signOut", Summary: "Sign out: revoke the console session whose cookie the request carries (its cookie is refused with 401 from then on; audited as ui.sign_out) and clear the cookie. Without a session it does nothing.", Tag: "console", Status: 204}},

	// The compatibility routes: the original design's endpoints, served on
	// top of the v1 model for the clients written against them.
	{Method: "POST", Pattern: "/environments/create", Perm: scoped(permEnvWrite, ScopeBody), Idempotent: true, handle: (*API).legacyCreate,
		Doc: Doc{OperationID: "legacyCreateEnvironment", Summary: "Create an environment from the body of POST /v1/environments; answers its id and status.", Tag: "compatibility", Request: apiv1.EnvironmentCreate{}, Status: 202, Response: LegacyCreated{}, Problems: []int{404, 409, 413, 415, 422}}},
	{Method: "PUT", Pattern: "/environments/{id}/configure", Perm: scoped(permEnvWrite, ScopeEnvironment), Idempotent: true, handle: (*API).legacyConfigure,
		Doc: Doc{OperationID: "legacyConfigureEnvironment", Summary: "Change an environment's description, labels and resources, and the rules of the policy it owns: created on first use, replaced after, removed by empty rules.", Tag: "compatibility", Request: apiv1.EnvironmentConfigure{}, Status: 200, Response: apiv1.Environment{}, Problems: []int{404, 409, 412, 413, 415, 422}}},
	{Method: "DELETE", Pattern: "/environments/{id}", Perm: scoped(permEnvWrite, ScopeEnvironment), handle: (*API).deleteEnvironment,
		Doc: Doc{OperationID: "legacyDeleteEnvironment", Summary: "Delete an environment (state deleting, then gone), as DELETE /v1/environments/{id} does.", Tag: "compatibility", Status: 202, Response: apiv1.Environment{}, Problems: []int{404, 409, 412}}},
	{Method: "GET", Pattern: "/environments/{id}/status", Perm: scoped(permEnvRead, ScopeEnvironment), handle: (*API).environmentStatus,
		Doc: Doc{OperationID: "legacyGetEnvironmentStatus", Summary: "An environment's lifecycle and enforcement status, as GET /v1/environments/{id}/status answers it.", Tag: "compatibility", Status: 200, Response: apiv1.EnvironmentStatus{}, Problems: []int{404}}},
}

// Routes returns a copy of the route table.
func Routes() []Route {
	return append([]Route(nil), routes...)
}

// LegacyCreated answers POST /environments/create.
type LegacyCreated struct {
	ID     string                  `json:"id"`
	Status apiv1.EnvironmentStatus `json:"status"`
}

type health struct {
	Status string `json:"status"`
	// Version is the server's, on /healthz.
	Version string `json:"version,omitempty"`
	// SIEM is, on /readyz, how each SIEM sink is doing: a sink that lags
	// does not make the server unready, but shows here.
	SIEM []siem.SinkStatus `json:"siem,omitempty"`
	// Replica is, on /readyz, this replica, its host's leader and the
	// store's migration.
	Replica *ReplicaInfo `json:"replica,omitempty"`
}
