// Package apiv1 holds the wire types of isolationd's API v1. It is the one
// contract shared by the server (internal/api) and the client SDK
// (internal/client); it imports nothing but the standard library.
//
// Conventions:
//   - Optional request fields are pointers, so "absent" and "zero" differ
//     (port 0 is invalid; an absent port means every port).
//   - PATCH bodies replace each field that is present, whole (labels,
//     rule lists); absent fields are left alone.
//   - Every object carries ETag, equal to the ETag response header.
package apiv1

import "time"

// Environment lifecycle states.
const (
	StatePending      = "pending"
	StateProvisioning = "provisioning"
	StateReady        = "ready"
	StateUpdating     = "updating"
	StateFailed       = "failed"
	StateDeleting     = "deleting"
	StateExpired      = "expired"
)

// States lists every environment state, in lifecycle order.
var States = []string{StatePending, StateProvisioning, StateReady, StateUpdating, StateFailed, StateDeleting, StateExpired}

// StateIsCreating reports whether an environment in state has not been
// provisioned yet (it has no enforcement to read or check).
func StateIsCreating(state string) bool {
	return state == StatePending || state == StateProvisioning
}

// StateIsTransient reports whether an environment in state is on its way
// to ready: being created or being changed.
func StateIsTransient(state string) bool {
	return StateIsCreating(state) || state == StateUpdating
}

// StateIsLeaving reports whether an environment in state is on its way
// out (deleted, or expired and being torn down): it takes no more
// changes, and the provider treats it as gone.
func StateIsLeaving(state string) bool {
	return state == StateDeleting || state == StateExpired
}

// DefaultAddressPool is the CIDR environment addresses come from when the
// server is not told otherwise (isolationd --address-pool).
const DefaultAddressPool = "10.200.0.0/16"

// Policy types, directions and protocols.
const (
	Ingress = "ingress"
	Egress  = "egress"

	ProtocolTCP  = "tcp"
	ProtocolUDP  = "udp"
	ProtocolICMP = "icmp"
	ProtocolSCTP = "sctp"
)

// The operators of a selector's match_expressions, as Kubernetes spells them.
const (
	OpIn           = "In"
	OpNotIn        = "NotIn"
	OpExists       = "Exists"
	OpDoesNotExist = "DoesNotExist"
)

// Project groups environments and policies.
type Project struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
	Generation  int64             `json:"generation"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	ETag        string            `json:"etag"`
	// EnvironmentQuota is the most environments the project may hold, 0
	// for no limit. Only admins set it (projects are admin-managed); a
	// project created without one gets the server's default quota.
	EnvironmentQuota int64 `json:"environment_quota"`
	// Usage is what the project holds, counted when it is read.
	Usage ProjectUsage `json:"usage"`
}

// ProjectUsage is what a project holds against its quota. Environments
// being deleted count: they hold their addresses until they are gone.
type ProjectUsage struct {
	Environments int64 `json:"environments"`
}

// ProjectCreate is the body of POST /v1/projects.
type ProjectCreate struct {
	Name             string            `json:"name"`
	Description      string            `json:"description,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	EnvironmentQuota *int64            `json:"environment_quota,omitempty"`
}

// ProjectPatch is the body of PATCH /v1/projects/{id}.
type ProjectPatch struct {
	Name             *string            `json:"name,omitempty"`
	Description      *string            `json:"description,omitempty"`
	Labels           *map[string]string `json:"labels,omitempty"`
	EnvironmentQuota *int64             `json:"environment_quota,omitempty"`
}

// Resources are an environment's compute allowances.
type Resources struct {
	CPUMillis    int64 `json:"cpu_millis"`
	MemoryMB     int64 `json:"memory_mb"`
	DiskGB       int64 `json:"disk_gb"`
	MaxProcesses int64 `json:"max_processes"`
}

// ResourcesSpec is Resources in a request: absent fields take the server
// default (create) or keep their value (patch).
type ResourcesSpec struct {
	CPUMillis    *int64 `json:"cpu_millis,omitempty"`
	MemoryMB     *int64 `json:"memory_mb,omitempty"`
	DiskGB       *int64 `json:"disk_gb,omitempty"`
	MaxProcesses *int64 `json:"max_processes,omitempty"`
}

