// Package auth decides who may do what. It knows tokens (how secrets are
// made and hashed) and roles (what each may touch); it does not know HTTP.
// The API asks Decide once per request with the route's Permission and the
// project (and environment) of the object the request targets, and turns
// the Refusal it gets back into an answer (internal/api/authz.go).
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// SecretPrefix starts every token secret, so secret scanners can find a
// leaked one and so the server can reject obvious garbage cheaply.
const SecretPrefix = "isot_"

// NewSecret returns a fresh token secret with 256 bits of entropy.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashSecret is what the store keeps instead of a secret: hex SHA-256. A
// fast hash is right here because secrets are random, not passwords.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// BearerToken extracts the secret of an "Authorization: Bearer" header,
// taken exactly: the scheme (in any case), one ASCII space, and a secret
// of visible ASCII characters. Nothing is trimmed, so a secret with
// whitespace around it (a Unicode space or a second ASCII one) is refused
// rather than quietly mended.
func BearerToken(header string) (string, bool) {
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !ValidSecret(secret) {
		return "", false
	}
	return secret, true
}

// ValidSecret reports whether s can be sent as a bearer token: not empty,
// and only visible ASCII (no spaces, controls or other Unicode).
func ValidSecret(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// Principal is the authenticated caller.
type Principal struct {
	TokenID string
	Name    string
	Role    string
	// ProjectID is set for project-scoped roles (editor, developer,
	// viewer) and for session tokens (their environment's project).
	ProjectID string
	// Developer: an editor, viewer or auditor token granted exec in its
	// scope.
	Developer bool
	// EnvironmentID is a session token's one environment.
	EnvironmentID string
	// ExpiresAt is when the token stops working, nil when it never does:
	// long requests (wait_for, watch) end then.
	ExpiresAt *time.Time
}

// Actor is the principal as audit events record it.
func (p Principal) Actor() apiv1.Actor { return apiv1.Actor{TokenID: p.TokenID, Name: p.Name} }

// OrgWide reports whether the principal's role spans every project.
func (p Principal) OrgWide() bool { return p.Role == apiv1.RoleAdmin || p.Role == apiv1.RoleAuditor }

// Sees reports whether objects of project id exist as far as p is
// concerned: lists show them and direct requests do not get 404.
func (p Principal) Sees(projectID string) bool {
	return p.OrgWide() || (p.ProjectID != "" && p.ProjectID == projectID)
}

// OrgScope is the project of objects that belong to the organization, not
// to a project (admin and auditor tokens): only organization-wide
// principals see them, so to the others they do not exist.
const OrgScope = "*"

// Resource kinds a route acts on.
type Resource string

const (
	ResourceProject     Resource = "project"
	ResourceEnvironment Resource = "environment"
	ResourcePolicy      Resource = "policy"
	ResourceAudit       Resource = "audit"
	ResourceToken       Resource = "token"
	// ResourceImage: the server's image store. Images belong to no
	// project: every role reads them (an editor chooses its workloads'
	// images among them), only admins import and delete them.
	ResourceImage Resource = "image"
	// ResourceSelf: what a token asks about itself (whoami, its own
	// idempotency keys). Every valid token may.
	ResourceSelf Resource = "self"
)

// plural names the resource in a sentence ("may not write policies").
func (r Resource) plural() string {
	switch r {
	case ResourcePolicy:
		return "policies"
	case ResourceAudit:
		return "the audit log"
	}
	return string(r) + "s"
}

// Verb is what a route does to its resource.
type Verb string

const (
	VerbRead  Verb = "read"
	VerbWrite Verb = "write"
	// VerbExec runs commands in an environment's container: the most
	// sensitive grant, held by admins and developers only.
	VerbExec Verb = "exec"
	// VerbSession mints (and revokes) session tokens of an environment:
	// whoever may exec there may, except a session token itself.
	VerbSession Verb = "session"
)

// Permission is what a route requires. Public routes (health, readiness)
// have none and never reach Decide.
type Permission struct {
	Resource Resource
	Verb     Verb
}

// Refusal is why a request is refused. The API decides what each one
// answers; the domain only says which it is.
type Refusal string

const (
	// Unauthenticated: no valid token (none, malformed, unknown, revoked
	// or expired).
	Unauthenticated Refusal = "unauthenticated"
	// Forbidden: the object is in the principal's scope, but its role is
	// not enough.
	Forbidden Refusal = "forbidden"
	// OutOfScope: the object lies outside the principal's scope, so its
	// existence must not leak: it is refused as an absent object is.
	OutOfScope Refusal = "out_of_scope"
	// RateLimited: the caller's budget of requests is spent (the API's
	// limiters decide it, per token and per address).
	RateLimited Refusal = "rate_limited"
)

// Decision is the answer to one authorization question.
type Decision struct {
	// Refusal is "" when the request is allowed: Forbidden or OutOfScope
	// otherwise.
	Refusal Refusal
	Reason  string
	// NeededRole is the least role that would have been allowed, for the
	// error message ("needs role editor").
	NeededRole string
}

// Allowed reports whether the request may go on.
func (d Decision) Allowed() bool { return d.Refusal == "" }

// Decide answers whether p may perform perm on an object of projectID
// and, for the routes about one environment, environmentID. projectID is
// "" for requests not tied to one project (lists across projects,
// creating a project, tokens, the audit log), environmentID "" for
// requests not about one environment.
func Decide(p Principal, perm Permission, projectID, environmentID string) Decision {
	if p.Role == apiv1.RoleAdmin {
		return Decision{}
	}
	if projectID != "" && !p.Sees(projectID) {
		return Decision{Refusal: OutOfScope, Reason: "project outside the token's scope"}
	}
	if p.EnvironmentID != "" && environmentID != "" && environmentID != p.EnvironmentID {
		// A session token's scope is its environment: the others of its
		// project do not exist for it either.
		return Decision{Refusal: OutOfScope, Reason: "environment outside the session token's scope"}
	}
	if allowed(p, perm) {
		return Decision{}
	}
	return Decision{
		Refusal:    Forbidden,
		Reason:     "role " + p.Role + " may not " + perm.phrase(),
		NeededRole: neededRole(perm),
	}
}

// allowed is the role matrix; scope has been checked already.
func allowed(p Principal, perm Permission) bool {
	if perm.Resource == ResourceSelf {
		return true
	}
	if perm.Resource == ResourceEnvironment && (perm.Verb == VerbExec || perm.Verb == VerbSession) {
		return mayExec(p, perm.Verb)
	}
	switch p.Role {
	case apiv1.RoleAdmin:
		return true
	case apiv1.RoleAuditor:
		return perm.Verb == VerbRead
	case apiv1.RoleEditor:
		switch perm.Resource {
		case ResourceEnvironment, ResourcePolicy:
			return perm.Verb == VerbRead || perm.Verb == VerbWrite
		case ResourceProject, ResourceImage:
			return perm.Verb == VerbRead
		}
	case apiv1.RoleViewer:
		switch perm.Resource {
		case ResourceEnvironment, ResourcePolicy, ResourceProject, ResourceImage:
			return perm.Verb == VerbRead
		}
	case apiv1.RoleDeveloper:
		// Its project's environments, to read and exec into, and nothing
		// else: not even the project itself, its policies or the images.
		return perm.Resource == ResourceEnvironment && perm.Verb == VerbRead
	}
	return false
}

// mayExec says who execs into environments of its scope (verb exec) and
// mints session tokens there (verb session): admins and developers, and
// the editor, viewer and auditor tokens granted developer; a session
// token execs, into its own environment (Decide checked that), and does
// nothing else.
func mayExec(p Principal, verb Verb) bool {
	switch p.Role {
	case apiv1.RoleAdmin, apiv1.RoleDeveloper:
		return true
	case apiv1.RoleSession:
		return verb == VerbExec && p.EnvironmentID != ""
	case apiv1.RoleEditor, apiv1.RoleViewer, apiv1.RoleAuditor:
		return p.Developer
	}
	return false
}

// phrase is what perm does, in a sentence ("exec into environments").
func (perm Permission) phrase() string {
	switch perm.Verb {
	case VerbExec:
		return "exec into " + perm.Resource.plural()
	case VerbSession:
		return "mint session tokens for " + perm.Resource.plural()
	}
	return string(perm.Verb) + " " + perm.Resource.plural()
}

// neededRole names the least role that holds perm.
func neededRole(perm Permission) string {
	switch {
	case perm.Resource == ResourceProject && perm.Verb == VerbWrite,
		perm.Resource == ResourceToken && perm.Verb == VerbWrite,
		perm.Resource == ResourceImage && perm.Verb == VerbWrite:
		return apiv1.RoleAdmin
	case perm.Verb == VerbExec, perm.Verb == VerbSession:
		return apiv1.RoleDeveloper
	case perm.Resource == ResourceAudit, perm.Resource == ResourceToken:
		return apiv1.RoleAuditor
	case perm.Verb == VerbWrite:
		return apiv1.RoleEditor
	default:
		return apiv1.RoleViewer
	}
}
