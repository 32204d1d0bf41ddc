// Package store persists isolationd's state: projects, environments,
// policies, assertions, tokens, idempotency records and the audit chain. Every write
// happens inside Update, so a change and its audit event commit together or
// not at all, and every commit is announced to the subscribers (Commit):
// that is how the rest of the server learns of changes, and the seam
// through which a store shared by several servers will announce theirs.
// The SQLite implementation (sqlite.go) is the default; the PostgreSQL
// one (postgres.go) is shared by several servers. Both pass the
// conformance suite in storetest.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

// Errors every implementation returns (wrapped or not); callers test them
// with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness rule was broken (a duplicate name).
	ErrConflict = errors.New("conflict")
	// ErrPrecondition: the object's generation is not the one expected.
	ErrPrecondition = errors.New("precondition failed")
	// ErrInvalidQuery: a list was asked for a filter its kind does not
	// have (for example a state filter on projects).
	ErrInvalidQuery = errors.New("invalid query")
	// ErrFull: the disk holding the store has no room for the write;
	// nothing of it was kept. It succeeds again once space is freed.
	ErrFull = errors.New("storage full")
	// ErrUnavailable: the store cannot write at all for now (a read-only
	// file system, or I/O errors; for PostgreSQL, the database cannot be
	// reached, is shutting down or did not answer in time, for reads
	// too); nothing of the write was kept. It clears by itself.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrFenced: a fenced write (Tx.CheckLease) found that the lease has
	// moved on to another holder, or expired; nothing was kept.
	ErrFenced = errors.New("lease lost")
)

// Store is a transactional store. Reads outside a transaction see the last
// committed state.
type Store interface {
	Reader
	// Update runs fn in one serialisable, durable write transaction; when
	// fn returns an error nothing it did is kept. Update is called by
	// one goroutine at a time per store or blocks until it may run.
	Update(ctx context.Context, fn func(Tx) error) error
	// Subscribe registers fn to be told of every commit from then on
	// (see Commit). Subscribers are registered once, when the server is
	// assembled, before the first Update.
	Subscribe(fn func(Commit))
	// Close releases the store.
	Close() error
}

// Reader is the read half, available inside and outside a transaction.
type Reader interface {
	GetProject(ctx context.Context, id string) (apiv1.Project, error)
	ListProjects(ctx context.Context, q ListQuery) ([]apiv1.Project, string, error)

	GetEnvironment(ctx context.Context, id string) (apiv1.Environment, error)
	// GetEnvironmentJSON returns an environment as the API serves it, so
	// that a read which only forwards it decodes and encodes nothing.
	GetEnvironmentJSON(ctx context.Context, id string) (EnvironmentJSON, error)
	// ListEnvironments pages by id; the string returned is the next cursor,
	// empty on the last page.
	ListEnvironments(ctx context.Context, q ListQuery) ([]apiv1.Environment, string, error)
	// CountEnvironments counts environments by state (for metrics).
	CountEnvironments(ctx context.Context) (map[string]int, error)
	// CountProjectEnvironments counts the environments of each project,
	// every state included; every id asked for is a key.
	CountProjectEnvironments(ctx context.Context, projectIDs ...string) (map[string]int, error)

	GetPolicy(ctx context.Context, id string) (apiv1.Policy, error)
	ListPolicies(ctx context.Context, q ListQuery) ([]apiv1.Policy, string, error)

	GetAssertion(ctx context.Context, id string) (apiv1.Assertion, error)
	ListAssertions(ctx context.Context, q ListQuery) ([]apiv1.Assertion, string, error)

	// GetToken finds a token by id; GetTokenByHash by the SHA-256 of its secret.
	GetToken(ctx context.Context, id string) (TokenRecord, error)
	GetTokenByHash(ctx context.Context, hash string) (TokenRecord, error)
	ListTokens(ctx context.Context, q ListQuery) ([]TokenRecord, string, error)

	// GetUISession finds a web console session by id; GetUISessionByHash
	// by the SHA-256 of its cookie's secret.
	GetUISession(ctx context.Context, id string) (UISession, error)
	GetUISessionByHash(ctx context.Context, hash string) (UISession, error)

	// GetIdempotency returns the record for (scope, key) if it exists and
	// has not expired.
	GetIdempotency(ctx context.Context, scope, key string) (IdempotencyRecord, error)

	// ListAudit pages the chain oldest first; the string returned is the
	// seq of the page's last event (for AuditQuery.AfterSeq), empty on the
	// last page.
	ListAudit(ctx context.Context, q AuditQuery) ([]apiv1.AuditEvent, string, error)
	// LastAudit returns the newest audit event, or ErrNotFound when the chain is empty.
	LastAudit(ctx context.Context) (apiv1.AuditEvent, error)
	// GetSIEMCursor returns the last position (audit seq, flow id) of
	// source that the SIEM sink named sink received; 0 and false when it
	// never received any.
	GetSIEMCursor(ctx context.Context, sink, source string) (pos int64, found bool, err error)
	// ListFlows pages flow records oldest first; the string returned is
	// the id of the page's last record (for FlowQuery.AfterID), empty on
	// the last page.
	ListFlows(ctx context.Context, q FlowQuery) ([]apiv1.Flow, string, error)
	// LastFlowID is the id of the newest flow record, 0 when there is
	// none.
	LastFlowID(ctx context.Context) (int64, error)

	// GetAddress returns addr's record: ErrNotFound when it was never
	// handed out.
	GetAddress(ctx context.Context, addr netip.Addr) (Address, error)
	// ListAddresses returns the records q selects, in address order.
	ListAddresses(ctx context.Context, q AddressQuery) ([]Address, error)
	// OldestFreedAddress returns, of the addresses from first to last
	// freed at or before notAfter, the one freed longest ago (the lowest
	// address among equals): ErrNotFound when there is none.
	OldestFreedAddress(ctx context.Context, first, last netip.Addr, notAfter time.Time) (Address, error)
	// AddressUsage counts the records from first to last.
	AddressUsage(ctx context.Context, first, last netip.Addr) (AddressUsage, error)
	// GetAddressCursor returns where pool's search for a never-used
	// address resumes: ErrNotFound before the first allocation.
	GetAddressCursor(ctx context.Context, pool netip.Prefix) (netip.Addr, error)
}