// Server defaults for Resources.
const (
	DefaultCPUMillis = 1000
	DefaultMemoryMB  = 1024
	DefaultDiskGB    = 10
)

// Enforcement driver names, as Enforcement.Driver and ServerInfo.Driver
// report them.
const (
	DriverSimulate = "simulate" // rules recorded and checked; nothing is isolated
	DriverNetns    = "netns"    // a network namespace per environment, rules in a router namespace
)

// Enforcement is what the enforcement driver reports for an environment.
// Generation is bumped whenever the rules the environment should have
// change (its own spec, a policy selecting it, a peer's address);
// Enforced is true once the driver has applied that generation.
type Enforcement struct {
	Driver             string `json:"driver"`
	Runtime            string `json:"runtime"`
	Generation         int64  `json:"generation"`
	ObservedGeneration int64  `json:"observed_generation"`
	Enforced           bool   `json:"enforced"`
	Address            string `json:"address,omitempty"`
	Namespace          string `json:"namespace,omitempty"`
	Message            string `json:"message,omitempty"`
}

// Environment is an isolated developer environment.
type Environment struct {
	ID           string            `json:"id"`
	ProjectID    string            `json:"project_id"`
	Name         string            `json:"name"`
	Description  string            `json:"description"`
	Labels       map[string]string `json:"labels"`
	Resources    Resources         `json:"resources"`
	TTLSeconds   *int64            `json:"ttl_seconds,omitempty"`
	ExpiresAt    *time.Time        `json:"expires_at,omitempty"`
	State        string            `json:"state"`
	StateMessage string            `json:"state_message"`
	Generation   int64             `json:"generation"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	Enforcement  Enforcement       `json:"enforcement"`
	Workload     *Workload         `json:"workload,omitempty"`
	ETag         string            `json:"etag"`
}

// EnvironmentCreate is the body of POST /v1/environments and of
// POST /environments/create.
type EnvironmentCreate struct {
	ProjectID   string            `json:"project_id"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Resources   *ResourcesSpec    `json:"resources,omitempty"`
	TTLSeconds  *int64            `json:"ttl_seconds,omitempty"`
	Workload    *WorkloadSpec     `json:"workload,omitempty"`
}

// EnvironmentPatch is the body of PATCH /v1/environments/{id}.
// TTLSeconds 0 removes the TTL; a positive value restarts it from now.
type EnvironmentPatch struct {
	Name        *string            `json:"name,omitempty"`
	Description *string            `json:"description,omitempty"`
	Labels      *map[string]string `json:"labels,omitempty"`
	Resources   *ResourcesSpec     `json:"resources,omitempty"`
	TTLSeconds  *int64             `json:"ttl_seconds,omitempty"`
	// Workload replaces the workload spec whole; null removes the workload.
	Workload Nullable[WorkloadSpec] `json:"workload,omitzero"`
}

// EnvironmentStatus is the body of GET /v1/environments/{id}/status and
// GET /environments/{id}/status.
type EnvironmentStatus struct {
	ID           string      `json:"id"`
	State        string      `json:"state"`
	StateMessage string      `json:"state_message"`
	Generation   int64       `json:"generation"`
	Enforcement  Enforcement `json:"enforcement"`
}

// EnvironmentConfigure is the body of PUT /environments/{id}/configure (the
// original design's endpoint). Policy, when present, replaces the rules of
// the policy owned by the environment, which selects only it.
type EnvironmentConfigure struct {
	Description *string            `json:"description,omitempty"`
	Labels      *map[string]string `json:"labels,omitempty"`
	Resources   *ResourcesSpec     `json:"resources,omitempty"`
	Policy      *ConfigurePolicy   `json:"policy,omitempty"`
}

// ConfigurePolicy is the rule part of a policy, as PUT /environments/{id}/configure takes it.
type ConfigurePolicy struct {
	Ingress []IngressRule `json:"ingress"`
	Egress  []EgressRule  `json:"egress"`
}

// Selector selects objects (environments, or projects in a
// project_selector) by labels, as a Kubernetes label selector does: an
// object is picked when it carries every match_labels entry and meets
// every match_expressions requirement. An empty selector selects
// everything.
type Selector struct {
	MatchLabels      map[string]string     `json:"match_labels"`
	MatchExpressions []SelectorRequirement `json:"match_expressions,omitempty"`
}

// SelectorRequirement is one match_expressions entry: In (the label is
// present with one of Values), NotIn (absent, or with none of Values),
// Exists or DoesNotExist (Values empty).
type SelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// Peer is one end of a connection: a CIDR (with exceptions), the
// environments that selectors pick, or, on egress only, a host name or
// pattern. Exactly one of CIDR, the selectors and FQDN is set. The
// selectors have Kubernetes' namespaceSelector semantics:
// EnvironmentSelector alone picks environments of the policy's own
// project, ProjectSelector alone every environment of the projects it
// picks, and both together the matching environments of those projects.
type Peer struct {
	CIDR                string    `json:"cidr,omitempty"`
	Except              []string  `json:"except,omitempty"`
	EnvironmentSelector *Selector `json:"environment_selector,omitempty"`
	ProjectSelector     *Selector `json:"project_selector,omitempty"`
	// FQDN is a host name ("registry.npmjs.org") or a pattern whose
	// leftmost label is "*" ("*.github.com": exactly one more label, as
	// in TLS certificates and Cilium's matchPattern). The addresses the
	// environment's resolver answers for a matching name are allowed
	// for the answer's TTL (within the server's bounds).
	FQDN string `json:"fqdn,omitempty"`
}

// IsSelector reports whether p picks environments by selectors (either
// or both), rather than by address or name.
func (p Peer) IsSelector() bool { return p.EnvironmentSelector != nil || p.ProjectSelector != nil }

// Port is a protocol with an optional port or inclusive port range.
// Protocol defaults to tcp. Port absent means every port of the protocol;
// icmp takes no port. PortName, instead of Port, names a port that the
// destination environment's workload declares (WorkloadPort), as a
// Kubernetes named port names a container port: it is resolved per
// destination, and a destination without that name matches nothing.
type Port struct {
	Protocol string `json:"protocol,omitempty"`
	Port     *int   `json:"port,omitempty"`
	EndPort  *int   `json:"end_port,omitempty"`
	PortName string `json:"port_name,omitempty"`
}

// PolicySpec is the user-controlled part of a policy.
type PolicySpec struct {
	Name                string        `json:"name"`
	Description         string        `json:"description"`
	EnvironmentSelector Selector      `json:"environment_selector"`
	PolicyTypes         []string      `json:"policy_types"`
	Ingress             []IngressRule `json:"ingress"`
	Egress              []EgressRule  `json:"egress"`
}

// IngressRule allows traffic from any of From on any of Ports.
type IngressRule struct {
	From  []Peer `json:"from"`
	Ports []Port `json:"ports"`
}

// EgressRule allows traffic to any of To on any of Ports.
type EgressRule struct {
	To    []Peer `json:"to"`
	Ports []Port `json:"ports"`
}

// Policy is a network policy: environments are isolated by default (all
// ingress and egress denied) and policies only add allows.
type Policy struct {
	ID        string `json:"id"`
	ProjectID string `json:"project_id"`
	PolicySpec
	// OwnerEnvironmentID is set on the policy that PUT
	// /environments/{id}/configure manages for that environment.
	OwnerEnvironmentID string    `json:"owner_environment_id,omitempty"`
	Generation         int64     `json:"generation"`
	CreatedAt          time.Time `json:"created_at"`
	UpdatedAt          time.Time `json:"updated_at"`
	ETag               string    `json:"etag"`
}

// PolicyCreate is the body of POST /v1/policies.
type PolicyCreate struct {
	ProjectID string `json:"project_id"`
	PolicySpec
}

// PolicyPatch is the body of PATCH /v1/policies/{id}.
type PolicyPatch struct {
	Name                *string        `json:"name,omitempty"`
	Description         *string        `json:"description,omitempty"`
	EnvironmentSelector *Selector      `json:"environment_selector,omitempty"`
	PolicyTypes         *[]string      `json:"policy_types,omitempty"`
	Ingress             *[]IngressRule `json:"ingress,omitempty"`
	Egress              *[]EgressRule  `json:"egress,omitempty"`
}