// Tx is a write transaction.
type Tx interface {
	Reader

	// Create* insert the object as given (the caller sets ids, times,
	// generation and ETag). A duplicate (project name; environment or
	// policy name within its project; token hash) is ErrConflict; an
	// environment or policy of a missing project is ErrNotFound. A token
	// whose Hash is not a hex SHA-256 digest is refused.
	CreateProject(ctx context.Context, p apiv1.Project) error
	CreateEnvironment(ctx context.Context, e apiv1.Environment) error
	CreatePolicy(ctx context.Context, p apiv1.Policy) error
	CreateToken(ctx context.Context, t TokenRecord) error

	// Update* replace the stored object with the same id: ErrNotFound when
	// there is none, ErrConflict when a uniqueness rule breaks.
	UpdateProject(ctx context.Context, p apiv1.Project) error
	UpdateEnvironment(ctx context.Context, e apiv1.Environment) error
	UpdatePolicy(ctx context.Context, p apiv1.Policy) error
	UpdateToken(ctx context.Context, t TokenRecord) error
	// CreateUISession and UpdateUISession write a web console session
	// (its Hash a hex SHA-256 digest, as a token's).
	CreateUISession(ctx context.Context, s UISession) error
	UpdateUISession(ctx context.Context, s UISession) error

	// Delete* remove the object: ErrNotFound when there is none;
	// ErrConflict for a project that still has environments or policies.
	DeleteProject(ctx context.Context, id string) error
	DeleteEnvironment(ctx context.Context, id string) error
	DeletePolicy(ctx context.Context, id string) error

	// CreateAssertion inserts an assertion (a duplicate name within its
	// project is ErrConflict, a missing project ErrNotFound);
	// DeleteAssertion removes one. Deleting a project deletes its
	// assertions with it.
	CreateAssertion(ctx context.Context, a apiv1.Assertion) error
	DeleteAssertion(ctx context.Context, id string) error

	// PutIdempotency stores the response to replay for (scope, key):
	// ErrConflict while an unexpired record holds the key (a concurrent
	// first request won); an expired one is replaced.
	PutIdempotency(ctx context.Context, r IdempotencyRecord) error
	// PurgeIdempotency removes records that expired before now (the
	// caller's clock; the store's own clock decides what GetIdempotency
	// and PutIdempotency see as expired).
	PurgeIdempotency(ctx context.Context, now time.Time) (int, error)

	// AppendAudit stores ev as the next link of the chain: it sets ev.Seq
	// and ev.PrevHash from the last event, then ev.Hash (audit.Seal), and
	// returns the stored event, equal to what ListAudit will return (time
	// in UTC, Changes as canonical JSON). The caller sets ev.ID and
	// ev.Time; an event without either is refused.
	AppendAudit(ctx context.Context, ev apiv1.AuditEvent) (apiv1.AuditEvent, error)
	// PutSIEMCursor records that sink received source up to pos; a
	// cursor never moves back (a lower pos changes nothing).
	PutSIEMCursor(ctx context.Context, sink, source string, pos int64) error
	// AppendFlows stores flow records and sets their ids, which only grow.
	AppendFlows(ctx context.Context, flows []apiv1.Flow) error
	// PruneFlows deletes flow records older than before, then the oldest
	// beyond the newest keep (0: no bound); it returns how many went.
	PruneFlows(ctx context.Context, before time.Time, keep int) (int, error)

	// PutAddress stores a as a.Addr's record, replacing the one before.
	// Two records holding one environment are ErrConflict.
	PutAddress(ctx context.Context, a Address) error
	// PutAddressCursor records where pool's search for a never-used
	// address resumes.
	PutAddressCursor(ctx context.Context, pool netip.Prefix, next netip.Addr) error

	// Reconcile asks for environments ids to be reconciled once the
	// transaction commits, because of the request cause (the first cause
	// given is the transaction's): the commit's announcement carries them.
	Reconcile(cause string, ids ...string)

	// CheckLease fences the transaction: ErrFenced unless holder holds
	// lease name with fence (see Leaser) now, and it keeps the lease from
	// changing hands until the transaction ends, so that no write checked
	// under a fence commits after a newer fence was handed out.
	CheckLease(name, holder string, fence int64) error
}