// PolicyRef names a policy that selects an environment.
type PolicyRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// PolicyTypes are the directions the policy enforces, so that a
	// reader can tell "selected but allows nothing" from "not selected".
	PolicyTypes []string `json:"policy_types,omitempty"`
}

// PeerEnvironment is an environment that an environment_selector peer
// resolved to when the effective policy was computed.
type PeerEnvironment struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	// ProjectID is set when the environment is of another project than
	// the one whose effective policy names it.
	ProjectID string `json:"project_id,omitempty"`
}

// EffectivePeer is a Peer with its selectors resolved.
type EffectivePeer struct {
	Peer
	Environments []PeerEnvironment `json:"environments,omitempty"`
	// Hidden counts the environments the selectors picked in projects the
	// caller may not read: they are enforced, but not named here.
	Hidden int `json:"hidden,omitempty"`
	// Covers, on a CIDR peer, names the environments of other projects
	// whose addresses the CIDR covers now; absent when it covers none.
	Covers *CIDRCoverage `json:"covers,omitempty"`
	// Names, on an FQDN peer, are the matching names the environment has
	// resolved and whose addresses are allowed now, until Expires.
	Names []ResolvedName `json:"names,omitempty"`
}

// ResolvedName is a host name an environment resolved through its
// resolver, with the addresses its rules allow for it until Expires.
type ResolvedName struct {
	Name      string    `json:"name"`
	Addresses []string  `json:"addresses"`
	Expires   time.Time `json:"expires"`
}

// CIDRCoverage says that a CIDR peer covers addresses isolationd gave to
// environments of other projects, so their traffic matches the rule: an
// address pinned in a CIDR outlives the environment it was written for.
// Environments lists those the caller may see (at most 10); Count counts
// them all, those in projects out of the caller's scope included (at
// least Count when More).
type CIDRCoverage struct {
	Environments []PinnedEnvironment `json:"environments"`
	Count        int                 `json:"count"`
	More         bool                `json:"more,omitempty"`
	Warning      string              `json:"warning"`
}

// PinnedEnvironment is an environment of another project whose address a
// CIDR peer covers, with that address as the CIDR sees it.
type PinnedEnvironment struct {
	ID        string `json:"id"`
	ProjectID string `json:"project_id"`
	Address   string `json:"address"`
}

// EffectiveRule is one allow rule in an environment's merged rule set,
// traced back to the policy and rule index it came from.
type EffectiveRule struct {
	PolicyID   string          `json:"policy_id"`
	PolicyName string          `json:"policy_name"`
	RuleIndex  int             `json:"rule_index"`
	Peers      []EffectivePeer `json:"peers"`
	Ports      []Port          `json:"ports"`
	// Warnings are its peers' coverage warnings (EffectivePeer.Covers).
	Warnings []string `json:"warnings,omitempty"`
}

// EffectivePolicy is the body of GET /v1/environments/{id}/effective-policy.
// Both directions are always denied by default; Ingress and Egress are the
// allows, merged from every policy that selects the environment and has
// that direction in its policy_types.
type EffectivePolicy struct {
	EnvironmentID string          `json:"environment_id"`
	Address       string          `json:"address,omitempty"`
	Generation    int64           `json:"generation"`
	Policies      []PolicyRef     `json:"policies"`
	Ingress       []EffectiveRule `json:"ingress"`
	Egress        []EffectiveRule `json:"egress"`
}

// CheckRequest is the body of POST /v1/environments/{id}/check: would a
// packet in Direction, with the remote end at Address, be allowed?
// Address may be a host name on egress: the answer is for the addresses
// the environment's resolver holds for it now (CheckResult.Addresses).
type CheckRequest struct {
	Direction string `json:"direction"`
	Protocol  string `json:"protocol"`
	Address   string `json:"address"`
	Port      int    `json:"port,omitempty"`
}

// Match says which policy rule allowed a packet.
type Match struct {
	PolicyID   string `json:"policy_id"`
	PolicyName string `json:"policy_name"`
	Direction  string `json:"direction"`
	RuleIndex  int    `json:"rule_index"`
}