// Leaser elects one holder at a time among the servers sharing a store
// (the reconciler's leader), by the database's clock.
type Leaser interface {
	// Lease takes the lease name for holder, or renews it when holder
	// has it, for ttl from now. It reports held false, fence 0, when
	// another holder has an unexpired lease. The fence grows by one
	// every time the lease changes hands, never otherwise.
	Lease(ctx context.Context, name, holder string, ttl time.Duration) (fence int64, held bool, err error)
	// ReleaseLease ends holder's lease name now, so that another may take
	// it at once; releasing a lease not held does nothing.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Backend is what a server runs on, whichever the database (SQLite or
// Postgres): the store and what the server sets up and watches of it.
type Backend interface {
	Store
	Leaser
	// UseClock makes clock the store's clock for expiries (before the
	// first Update).
	UseClock(clock clockwork.Clock)
	// UseAuditKey seals the audit events appended from now on with key
	// (see SQLite.UseAuditKey).
	UseAuditKey(ctx context.Context, key *audit.Key) error
	// WriteStats counts the writes since the store was opened.
	WriteStats() WriteStats
	// Ping checks that the database answers now (for /readyz).
	Ping(ctx context.Context) error
	// SchemaVersion is the database's schema version and the one this
	// build migrates to; they differ only while another build migrates.
	SchemaVersion(ctx context.Context) (current, want int64, err error)
}

// Commit is what one Update wrote, announced to every subscriber once it
// is durable: in the goroutine of that Update, before it returns, so the
// caller's answer comes after everyone has been told. A failed Update is
// not announced. Concurrent Updates may be announced in either order;
// their audit events carry their seq.
//
// It is the one way the rest of the server learns of changes: the audit
// sink, the wait/watch hub, the token cache and the reconciler's queue
// subscribe. A store shared by several servers (Postgres) announces
// commits made by the others too, from another goroutine, in their
// commit order, once they are committed, possibly split into several
// Commits (each with part of the ids; the events in the first).
type Commit struct {
	// Events are the audit events appended, in chain order.
	Events []apiv1.AuditEvent
	// Environments and Tokens are the ids written (created, changed or
	// deleted), each once.
	Environments []string
	Tokens       []string
	// UISessions are the web console sessions written (signed in or out).
	UISessions []string
	// Reconcile lists the environments the transaction asked to
	// reconcile (Tx.Reconcile), each once, and Cause the request that
	// asked.
	Reconcile []string
	Cause     string
	// Resync says that commits of other servers may have been missed
	// (the store lost its connection for their announcements and has it
	// back): whatever a subscriber keeps from the announcements may be
	// stale. Waiters should read again, and caches of tokens and
	// sessions be dropped or checked. It carries nothing else.
	Resync bool
}

// ListQuery filters and pages a list. Zero values mean "no filter". A
// filter the kind does not have is ErrInvalidQuery: projects take
// ProjectID (their own id) and Labels; environments ProjectID, Labels,
// State and ExpiresBefore; policies ProjectID and Owner; assertions ProjectID; tokens
// ProjectID, ParentID and EnvironmentID.
type ListQuery struct {
	ProjectID string
	// Labels must all match (label=value) for an object to be listed.
	Labels map[string]string
	State  string
	// Owner filters policies by OwnerEnvironmentID.
	Owner string
	// ParentID and EnvironmentID filter tokens: the session tokens a
	// token minted, and those of an environment.
	ParentID      string
	EnvironmentID string
	// ExpiresBefore lists environments whose ExpiresAt is before it (for
	// the TTL reaper).
	ExpiresBefore time.Time
	Limit         int    // 0 means the default, 100; at most 1000
	Cursor        string // the id after which the page starts
	// MaxBytes, when positive, ends a page early (with a cursor) before
	// the stored JSON of its objects would pass it; a page always holds
	// at least one object.
	MaxBytes int
}

// AuditQuery filters and pages the audit log, oldest first.
type AuditQuery struct {
	ProjectID    string
	Action       string
	ResourceType string
	ResourceID   string
	Outcome      string
	RequestID    string
	Since        time.Time
	Limit        int
	AfterSeq     int64
}

// FlowQuery filters and pages flow records, oldest first. ProjectIDs,
// when not nil, lists the projects whose records may be listed (empty:
// none); the other zero values do not filter.
type FlowQuery struct {
	EnvironmentID string
	ProjectIDs    []string
	Verdict       string
	Direction     string
	Peer          string // an address, matching the source or the destination
	Since, Until  time.Time
	Limit         int
	AfterID       int64
}

// EnvironmentJSON is an environment encoded: JSON is exactly what
// json.Marshal gives for the apiv1.Environment that GetEnvironment returns,
// and ProjectID and Generation are its fields that authorizing the read
// and its ETag need. JSON may be shared: callers must not modify it.
type EnvironmentJSON struct {
	ProjectID  string
	Generation int64
	JSON       []byte
}

// TokenRecord is a token as stored: the hash of its secret, never the secret.
type TokenRecord struct {
	apiv1.Token
	Hash      string
	RevokedAt *time.Time
}

// IdempotencyRecord is the first response to a POST carrying an
// Idempotency-Key, stored in the same transaction as what it created.
type IdempotencyRecord struct {
	Scope      string // token id: keys of different tokens never collide
	Key        string
	Method     string
	Path       string
	BodyHash   string // SHA-256 of the request body
	StatusCode int
	Header     map[string]string // headers to replay (Location, ETag)
	Body       []byte
	ResourceID string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// DefaultLimit and MaxLimit bound list pages.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Address is an environment address the allocator has handed out: held
// by an environment, or freed at FreedAt and quarantined from then on for
// the allocator's period. An address never handed out has no record; a
// freed one keeps its record, so that the quarantine and the order of
// reuse survive restarts.
type Address struct {
	Addr          netip.Addr
	EnvironmentID string // the holder; "" once freed
	// ProjectID is the holder's project, kept once the address is freed.
	ProjectID   string
	AllocatedAt time.Time
	FreedAt     time.Time // zero while held
}

// Held reports whether an environment holds a.
func (a Address) Held() bool { return a.EnvironmentID != "" }

// AddressQuery selects address records from First to Last, both included
// and of one family.
type AddressQuery struct {
	First, Last netip.Addr
	// HeldOnly skips freed addresses.
	HeldOnly bool
	// NotProject skips the records of that project.
	NotProject string
	// EnvironmentID keeps only the record that environment holds.
	EnvironmentID string
	Limit         int // 0 means DefaultLimit; at most MaxLimit
}

// AddressUsage counts address records of a range: how many are held, how
// many freed, and the oldest and newest FreedAt of the freed ones.
type AddressUsage struct {
	Held, Freed           int
	FirstFreed, LastFreed time.Time
}