// CheckResult answers a CheckRequest. Matched is nil when denied.
type CheckResult struct {
	Allowed bool   `json:"allowed"`
	Matched *Match `json:"matched"`
	// Rules are every rule that allows the packet, Matched first; Reason
	// says in a sentence why the packet is allowed or denied.
	Rules  []Match `json:"rules,omitempty"`
	Reason string  `json:"reason,omitempty"`
	// Warnings, when the matched rule allowed the address through a CIDR
	// that covers other projects' environments, say so; with the netns
	// driver, an allowed egress to an address outside the pools while the
	// router has no uplink says "allowed by policy, but no uplink".
	Warnings []string `json:"warnings,omitempty"`
	// Addresses, when the request named a host, are the addresses it
	// stands for now; Allowed is true when the rules allow every one.
	// FQDN is the name an address matched through an fqdn peer.
	Addresses []string `json:"addresses,omitempty"`
	FQDN      string   `json:"fqdn,omitempty"`
}

// ProjectContents answers DELETE /v1/projects/{id}/contents: the
// environments now being deleted (torn down after the answer; the project
// can be deleted once they are gone), and the policies and assertions
// deleted.
type ProjectContents struct {
	Environments []ObjectRef `json:"environments"`
	Policies     []ObjectRef `json:"policies"`
	Assertions   []ObjectRef `json:"assertions"`
}

// ObjectRef is an object by its id and name.
type ObjectRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// List is a page of a collection. NextCursor is empty on the last page.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Actor is who made a request.
type Actor struct {
	TokenID string `json:"token_id"`
	Name    string `json:"name"`
}

// Source is where a request came from.
type Source struct {
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
}

// ResourceRef names the object an audit event is about.
type ResourceRef struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeFailure = "failure"
)

// AuditEvent is one link of the tamper-evident audit chain.
type AuditEvent struct {
	ID         string      `json:"id"`
	Seq        int64       `json:"seq"`
	Time       time.Time   `json:"time"`
	RequestID  string      `json:"request_id"`
	Actor      Actor       `json:"actor"`
	Source     Source      `json:"source"`
	ProjectID  string      `json:"project_id"`
	Action     string      `json:"action"`
	Resource   ResourceRef `json:"resource"`
	Outcome    string      `json:"outcome"`
	StatusCode int         `json:"status_code"`
	Reason     string      `json:"reason,omitempty"`
	Changes    *Changes    `json:"changes,omitempty"`
	PrevHash   string      `json:"prev_hash"`
	Hash       string      `json:"hash"`
	// KeyID names the HMAC key that sealed the event (isolationd serve
	// --audit-hmac-key-file); absent when Hash is a plain SHA-256.
	KeyID string `json:"key_id,omitempty"`
}

// Changes holds an object before and after a change, as JSON, secrets removed.
type Changes struct {
	Before any `json:"before"`
	After  any `json:"after"`
}

// Roles a token may have.
const (
	RoleAdmin   = "admin"
	RoleAuditor = "auditor"
	RoleEditor  = "editor"
	RoleViewer  = "viewer"
	// RoleDeveloper execs into its project's environments and reads them.
	RoleDeveloper = "developer"
	// RoleSession is a session token's: exec into its one environment,
	// and nothing else. Session tokens are minted by POST
	// /v1/environments/{id}/session-tokens, never by POST /v1/tokens.
	RoleSession = "session"
)

// Roles lists the roles POST /v1/tokens creates, most powerful first
// (RoleSession is not among them: a session token is minted from another).
var Roles = []string{RoleAdmin, RoleAuditor, RoleEditor, RoleDeveloper, RoleViewer}

// Token is an API token as the API shows it: never its secret, except in
// the answer to its creation (TokenCreated).
type Token struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	ProjectID string `json:"project_id,omitempty"`
	// Developer grants an editor, viewer or auditor token exec in its
	// scope, as the developer role has.
	Developer bool `json:"developer,omitempty"`
	// EnvironmentID is the one environment a session token may exec
	// into; ParentID the token that minted it, whose revocation revokes
	// it. Both are set for role session only.
	EnvironmentID string     `json:"environment_id,omitempty"`
	ParentID      string     `json:"parent_id,omitempty"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	ETag          string     `json:"etag"`
}

// TokenCreate is the body of POST /v1/tokens.
type TokenCreate struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	ProjectID string `json:"project_id,omitempty"`
	// Developer grants an editor, viewer or auditor token exec in its
	// scope; admin and developer tokens may exec already.
	Developer bool       `json:"developer,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// TokenCreated answers POST /v1/tokens; Secret is shown this once. The
// server keeps only the secret's hash, so an Idempotency-Key replay of the
// creation answers the same token without Secret and with Note saying why.
type TokenCreated struct {
	Token
	Secret string `json:"secret,omitempty"`
	Note   string `json:"note,omitempty"`
}

// WhoAmI answers GET /v1/whoami: the caller's token as the server knows it
// (never its secret) and which server answered, so a client can check at
// start-up that it talks to isolationd with the token it means.
type WhoAmI struct {
	TokenID string `json:"token_id"`
	Name    string `json:"name"`
	Role    string `json:"role"`
	// ProjectID is the one project a project-scoped token (editor,
	// developer, viewer, session) sees, and ProjectName its name, so that
	// a token that may not list projects can still name its own; both
	// empty for admin and auditor tokens, which see every project.
	ProjectID   string `json:"project_id,omitempty"`
	ProjectName string `json:"project_name,omitempty"`
	// Developer is the token's developer grant (Token.Developer).
	Developer bool `json:"developer,omitempty"`
	// EnvironmentID is a session token's one environment.
	EnvironmentID string     `json:"environment_id,omitempty"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	Server        ServerInfo `json:"server"`
}

// ServerName is ServerInfo.Name of every isolationd.
const ServerName = "isolationd"

// ServerInfo names the server, its version, and what makes its
// environments real: the enforcement driver ("simulate" isolates
// nothing) and the workload runtime, so a client can say so up front.
type ServerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Driver  string `json:"driver,omitempty"`
	Runtime string `json:"runtime,omitempty"`
}

// Problem is an RFC 9457 problem details body (application/problem+json).
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
	// ExistingID, on a 409 for a name already taken, is the id of the
	// object holding it (an RFC 9457 extension member).
	ExistingID string `json:"existing_id,omitempty"`
	// ExpiredAt and TTLSeconds, on a 410 for an environment its TTL
	// removed, are when it expired and its ttl_seconds.
	ExpiredAt  *time.Time `json:"expired_at,omitempty"`
	TTLSeconds *int64     `json:"ttl_seconds,omitempty"`
}

// FieldError names a field of the request (a JSON path such as
// "ingress[0].from[1].cidr") and the rule it broke.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Media types.
const (
	MediaJSON    = "application/json"
	MediaProblem = "application/problem+json"
)

// Header names the API uses beyond the standard ones.
const (
	HeaderRequestID      = "X-Request-Id"
	HeaderIdempotencyKey = "Idempotency-Key"
)

// DenialAggregate is Changes.After of an aggregate audit event (action
// auth.denied.aggregate or request.not_found.aggregate): Count refusals of
// the same source, token, status and reason, besides the first one of the
// window, which has an event of its own, between WindowStart and WindowEnd.
type DenialAggregate struct {
	Count       int       `json:"count"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
}

// Idempotency key states.
const (
	IdempotencyCommitted  = "committed"
	IdempotencyInProgress = "in_progress"
)

// IdempotencyKey answers GET /v1/idempotency-keys/{key}: whether the
// caller's request with that key was committed and, once it was, what it
// did. A key the caller's token never used (or whose record expired)
// answers 404, whoever used it.
type IdempotencyKey struct {
	Key string `json:"key"`
	// State is committed, or in_progress while the first request runs.
	State      string     `json:"state"`
	Method     string     `json:"method,omitempty"`
	Path       string     `json:"path,omitempty"`
	StatusCode int        `json:"status_code,omitempty"`
	ResourceID string     `json:"resource_id,omitempty"`
	CreatedAt  *time.Time `json:"created_at,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
}
