// Package storetest is the conformance suite every store.Store
// implementation must pass: the SQLite store (sqlite_test.go) and the
// PostgreSQL store (postgres_test.go) run it in their tests.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Opener returns a new, empty store; the suite closes it.
type Opener func(t *testing.T) store.Store

// Reopener closes s and opens the same data again, as a restart would.
type Reopener func(t *testing.T, s store.Store) store.Store

// Option configures Run.
type Option func(*suite)

// WithReopen enables the durability tests, which need to reopen a store.
func WithReopen(reopen Reopener) Option {
	return func(s *suite) { s.reopen = reopen }
}

type suite struct {
	open   Opener
	reopen Reopener
	shared func(t *testing.T, s store.Store) store.Store
}

// Run runs the suite, each test on a store of its own.
func Run(t *testing.T, open Opener, opts ...Option) {
	s := &suite{open: open}
	for _, o := range opts {
		o(s)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"ProjectsCreateGetUpdateDelete", testProjectCRUD},
		{"EnvironmentsCreateGetUpdateDelete", testEnvironmentCRUD},
		{"EnvironmentJSONIsTheEncodingOfGetEnvironment", testEnvironmentJSON},
		{"ReadsAfterAnUpdateReturnsSeeItEvenUnderConcurrentReads", testReadAfterWrite},
		{"PoliciesCreateGetUpdateDelete", testPolicyCRUD},
		{"AssertionsCreateGetListDeleteAndGoWithTheirProject", testAssertions},
		{"TokensCreateGetUpdate", testTokenCRUD},
		{"ObjectsWithoutIDsAreRefused", testObjectsNeedIDs},
		{"DuplicateNamesAndIDsConflict", testUniqueness},
		{"ProjectWithChildrenRefusesDeletion", testProjectDeletionGuard},
		{"ChildOfMissingProjectIsNotFound", testMissingProject},
		{"FailedUpdateKeepsNothing", testRollback},
		{"CommitsAreAnnouncedWithWhatTheyWrote", testCommitAnnouncements},
		{"PanickingUpdateKeepsNothingAndStoreStaysUsable", testPanic},
		{"CancelledContextRunsNothing", testCancelledContext},
		{"TransactionReadsItsOwnWritesOthersDoNot", testIsolation},
		{"ListsPageThroughEveryFilter", testPagination},
		{"ListLimitsAreClamped", testListLimits},
		{"UnsupportedFiltersAreInvalidQueries", testInvalidFilters},
		{"CountEnvironmentsByState", testCountEnvironments},
		{"CountEnvironmentsByProject", testCountProjectEnvironments},
		{"ListPagesStopAtTheirByteBudget", testListMaxBytes},
		{"IdempotencyRecordsPutGetExpirePurge", testIdempotency},
		{"AuditAppendsChainLinks", testAuditChain},
		{"AuditEventsWithoutIDOrTimeAreRefused", testAuditNeedsIDAndTime},
		{"AuditListFilters", testAuditFilters},
		{"ConcurrentUpdatesApplyExactlyOnce", testConcurrentUpdates},
		{"AddressRecordsPutGetListAndRanges", testAddresses},
		{"OldestFreedAddressIsLeastRecentlyFreedInRange", testOldestFreedAddress},
		{"AddressCursorsPerPool", testAddressCursor},
		{"FailedUpdateKeepsNoAddressRecord", testAddressRollback},
		{"FlowRecordsAppendListFilterAndPage", testFlows},
		{"FlowRecordsArePrunedByAgeThenCount", testFlowPruning},
		{"LeasesAreHeldRenewedAndFenceWrites", testLeases},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := s.open(t)
			t.Cleanup(func() { st.Close() })
			tc.fn(t, st)
		})
	}
	if s.shared != nil {
		t.Run("LeasesHaveOneHolderAndMoveOnWithTheirFence", func(t *testing.T) {
			a := s.open(t)
			t.Cleanup(func() { a.Close() })
			b := s.shared(t, a)
			t.Cleanup(func() { b.Close() })
			testExclusiveLeases(t, a, b)
		})
	}
	t.Run("ReopenKeepsEverythingCommitted", func(t *testing.T) {
		if s.reopen == nil {
			t.Fatal("storetest.Run needs WithReopen to check durability across Close and Open")
		}
		testReopen(t, s.open, s.reopen)
	})
	t.Run("ReopenKeepsAddressRecordsAndCursors", func(t *testing.T) {
		if s.reopen == nil {
			t.Fatal("storetest.Run needs WithReopen to check durability across Close and Open")
		}
		testReopenAddresses(t, s.open, s.reopen)
	})
}

var ctx = context.Background()

// newID makes a time-sortable id like the server's.
func newID(prefix string) string {
	return prefix + "_" + uuid.Must(uuid.NewV7()).String()
}

// now is truncated to microseconds so that comparisons do not depend on
// the precision a store keeps beyond that.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func update(t *testing.T, st store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := st.Update(ctx, fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

func diff(t *testing.T, what string, got, want any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func project(name string) apiv1.Project {
	ts := now()
	return apiv1.Project{ID: newID("prj"), Name: name, Description: "d", Labels: map[string]string{"team": "core"},
		Generation: 1, CreatedAt: ts, UpdatedAt: ts, ETag: `"1"`}
}

func environment(projectID, name string, labels map[string]string, state string) apiv1.Environment {
	ts := now()
	return apiv1.Environment{
		ID: newID("env"), ProjectID: projectID, Name: name, Labels: labels,
		Resources: apiv1.Resources{CPUMillis: apiv1.DefaultCPUMillis, MemoryMB: apiv1.DefaultMemoryMB, DiskGB: apiv1.DefaultDiskGB},
		State:     state, Generation: 1, CreatedAt: ts, UpdatedAt: ts, ETag: `"1"`,
		Enforcement: apiv1.Enforcement{Driver: "simulate", Generation: 1},
	}
}

func policy(projectID, name, owner string) apiv1.Policy {
	ts := now()
	port := 443
	return apiv1.Policy{
		ID: newID("pol"), ProjectID: projectID, OwnerEnvironmentID: owner,
		PolicySpec: apiv1.PolicySpec{
			Name: name, EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{"tier": "web"}},
			PolicyTypes: []string{apiv1.Ingress},
			Ingress:     []apiv1.IngressRule{{From: []apiv1.Peer{{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}, Ports: []apiv1.Port{{Protocol: "tcp", Port: &port}}}},
		},
		Generation: 1, CreatedAt: ts, UpdatedAt: ts, ETag: `"1"`,
	}
}

func token(name, projectID string) store.TokenRecord {
	id := newID("tok")
	return store.TokenRecord{
		Token: apiv1.Token{ID: id, Name: name, Role: apiv1.RoleEditor, ProjectID: projectID, CreatedAt: now(), ETag: `"1"`},
		Hash:  fmt.Sprintf("%x", sha256.Sum256([]byte(id))),
	}
}

// mustProject creates a project and returns it.
func mustProject(t *testing.T, st store.Store, name string) apiv1.Project {
	t.Helper()
	p := project(name)
	update(t, st, func(tx store.Tx) error { return tx.CreateProject(ctx, p) })
	return p
}

// crud checks the life of one object kind: create, read back (inside the
// transaction and after it), replace, and delete (when del is set).
type crud[T any] struct {
	obj    T
	id     string
	change func(T) T
	create func(store.Tx, context.Context, T) error
	update func(store.Tx, context.Context, T) error
	del    func(store.Tx, context.Context, string) error
	get    func(store.Reader, context.Context, string) (T, error)
}

func (c crud[T]) run(t *testing.T, st store.Store) {
	t.Helper()
	_, err := c.get(st, ctx, c.id)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, st.Update(ctx, func(tx store.Tx) error { return c.update(tx, ctx, c.obj) }), store.ErrNotFound)

	update(t, st, func(tx store.Tx) error {
		if err := c.create(tx, ctx, c.obj); err != nil {
			return err
		}
		got, err := c.get(tx, ctx, c.id)
		if err != nil {
			return err
		}
		diff(t, "read inside the creating transaction", got, c.obj)
		return nil
	})
	got, err := c.get(st, ctx, c.id)
	if err != nil {
		t.Fatalf("get after create: %v", err)
	}
	diff(t, "read after create", got, c.obj)

	changed := c.change(c.obj)
	update(t, st, func(tx store.Tx) error { return c.update(tx, ctx, changed) })
	got, err = c.get(st, ctx, c.id)
	if err != nil {
		t.Fatalf("get after update: %v", err)
	}
	diff(t, "read after update", got, changed)

	if c.del == nil {
		return
	}
	update(t, st, func(tx store.Tx) error { return c.del(tx, ctx, c.id) })
	_, err = c.get(st, ctx, c.id)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, st.Update(ctx, func(tx store.Tx) error { return c.del(tx, ctx, c.id) }), store.ErrNotFound)
}

func testProjectCRUD(t *testing.T, st store.Store) {
	p := project("alpha")
	crud[apiv1.Project]{
		obj: p, id: p.ID,
		change: func(p apiv1.Project) apiv1.Project {
			p.Name, p.Description, p.Labels, p.Generation, p.ETag = "beta", "changed", map[string]string{"x": "y"}, 2, `"2"`
			return p
		},
		create: store.Tx.CreateProject,
		update: store.Tx.UpdateProject,
		del:    store.Tx.DeleteProject,
		get:    store.Reader.GetProject,
	}.run(t, st)
}

func testEnvironmentCRUD(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	e := environment(p.ID, "web", map[string]string{"tier": "web", "empty": ""}, apiv1.StatePending)
	ttl := int64(3600)
	crud[apiv1.Environment]{
		obj: e, id: e.ID,
		change: func(e apiv1.Environment) apiv1.Environment {
			exp := now().Add(time.Hour)
			e.Name, e.State, e.StateMessage, e.Labels = "web2", apiv1.StateReady, "ok", nil
			e.TTLSeconds, e.ExpiresAt, e.Generation = &ttl, &exp, 2
			e.Enforcement = apiv1.Enforcement{Driver: "simulate", Generation: 2, ObservedGeneration: 2, Enforced: true, Address: "198.18.0.2"}
			return e
		},
		create: store.Tx.CreateEnvironment,
		update: store.Tx.UpdateEnvironment,
		del:    store.Tx.DeleteEnvironment,
		get:    store.Reader.GetEnvironment,
	}.run(t, st)
}

// getJSON checks that r's GetEnvironmentJSON of id is what json.Marshal
// gives for its GetEnvironment, and returns the environment.
func getJSON(t *testing.T, r store.Reader, id string) apiv1.Environment {
	t.Helper()
	raw, err := r.GetEnvironmentJSON(ctx, id)
	if err != nil {
		t.Fatalf("GetEnvironmentJSON: %v", err)
	}
	e, err := r.GetEnvironment(ctx, id)
	if err != nil {
		t.Fatalf("GetEnvironment: %v", err)
	}
	want, _ := json.Marshal(e)
	if string(raw.JSON) != string(want) || raw.ProjectID != e.ProjectID || raw.Generation != e.Generation {
		t.Fatalf("GetEnvironmentJSON = {%s %d %s}, want {%s %d %s}", raw.ProjectID, raw.Generation, raw.JSON, e.ProjectID, e.Generation, want)
	}
	return e
}

func testEnvironmentJSON(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	e := environment(p.ID, "web", map[string]string{"tier": "web"}, apiv1.StatePending)
	_, err := st.GetEnvironmentJSON(ctx, e.ID)
	wantErr(t, err, store.ErrNotFound)
	update(t, st, func(tx store.Tx) error { return tx.CreateEnvironment(ctx, e) })
	diff(t, "after create", getJSON(t, st, e.ID), e)

	// Inside a transaction: its own write; outside: the committed one.
	next := e
	next.Generation, next.State = 2, apiv1.StateReady
	update(t, st, func(tx store.Tx) error {
		if err := tx.UpdateEnvironment(ctx, next); err != nil {
			return err
		}
		diff(t, "inside the updating transaction", getJSON(t, tx, e.ID), next)
		return nil
	})
	diff(t, "after update", getJSON(t, st, e.ID), next)

	// A rolled-back write is never seen, even right after a read.
	rolled := next
	rolled.Generation = 3
	wantErr(t, st.Update(ctx, func(tx store.Tx) error {
		if err := tx.UpdateEnvironment(ctx, rolled); err != nil {
			return err
		}
		return errDeliberate
	}), errDeliberate)
	diff(t, "after a rolled-back update", getJSON(t, st, e.ID), next)

	update(t, st, func(tx store.Tx) error { return tx.DeleteEnvironment(ctx, e.ID) })
	_, err = st.GetEnvironmentJSON(ctx, e.ID)
	wantErr(t, err, store.ErrNotFound)
}

// testReadAfterWrite bumps an environment's generation many times while
// readers read it as fast as they can (racing any cache the store keeps
// against its commits): every read after an Update returned sees that
// Update, and no reader ever sees a generation go back.
func testReadAfterWrite(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	e := environment(p.ID, "web", nil, apiv1.StateReady)
	update(t, st, func(tx store.Tx) error { return tx.CreateEnvironment(ctx, e) })
	const writes, readers = 300, 4
	stop := make(chan struct{})
	errc := make(chan error, readers)
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			last := int64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := st.GetEnvironmentJSON(ctx, e.ID)
				if err != nil || got.Generation < last {
					errc <- fmt.Errorf("read generation %d after %d (err %v)", got.Generation, last, err)
					return
				}
				last = got.Generation
			}
		})
	}
	for gen := int64(2); gen <= writes; gen++ {
		next := e
		next.Generation = gen
		update(t, st, func(tx store.Tx) error { return tx.UpdateEnvironment(ctx, next) })
		got, err := st.GetEnvironment(ctx, e.ID)
		if err != nil || got.Generation != gen {
			close(stop)
			t.Fatalf("after the Update to generation %d returned, read %d (err %v)", gen, got.Generation, err)
		}
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

func testPolicyCRUD(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	pol := policy(p.ID, "allow-web", "")
	crud[apiv1.Policy]{
		obj: pol, id: pol.ID,
		change: func(p apiv1.Policy) apiv1.Policy {
			p.PolicyTypes = []string{apiv1.Ingress, apiv1.Egress}
			p.Egress = []apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"tier": "db"}}}}}}
			p.Generation, p.ETag = 2, `"2"`
			return p
		},
		create: store.Tx.CreatePolicy,
		update: store.Tx.UpdatePolicy,
		del:    store.Tx.DeletePolicy,
		get:    store.Reader.GetPolicy,
	}.run(t, st)
}

func testTokenCRUD(t *testing.T, st store.Store) {
	tok := token("ci", "")
	tok.Developer = true
	crud[store.TokenRecord]{
		obj: tok, id: tok.ID,
		change: func(tr store.TokenRecord) store.TokenRecord {
			revoked := now()
			tr.RevokedAt = &revoked
			return tr
		},
		create: store.Tx.CreateToken,
		update: store.Tx.UpdateToken,
		get:    store.Reader.GetToken,
	}.run(t, st)

	got, err := st.GetTokenByHash(ctx, tok.Hash)
	if err != nil {
		t.Fatalf("GetTokenByHash: %v", err)
	}
	if got.ID != tok.ID || got.RevokedAt == nil {
		t.Fatalf("GetTokenByHash = %+v, want token %s, revoked", got, tok.ID)
	}
	_, err = st.GetTokenByHash(ctx, fmt.Sprintf("%064d", 0))
	wantErr(t, err, store.ErrNotFound)

	// A session token keeps its environment and the token that minted it.
	ses := token("ses", "prj_x")
	ses.Role, ses.ParentID, ses.EnvironmentID = apiv1.RoleSession, tok.ID, "env_x"
	update(t, st, func(tx store.Tx) error { return tx.CreateToken(ctx, ses) })
	got, err = st.GetToken(ctx, ses.ID)
	if err != nil {
		t.Fatalf("GetToken of a session token: %v", err)
	}
	diff(t, "session token", got, ses)

	// Only digests are stored: a secret handed over by mistake is refused,
	// and not repeated in the error.
	const secret = "iso_s3cr3t-token-value"
	bad := token("leak", "")
	bad.Hash = secret
	err = st.Update(ctx, func(tx store.Tx) error { return tx.CreateToken(ctx, bad) })
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("CreateToken with a non-digest hash: error %v", err)
	}
	if _, err := st.GetToken(ctx, bad.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token with a non-digest hash was stored (%v)", err)
	}
}

func testObjectsNeedIDs(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	for name, fn := range map[string]func(tx store.Tx) error{
		"project": func(tx store.Tx) error { x := project("beta"); x.ID = ""; return tx.CreateProject(ctx, x) },
		"environment": func(tx store.Tx) error {
			x := environment(p.ID, "web", nil, "pending")
			x.ID = ""
			return tx.CreateEnvironment(ctx, x)
		},
		"policy": func(tx store.Tx) error { x := policy(p.ID, "allow", ""); x.ID = ""; return tx.CreatePolicy(ctx, x) },
		"token":  func(tx store.Tx) error { x := token("t", ""); x.ID = ""; return tx.CreateToken(ctx, x) },
	} {
		if err := st.Update(ctx, fn); err == nil {
			t.Errorf("%s without an id was stored", name)
		}
	}
}

func testUniqueness(t *testing.T, st store.Store) {
	a := mustProject(t, st, "alpha")
	b := mustProject(t, st, "beta")
	env := environment(a.ID, "web", nil, apiv1.StatePending)
	pol := policy(a.ID, "allow", "")
	tok := token("ci", "")
	update(t, st, func(tx store.Tx) error {
		return errors.Join(tx.CreateEnvironment(ctx, env), tx.CreatePolicy(ctx, pol), tx.CreateToken(ctx, tok))
	})

	renamed := a
	renamed.Name = "beta"
	dupTok := token("other", "")
	dupTok.Hash = tok.Hash
	dupEnvID := environment(a.ID, "other", nil, apiv1.StatePending)
	dupEnvID.ID = env.ID
	for name, fn := range map[string]func(tx store.Tx) error{
		"project name":                 func(tx store.Tx) error { return tx.CreateProject(ctx, project("alpha")) },
		"project renamed onto another": func(tx store.Tx) error { return tx.UpdateProject(ctx, renamed) },
		"project id":                   func(tx store.Tx) error { p := project("gamma"); p.ID = a.ID; return tx.CreateProject(ctx, p) },
		"environment name in project": func(tx store.Tx) error {
			return tx.CreateEnvironment(ctx, environment(a.ID, "web", nil, apiv1.StatePending))
		},
		"environment id":         func(tx store.Tx) error { return tx.CreateEnvironment(ctx, dupEnvID) },
		"policy name in project": func(tx store.Tx) error { return tx.CreatePolicy(ctx, policy(a.ID, "allow", "")) },
		"token hash":             func(tx store.Tx) error { return tx.CreateToken(ctx, dupTok) },
	} {
		err := st.Update(ctx, fn)
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate %s: error = %v, want ErrConflict", name, err)
		}
	}
	// Names are unique within a project only.
	update(t, st, func(tx store.Tx) error {
		return errors.Join(
			tx.CreateEnvironment(ctx, environment(b.ID, "web", nil, apiv1.StatePending)),
			tx.CreatePolicy(ctx, policy(b.ID, "allow", "")),
		)
	})
	// Renaming into a taken name conflicts; renaming to a free one works.
	other := environment(a.ID, "db", nil, apiv1.StatePending)
	update(t, st, func(tx store.Tx) error { return tx.CreateEnvironment(ctx, other) })
	other.Name = "web"
	wantErr(t, st.Update(ctx, func(tx store.Tx) error { return tx.UpdateEnvironment(ctx, other) }), store.ErrConflict)
	other.Name = "cache"
	update(t, st, func(tx store.Tx) error { return tx.UpdateEnvironment(ctx, other) })
}

func testProjectDeletionGuard(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	env := environment(p.ID, "web", nil, apiv1.StatePending)
	pol := policy(p.ID, "allow", "")
	update(t, st, func(tx store.Tx) error { return tx.CreateEnvironment(ctx, env) })
	wantErr(t, st.Update(ctx, func(tx store.Tx) error { return tx.DeleteProject(ctx, p.ID) }), store.ErrConflict)
	update(t, st, func(tx store.Tx) error {
		return errors.Join(tx.DeleteEnvironment(ctx, env.ID), tx.CreatePolicy(ctx, pol))
	})
	wantErr(t, st.Update(ctx, func(tx store.Tx) error { return tx.DeleteProject(ctx, p.ID) }), store.ErrConflict)
	update(t, st, func(tx store.Tx) error {
		return errors.Join(tx.DeletePolicy(ctx, pol.ID), tx.DeleteProject(ctx, p.ID))
	})
	_, err := st.GetProject(ctx, p.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testMissingProject(t *testing.T, st store.Store) {
	missing := newID("prj")
	wantErr(t, st.Update(ctx, func(tx store.Tx) error {
		return tx.CreateEnvironment(ctx, environment(missing, "web", nil, apiv1.StatePending))
	}), store.ErrNotFound)
	wantErr(t, st.Update(ctx, func(tx store.Tx) error {
		return tx.CreatePolicy(ctx, policy(missing, "allow", ""))
	}), store.ErrNotFound)
}

// snapshot is everything a test can see in a store, for "nothing changed"
// assertions.
type snapshot struct {
	Projects []apiv1.Project
	Envs     []apiv1.Environment
	Policies []apiv1.Policy
	Tokens   []store.TokenRecord
	Audit    []apiv1.AuditEvent
}

func take(t *testing.T, r store.Reader) snapshot {
	t.Helper()
	var s snapshot
	var err error
	q := store.ListQuery{Limit: store.MaxLimit}
	s.Projects, _, err = r.ListProjects(ctx, q)
	if err == nil {
		s.Envs, _, err = r.ListEnvironments(ctx, q)
	}
	if err == nil {
		s.Policies, _, err = r.ListPolicies(ctx, q)
	}
	if err == nil {
		s.Tokens, _, err = r.ListTokens(ctx, q)
	}
	if err == nil {
		s.Audit, _, err = r.ListAudit(ctx, store.AuditQuery{Limit: store.MaxLimit})
	}
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}

// everyWrite does one of each kind of write, for rollback tests.
func everyWrite(tx store.Tx, p apiv1.Project) error {
	return errors.Join(
		tx.CreateProject(ctx, project("new")),
		tx.CreateEnvironment(ctx, environment(p.ID, "web", nil, apiv1.StatePending)),
		tx.CreatePolicy(ctx, policy(p.ID, "allow", "")),
		tx.CreateToken(ctx, token("t", p.ID)),
		tx.UpdateProject(ctx, func() apiv1.Project { p.Description = "changed"; return p }()),
		tx.PutIdempotency(ctx, store.IdempotencyRecord{Scope: "s", Key: "k", ExpiresAt: time.Now().Add(time.Hour)}),
		func() error {
			_, err := tx.AppendAudit(ctx, apiv1.AuditEvent{ID: newID("evt"), Time: now(), Action: "x.create"})
			return err
		}(),
	)
}

func testRollback(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	update(t, st, func(tx store.Tx) error {
		_, err := tx.AppendAudit(ctx, apiv1.AuditEvent{ID: newID("evt"), Time: now(), Action: "seed"})
		return err
	})
	before := take(t, st)

	boom := errors.New("boom")
	err := st.Update(ctx, func(tx store.Tx) error {
		if err := everyWrite(tx, p); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, err, boom)
	diff(t, "store after a failed Update", take(t, st), before)
	_, err = st.GetIdempotency(ctx, "s", "k")
	wantErr(t, err, store.ErrNotFound)

	// A conflict half-way through also undoes what came before it.
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateEnvironment(ctx, environment(p.ID, "first", nil, apiv1.StatePending)); err != nil {
			return err
		}
		return tx.CreateProject(ctx, project("alpha"))
	})
	wantErr(t, err, store.ErrConflict)
	diff(t, "store after a conflicting Update", take(t, st), before)

	// The next link of the chain follows the last committed one.
	update(t, st, func(tx store.Tx) error {
		ev, err := tx.AppendAudit(ctx, apiv1.AuditEvent{ID: newID("evt"), Time: now(), Action: "after"})
		if err == nil && (ev.Seq != 2 || ev.PrevHash != before.Audit[0].Hash) {
			t.Errorf("event after rollback: seq %d prev %s, want seq 2 prev %s", ev.Seq, ev.PrevHash, before.Audit[0].Hash)
		}
		return err
	})
}

func testPanic(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	before := take(t, st)
	func() {
		defer func() {
			if v := recover(); v != "kaboom" {
				t.Errorf("recovered %v, want the panic of fn re-raised", v)
			}
		}()
		_ = st.Update(ctx, func(tx store.Tx) error {
			if err := everyWrite(tx, p); err != nil {
				return err
			}
			panic("kaboom")
		})
	}()
	diff(t, "store after a panicking Update", take(t, st), before)
	update(t, st, func(tx store.Tx) error { return tx.CreateProject(ctx, project("beta")) })
}

func testCancelledContext(t *testing.T, st store.Store) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	err := st.Update(c, func(tx store.Tx) error { ran = true; return nil })
	wantErr(t, err, context.Canceled)
	if ran {
		t.Fatal("Update ran fn with a cancelled context")
	}
}

func testIsolation(t *testing.T, st store.Store) {
	p := project("alpha")
	update(t, st, func(tx store.Tx) error {
		if err := tx.CreateProject(ctx, p); err != nil {
			return err
		}
		if _, err := tx.GetProject(ctx, p.ID); err != nil {
			t.Errorf("transaction does not see its own write: %v", err)
		}
		if _, err := st.GetProject(ctx, p.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("read outside the transaction saw an uncommitted project: %v", err)
		}
		return nil
	})
	if _, err := st.GetProject(ctx, p.ID); err != nil {
		t.Fatalf("committed project not visible: %v", err)
	}
}

// fixture is a store filled for list tests, with the expected contents.
type fixture struct {
	projects []apiv1.Project
	envs     []apiv1.Environment
	policies []apiv1.Policy
	tokens   []store.TokenRecord
}

func fill(t *testing.T, st store.Store) fixture {
	var f fixture
	for i := range 3 {
		p := project(fmt.Sprintf("p%d", i))
		p.Labels = map[string]string{"team": []string{"payments", "search"}[i%2]}
		f.projects = append(f.projects, p)
	}
	teams, tiers := []string{"payments", "search", "infra"}, []string{"dev", "prod"}
	for i := range 37 {
		p := f.projects[i%2]
		e := environment(p.ID, fmt.Sprintf("env%d", i), map[string]string{"team": teams[i%3], "tier": tiers[i%2]}, apiv1.States[i%4])
		if i%5 == 0 {
			exp := now().Add(time.Duration(i) * time.Minute)
			e.ExpiresAt = &exp
		}
		if i%7 == 0 {
			e.Labels = nil
		}
		f.envs = append(f.envs, e)
	}
	for i := range 9 {
		owner := ""
		if i%3 == 0 {
			owner = f.envs[i].ID
		}
		f.policies = append(f.policies, policy(f.projects[i%2].ID, fmt.Sprintf("pol%d", i), owner))
	}
	for i := range 8 {
		f.tokens = append(f.tokens, token(fmt.Sprintf("t%d", i), []string{"", f.projects[0].ID}[i%2]))
	}
	// Session tokens, minted by two of them for two environments.
	for i := range 7 {
		env := f.envs[[]int{0, 2}[i%2]]
		s := token(fmt.Sprintf("s%d", i), env.ProjectID)
		s.Role, s.ParentID, s.EnvironmentID = apiv1.RoleSession, f.tokens[i%3].ID, env.ID
		f.tokens = append(f.tokens, s)
	}
	update(t, st, func(tx store.Tx) error {
		var errs []error
		for _, p := range f.projects {
			errs = append(errs, tx.CreateProject(ctx, p))
		}
		for _, e := range f.envs {
			errs = append(errs, tx.CreateEnvironment(ctx, e))
		}
		for _, p := range f.policies {
			errs = append(errs, tx.CreatePolicy(ctx, p))
		}
		for _, tr := range f.tokens {
			errs = append(errs, tx.CreateToken(ctx, tr))
		}
		return errors.Join(errs...)
	})
	return f
}

// pageAll lists with limit and follows cursors to the end, checking that
// every page but the last is full.
func pageAll[T any](t *testing.T, list func(store.ListQuery) ([]T, string, error), q store.ListQuery) []T {
	t.Helper()
	var all []T
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		items, next, err := list(q)
		if err != nil {
			t.Fatalf("list %+v: %v", q, err)
		}
		all = append(all, items...)
		if next == "" {
			return all
		}
		if len(items) != q.Limit {
			t.Fatalf("page of %d items with a next cursor, want %d", len(items), q.Limit)
		}
		q.Cursor = next
	}
}

// checkList compares paging through list with the expected objects that
// keep selects, in id order, at several page sizes.
func checkList[T any](t *testing.T, name string, list func(store.ListQuery) ([]T, string, error), id func(T) string,
	all []T, q store.ListQuery, keep func(T) bool) {
	t.Helper()
	var want []T
	for _, o := range all {
		if keep(o) {
			want = append(want, o)
		}
	}
	sort.Slice(want, func(i, j int) bool { return id(want[i]) < id(want[j]) })
	for _, limit := range []int{1, 4, 100} {
		q.Limit = limit
		got := pageAll(t, list, q)
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("%s, limit %d (-want +got):\n%s", name, limit, d)
		}
	}
	if len(want) > 2 {
		// A cursor in the middle starts right after it.
		q.Limit, q.Cursor = 100, id(want[1])
		got := pageAll(t, list, q)
		if d := cmp.Diff(want[2:], got); d != "" {
			t.Fatalf("%s, from cursor (-want +got):\n%s", name, d)
		}
	}
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

func testPagination(t *testing.T, st store.Store) {
	f := fill(t, st)
	p0, p1 := f.projects[0].ID, f.projects[1].ID

	listEnvs := func(q store.ListQuery) ([]apiv1.Environment, string, error) { return st.ListEnvironments(ctx, q) }
	envID := func(e apiv1.Environment) string { return e.ID }
	deadline := now().Add(16 * time.Minute)
	for _, tc := range []struct {
		name string
		q    store.ListQuery
		keep func(apiv1.Environment) bool
	}{
		{"all", store.ListQuery{}, func(apiv1.Environment) bool { return true }},
		{"project", store.ListQuery{ProjectID: p1}, func(e apiv1.Environment) bool { return e.ProjectID == p1 }},
		{"state", store.ListQuery{State: apiv1.StateReady}, func(e apiv1.Environment) bool { return e.State == apiv1.StateReady }},
		{"one label", store.ListQuery{Labels: map[string]string{"team": "payments"}},
			func(e apiv1.Environment) bool { return e.Labels["team"] == "payments" }},
		{"two labels", store.ListQuery{Labels: map[string]string{"team": "search", "tier": "prod"}},
			func(e apiv1.Environment) bool {
				return hasLabels(e.Labels, map[string]string{"team": "search", "tier": "prod"})
			}},
		{"label nobody has", store.ListQuery{Labels: map[string]string{"team": "nobody"}}, func(apiv1.Environment) bool { return false }},
		{"project, state and label", store.ListQuery{ProjectID: p0, State: apiv1.StatePending, Labels: map[string]string{"tier": "dev"}},
			func(e apiv1.Environment) bool {
				return e.ProjectID == p0 && e.State == apiv1.StatePending && e.Labels["tier"] == "dev"
			}},
		{"expires before", store.ListQuery{ExpiresBefore: deadline},
			func(e apiv1.Environment) bool { return e.ExpiresAt != nil && e.ExpiresAt.Before(deadline) }},
	} {
		checkList(t, "environments "+tc.name, listEnvs, envID, f.envs, tc.q, tc.keep)
	}

	listProjects := func(q store.ListQuery) ([]apiv1.Project, string, error) { return st.ListProjects(ctx, q) }
	projectID := func(p apiv1.Project) string { return p.ID }
	checkList(t, "projects", listProjects, projectID, f.projects, store.ListQuery{}, func(apiv1.Project) bool { return true })
	checkList(t, "projects by label", listProjects, projectID, f.projects, store.ListQuery{Labels: map[string]string{"team": "search"}},
		func(p apiv1.Project) bool { return p.Labels["team"] == "search" })
	checkList(t, "projects by project", listProjects, projectID, f.projects, store.ListQuery{ProjectID: p1},
		func(p apiv1.Project) bool { return p.ID == p1 })

	listPolicies := func(q store.ListQuery) ([]apiv1.Policy, string, error) { return st.ListPolicies(ctx, q) }
	policyID := func(p apiv1.Policy) string { return p.ID }
	checkList(t, "policies by project", listPolicies, policyID, f.policies, store.ListQuery{ProjectID: p0},
		func(p apiv1.Policy) bool { return p.ProjectID == p0 })
	owner := f.envs[3].ID
	checkList(t, "policies by owner", listPolicies, policyID, f.policies, store.ListQuery{Owner: owner},
		func(p apiv1.Policy) bool { return p.OwnerEnvironmentID == owner })

	listTokens := func(q store.ListQuery) ([]store.TokenRecord, string, error) { return st.ListTokens(ctx, q) }
	tokenID := func(tr store.TokenRecord) string { return tr.ID }
	checkList(t, "tokens", listTokens, tokenID, f.tokens, store.ListQuery{}, func(store.TokenRecord) bool { return true })
	checkList(t, "tokens by project", listTokens, tokenID, f.tokens, store.ListQuery{ProjectID: p0},
		func(tr store.TokenRecord) bool { return tr.ProjectID == p0 })
	parent := f.tokens[1].ID
	checkList(t, "tokens by parent", listTokens, tokenID, f.tokens, store.ListQuery{ParentID: parent},
		func(tr store.TokenRecord) bool { return tr.ParentID == parent })
	sessionEnv := f.envs[2].ID
	checkList(t, "tokens by environment", listTokens, tokenID, f.tokens, store.ListQuery{EnvironmentID: sessionEnv},
		func(tr store.TokenRecord) bool { return tr.EnvironmentID == sessionEnv })
	checkList(t, "tokens by parent and environment", listTokens, tokenID, f.tokens, store.ListQuery{ParentID: parent, EnvironmentID: sessionEnv},
		func(tr store.TokenRecord) bool { return tr.ParentID == parent && tr.EnvironmentID == sessionEnv })

	// Labels changed by an update are what the filter sees.
	e := f.envs[1]
	e.Labels = map[string]string{"team": "moved"}
	update(t, st, func(tx store.Tx) error { return tx.UpdateEnvironment(ctx, e) })
	got, _, err := st.ListEnvironments(ctx, store.ListQuery{Labels: map[string]string{"team": "moved"}})
	if err != nil || len(got) != 1 || got[0].ID != e.ID {
		t.Fatalf("list by a label set by update = %v, %v; want only %s", got, err, e.ID)
	}
	got, _, err = st.ListEnvironments(ctx, store.ListQuery{Labels: map[string]string{"tier": "prod"}})
	if err != nil || slices.ContainsFunc(got, func(x apiv1.Environment) bool { return x.ID == e.ID }) {
		t.Fatalf("list by a label removed by update still finds %s (err %v)", e.ID, err)
	}
}

func testListLimits(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	n := store.MaxLimit + 1
	update(t, st, func(tx store.Tx) error {
		for i := range n {
			if err := tx.CreateEnvironment(ctx, environment(p.ID, fmt.Sprintf("e%d", i), nil, apiv1.StatePending)); err != nil {
				return err
			}
		}
		return nil
	})
	for _, tc := range []struct{ limit, want int }{{0, store.DefaultLimit}, {-5, store.DefaultLimit}, {store.MaxLimit + 500, store.MaxLimit}} {
		got, next, err := st.ListEnvironments(ctx, store.ListQuery{Limit: tc.limit})
		if err != nil || len(got) != tc.want || next == "" {
			t.Fatalf("limit %d: %d items, next %q, err %v; want %d items and a next cursor", tc.limit, len(got), next, err, tc.want)
		}
	}
	got, next, err := st.ListEnvironments(ctx, store.ListQuery{Limit: n})
	if err != nil || len(got) != store.MaxLimit || next != got[len(got)-1].ID {
		t.Fatalf("limit above max: %d items, next %q, err %v", len(got), next, err)
	}
	rest, next, err := st.ListEnvironments(ctx, store.ListQuery{Cursor: next})
	if err != nil || len(rest) != 1 || next != "" {
		t.Fatalf("last page: %d items, next %q, err %v; want 1 item, no cursor", len(rest), next, err)
	}
}

func testInvalidFilters(t *testing.T, st store.Store) {
	for name, call := range map[string]func() error{
		"projects by state":     func() error { _, _, err := st.ListProjects(ctx, store.ListQuery{State: "ready"}); return err },
		"projects by owner":     func() error { _, _, err := st.ListProjects(ctx, store.ListQuery{Owner: "x"}); return err },
		"environments by owner": func() error { _, _, err := st.ListEnvironments(ctx, store.ListQuery{Owner: "x"}); return err },
		"policies by label": func() error {
			_, _, err := st.ListPolicies(ctx, store.ListQuery{Labels: map[string]string{"a": "b"}})
			return err
		},
		"policies by state": func() error { _, _, err := st.ListPolicies(ctx, store.ListQuery{State: "ready"}); return err },
		"tokens by label": func() error {
			_, _, err := st.ListTokens(ctx, store.ListQuery{Labels: map[string]string{"a": "b"}})
			return err
		},
		"projects by expiry": func() error { _, _, err := st.ListProjects(ctx, store.ListQuery{ExpiresBefore: now()}); return err },
		"environments by parent": func() error {
			_, _, err := st.ListEnvironments(ctx, store.ListQuery{ParentID: "tok_x"})
			return err
		},
		"policies by environment": func() error {
			_, _, err := st.ListPolicies(ctx, store.ListQuery{EnvironmentID: "env_x"})
			return err
		},
		"tokens by owner": func() error { _, _, err := st.ListTokens(ctx, store.ListQuery{Owner: "x"}); return err },
	} {
		if err := call(); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%s: error = %v, want ErrInvalidQuery", name, err)
		}
	}
}

func testCountEnvironments(t *testing.T, st store.Store) {
	f := fill(t, st)
	want := map[string]int{}
	for _, s := range apiv1.States {
		want[s] = 0
	}
	for _, e := range f.envs {
		want[e.State]++
	}
	got, err := st.CountEnvironments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "environment counts", got, want)
}

func testCountProjectEnvironments(t *testing.T, st store.Store) {
	f := fill(t, st)
	want := map[string]int{"prj_none": 0}
	var ids []string
	for _, p := range f.projects {
		want[p.ID] = 0
		ids = append(ids, p.ID)
	}
	for _, e := range f.envs {
		want[e.ProjectID]++
	}
	got, err := st.CountProjectEnvironments(ctx, append(ids, "prj_none")...)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "environments per project", got, want)
	// Inside a transaction, counts see its own writes: what a quota needs.
	update(t, st, func(tx store.Tx) error {
		if err := tx.CreateEnvironment(ctx, environment(ids[2], "one-more", nil, apiv1.StatePending)); err != nil {
			return err
		}
		n, err := tx.CountProjectEnvironments(ctx, ids[2])
		if err == nil && n[ids[2]] != want[ids[2]]+1 {
			t.Errorf("count in the transaction %d, want %d", n[ids[2]], want[ids[2]]+1)
		}
		return err
	})
	if got, err := st.CountProjectEnvironments(ctx); err != nil || len(got) != 0 {
		t.Errorf("no ids: %v, %v", got, err)
	}
}

func testListMaxBytes(t *testing.T, st store.Store) {
	f := fill(t, st)
	all, _, err := st.ListEnvironments(ctx, store.ListQuery{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	// A budget of about three environments: pages of two or three, each
	// under the budget, every environment once.
	one, err := json.Marshal(all[0])
	if err != nil {
		t.Fatal(err)
	}
	budget := 3*len(one) + len(one)/2
	var seen []string
	q := store.ListQuery{Limit: store.MaxLimit, MaxBytes: budget}
	for pages := 0; ; pages++ {
		page, next, err := st.ListEnvironments(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, e := range page {
			b, _ := json.Marshal(e)
			size += len(b)
			seen = append(seen, e.ID)
		}
		if len(page) == 0 || (len(page) > 1 && size > budget+len(page)*8) {
			t.Fatalf("page %d: %d environments of %d bytes for a budget of %d", pages, len(page), size, budget)
		}
		if next == "" || pages > len(f.envs) {
			break
		}
		q.Cursor = next
	}
	if len(seen) != len(f.envs) {
		t.Errorf("listed %d environments, want %d", len(seen), len(f.envs))
	}
	// A budget smaller than one object still lists one per page.
	page, next, err := st.ListEnvironments(ctx, store.ListQuery{Limit: store.MaxLimit, MaxBytes: 1})
	if err != nil || len(page) != 1 || next == "" {
		t.Errorf("budget of 1 byte: %d environments, next %q, %v", len(page), next, err)
	}
}

func testIdempotency(t *testing.T, st store.Store) {
	_, err := st.GetIdempotency(ctx, "tok_a", "key-1")
	wantErr(t, err, store.ErrNotFound)

	ts := now()
	rec := store.IdempotencyRecord{
		Scope: "tok_a", Key: "key-1", Method: "POST", Path: "/v1/environments", BodyHash: fmt.Sprintf("%064d", 7),
		StatusCode: 202, Header: map[string]string{"Location": "/v1/environments/env_1", "ETag": `"1"`},
		Body: []byte(`{"id":"env_1"}`), ResourceID: "env_1", CreatedAt: ts, ExpiresAt: ts.Add(24 * time.Hour),
	}
	put := func(r store.IdempotencyRecord) error {
		return st.Update(ctx, func(tx store.Tx) error { return tx.PutIdempotency(ctx, r) })
	}
	if err := put(rec); err != nil {
		t.Fatalf("PutIdempotency: %v", err)
	}
	got, err := st.GetIdempotency(ctx, "tok_a", "key-1")
	if err != nil {
		t.Fatalf("GetIdempotency: %v", err)
	}
	diff(t, "idempotency record", got, rec)

	// One live record per (scope, key); scopes are separate.
	wantErr(t, put(rec), store.ErrConflict)
	other := rec
	other.Scope = "tok_b"
	if err := put(other); err != nil {
		t.Fatalf("same key in another scope: %v", err)
	}

	// An expired record is invisible, can be replaced, and is purged.
	expired := rec
	expired.Key, expired.ExpiresAt = "key-old", ts.Add(-time.Minute)
	expired2 := expired
	expired2.Key = "key-old-2"
	if err := errors.Join(put(expired), put(expired2)); err != nil {
		t.Fatalf("put expired records: %v", err)
	}
	_, err = st.GetIdempotency(ctx, "tok_a", "key-old")
	wantErr(t, err, store.ErrNotFound)
	renewed := expired
	renewed.ExpiresAt, renewed.StatusCode = ts.Add(time.Hour), 201
	if err := put(renewed); err != nil {
		t.Fatalf("replace an expired record: %v", err)
	}
	if got, err := st.GetIdempotency(ctx, "tok_a", "key-old"); err != nil || got.StatusCode != 201 {
		t.Fatalf("renewed record = %+v, %v", got, err)
	}
	var purged int
	update(t, st, func(tx store.Tx) error {
		var err error
		purged, err = tx.PurgeIdempotency(ctx, time.Now())
		return err
	})
	if purged != 1 {
		t.Fatalf("purged %d records, want 1 (key-old-2)", purged)
	}
	for _, key := range []string{"key-1", "key-old"} {
		if _, err := st.GetIdempotency(ctx, "tok_a", key); err != nil {
			t.Fatalf("live record %s purged: %v", key, err)
		}
	}
}

// event returns an audit event as a server would make it (Seq, PrevHash
// and Hash left to the store).
func event(action, projectID, resourceID, outcome string, changes *apiv1.Changes) apiv1.AuditEvent {
	return apiv1.AuditEvent{
		ID: newID("aud"), Time: now(), RequestID: newID("req"),
		Actor:     apiv1.Actor{TokenID: "tok_admin", Name: "admin"},
		Source:    apiv1.Source{IP: "127.0.0.1", UserAgent: "test/1.0"},
		ProjectID: projectID, Action: action, Resource: apiv1.ResourceRef{Type: "environment", ID: resourceID},
		Outcome: outcome, StatusCode: 202, Changes: changes,
	}
}

func appendEvents(t *testing.T, st store.Store, evs ...apiv1.AuditEvent) []apiv1.AuditEvent {
	t.Helper()
	var out []apiv1.AuditEvent
	update(t, st, func(tx store.Tx) error {
		for _, ev := range evs {
			stored, err := tx.AppendAudit(ctx, ev)
			if err != nil {
				return err
			}
			out = append(out, stored)
		}
		return nil
	})
	return out
}

func testAuditChain(t *testing.T, st store.Store) {
	_, err := st.LastAudit(ctx)
	wantErr(t, err, store.ErrNotFound)

	env := environment("prj_1", "web", map[string]string{"a": "<b>"}, apiv1.StatePending)
	var stored []apiv1.AuditEvent
	stored = append(stored, appendEvents(t, st, event("environment.create", "prj_1", env.ID, apiv1.OutcomeSuccess,
		&apiv1.Changes{After: env}))...)
	stored = append(stored, appendEvents(t, st,
		event("environment.update", "prj_1", env.ID, apiv1.OutcomeSuccess, &apiv1.Changes{Before: env, After: map[string]any{"n": 1 << 60}}),
		event("environment.delete", "prj_1", env.ID, apiv1.OutcomeDenied, nil),
	)...)
	prev := audit.GenesisHash
	for i, ev := range stored {
		if ev.Seq != int64(i+1) || ev.PrevHash != prev || ev.Hash != audit.Hash(ev) || len(ev.Hash) != 64 {
			t.Fatalf("event %d: seq %d prev %s hash %s; want seq %d, prev %s, hash %s", i, ev.Seq, ev.PrevHash, ev.Hash, i+1, prev, audit.Hash(ev))
		}
		prev = ev.Hash
	}
	listed, next, err := st.ListAudit(ctx, store.AuditQuery{})
	if err != nil || next != "" {
		t.Fatalf("ListAudit: next %q, err %v", next, err)
	}
	// What AppendAudit returned is what is stored, and still hashes the same.
	diff(t, "listed events", listed, stored)
	for _, ev := range listed {
		if audit.Hash(ev) != ev.Hash {
			t.Fatalf("event %d read back hashes to %s, stored %s", ev.Seq, audit.Hash(ev), ev.Hash)
		}
	}
	last, err := st.LastAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "last event", last, stored[2])

	res, err := store.VerifyAudit(ctx, st)
	if err != nil || !res.OK() || res.Events != 3 || res.LastHash != stored[2].Hash {
		t.Fatalf("VerifyAudit = %+v, %v; want 3 events ending in %s", res, err, stored[2].Hash)
	}
}

// The caller stamps every event (control.Service.Event): the store fills
// in no id and no time, and keeps nothing of an Update that tried.
func testAuditNeedsIDAndTime(t *testing.T, st store.Store) {
	for name, ev := range map[string]apiv1.AuditEvent{
		"no id":   {Time: now(), Action: "project.create"},
		"no time": {ID: newID("evt"), Action: "project.create"},
	} {
		err := st.Update(ctx, func(tx store.Tx) error { _, err := tx.AppendAudit(ctx, ev); return err })
		if err == nil {
			t.Errorf("an audit event with %s was appended", name)
		}
	}
	if _, err := st.LastAudit(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the chain is not empty after refused events: %v", err)
	}
}

func testAuditFilters(t *testing.T, st store.Store) {
	var all []apiv1.AuditEvent
	for i := range 30 {
		ev := event([]string{"environment.create", "environment.delete", "project.create"}[i%3],
			[]string{"prj_a", "prj_b"}[i%2], fmt.Sprintf("env_%d", i%5), []string{apiv1.OutcomeSuccess, apiv1.OutcomeDenied}[i%4/3], nil)
		ev.Time = time.Date(2030, 1, 1, 0, 0, i, 0, time.UTC)
		if i%10 == 0 {
			ev.RequestID = "req_shared"
		}
		all = append(all, appendEvents(t, st, ev)...)
	}
	list := func(q store.AuditQuery) ([]apiv1.AuditEvent, string, error) { return st.ListAudit(ctx, q) }
	for _, tc := range []struct {
		name string
		q    store.AuditQuery
		keep func(apiv1.AuditEvent) bool
	}{
		{"all", store.AuditQuery{}, func(apiv1.AuditEvent) bool { return true }},
		{"project", store.AuditQuery{ProjectID: "prj_b"}, func(e apiv1.AuditEvent) bool { return e.ProjectID == "prj_b" }},
		{"action", store.AuditQuery{Action: "environment.delete"}, func(e apiv1.AuditEvent) bool { return e.Action == "environment.delete" }},
		{"resource", store.AuditQuery{ResourceType: "environment", ResourceID: "env_3"},
			func(e apiv1.AuditEvent) bool { return e.Resource.ID == "env_3" }},
		{"outcome", store.AuditQuery{Outcome: apiv1.OutcomeDenied}, func(e apiv1.AuditEvent) bool { return e.Outcome == apiv1.OutcomeDenied }},
		{"request", store.AuditQuery{RequestID: "req_shared"}, func(e apiv1.AuditEvent) bool { return e.RequestID == "req_shared" }},
		{"since", store.AuditQuery{Since: time.Date(2030, 1, 1, 0, 0, 17, 0, time.UTC)},
			func(e apiv1.AuditEvent) bool { return e.Time.Second() >= 17 }},
		{"after seq", store.AuditQuery{AfterSeq: 12}, func(e apiv1.AuditEvent) bool { return e.Seq > 12 }},
		{"project and action", store.AuditQuery{ProjectID: "prj_a", Action: "project.create"},
			func(e apiv1.AuditEvent) bool { return e.ProjectID == "prj_a" && e.Action == "project.create" }},
	} {
		var want []apiv1.AuditEvent
		for _, e := range all {
			if tc.keep(e) {
				want = append(want, e)
			}
		}
		for _, limit := range []int{1, 4, 100} {
			q := tc.q
			q.Limit = limit
			var got []apiv1.AuditEvent
			for {
				page, next, err := list(q)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				got = append(got, page...)
				if next == "" {
					break
				}
				if len(page) != limit {
					t.Fatalf("%s: page of %d with a next cursor, limit %d", tc.name, len(page), limit)
				}
				var seq int64
				if _, err := fmt.Sscan(next, &seq); err != nil || seq != page[len(page)-1].Seq {
					t.Fatalf("%s: next cursor %q is not the last seq %d", tc.name, next, page[len(page)-1].Seq)
				}
				q.AfterSeq = seq
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("%s, limit %d (-want +got):\n%s", tc.name, limit, d)
			}
		}
	}
}

// testConcurrentUpdates runs many writers at once, some of which fail, and
// checks that every successful Update was applied once, no failed one at
// all, and that the audit chain links them in one order.
func testConcurrentUpdates(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	const workers, each = 16, 25
	var mu sync.Mutex
	committed := map[string]int64{} // environment id -> seq of its event
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := environment(p.ID, fmt.Sprintf("w%d-%d", w, i), map[string]string{"w": fmt.Sprint(w)}, apiv1.StatePending)
				fail := (w+i)%5 == 0
				var seq int64
				err := st.Update(ctx, func(tx store.Tx) error {
					if err := tx.CreateEnvironment(ctx, e); err != nil {
						return err
					}
					ev, err := tx.AppendAudit(ctx, event("environment.create", p.ID, e.ID, apiv1.OutcomeSuccess, &apiv1.Changes{After: e}))
					if err != nil {
						return err
					}
					seq = ev.Seq
					if fail {
						return errDeliberate
					}
					return nil
				})
				switch {
				case fail && errors.Is(err, errDeliberate):
				case !fail && err == nil:
					mu.Lock()
					committed[e.ID] = seq
					mu.Unlock()
				default:
					errc <- fmt.Errorf("worker %d update %d (fail=%v): %v", w, i, fail, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}

	envs := pageAll(t, func(q store.ListQuery) ([]apiv1.Environment, string, error) { return st.ListEnvironments(ctx, q) },
		store.ListQuery{Limit: 100})
	got := map[string]bool{}
	for _, e := range envs {
		got[e.ID] = true
	}
	if !maps.Equal(got, func() map[string]bool {
		m := map[string]bool{}
		for id := range committed {
			m[id] = true
		}
		return m
	}()) {
		t.Fatalf("stored %d environments, %d Updates succeeded: sets differ", len(got), len(committed))
	}
	events, _, err := st.ListAudit(ctx, store.AuditQuery{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(committed) {
		t.Fatalf("%d audit events for %d committed Updates", len(events), len(committed))
	}
	for _, ev := range events {
		if seq, ok := committed[ev.Resource.ID]; !ok || seq != ev.Seq {
			t.Fatalf("event %d for %s: committed with seq %d (found %v)", ev.Seq, ev.Resource.ID, seq, ok)
		}
	}
	res, err := store.VerifyAudit(ctx, st)
	if err != nil || !res.OK() || res.Events != int64(len(committed)) {
		t.Fatalf("VerifyAudit = %+v, %v", res, err)
	}
}

var errDeliberate = errors.New("deliberate failure")

func testReopen(t *testing.T, open Opener, reopen Reopener) {
	st := open(t)
	f := fill(t, st)
	appendEvents(t, st, event("environment.create", "prj_a", "env_1", apiv1.OutcomeSuccess, &apiv1.Changes{After: f.envs[0]}))
	rec := store.IdempotencyRecord{Scope: "s", Key: "k", StatusCode: 201, Body: []byte("{}"), ExpiresAt: now().Add(24 * time.Hour)}
	update(t, st, func(tx store.Tx) error { return tx.PutIdempotency(ctx, rec) })
	before := take(t, st)

	st = reopen(t, st)
	t.Cleanup(func() { st.Close() })
	diff(t, "store after reopening", take(t, st), before)
	if _, err := st.GetIdempotency(ctx, "s", "k"); err != nil {
		t.Fatalf("idempotency record lost across reopen: %v", err)
	}
	// The chain continues where it stopped.
	ev := appendEvents(t, st, event("environment.delete", "prj_a", "env_1", apiv1.OutcomeSuccess, nil))[0]
	if ev.Seq != 2 || ev.PrevHash != before.Audit[0].Hash {
		t.Fatalf("first event after reopen: seq %d prev %s; want 2, %s", ev.Seq, ev.PrevHash, before.Audit[0].Hash)
	}
	if res, err := store.VerifyAudit(ctx, st); err != nil || !res.OK() {
		t.Fatalf("VerifyAudit after reopen = %+v, %v", res, err)
	}
}

// addr is an address record at time at, freed at freed unless that is zero.
func addr(a, env, project string, at, freed time.Time) store.Address {
	return store.Address{Addr: netip.MustParseAddr(a), EnvironmentID: env, ProjectID: project, AllocatedAt: at, FreedAt: freed}
}

func testAddresses(t *testing.T, st store.Store) {
	t0 := now()
	recs := []store.Address{
		addr("198.18.0.1", "env_a", "prj_a", t0, time.Time{}),
		addr("198.18.0.2", "", "prj_b", t0, t0.Add(time.Minute)),
		addr("198.18.0.10", "env_c", "prj_b", t0, time.Time{}),
		addr("198.18.1.0", "env_d", "prj_a", t0, time.Time{}),
		addr("2001:db8::1", "env_e", "prj_b", t0, time.Time{}),
	}
	update(t, st, func(tx store.Tx) error {
		for _, r := range recs {
			if err := tx.PutAddress(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := st.GetAddress(ctx, netip.MustParseAddr("198.18.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	diffAddrs(t, "GetAddress", got, recs[1])
	if got.Held() || !recs[0].Held() {
		t.Fatal("Held: a freed record reports held, or a held one freed")
	}
	_, err = st.GetAddress(ctx, netip.MustParseAddr("198.18.0.3"))
	wantErr(t, err, store.ErrNotFound)

	list := func(q store.AddressQuery) []string {
		t.Helper()
		rs, err := st.ListAddresses(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.Addr.String())
		}
		return out
	}
	ip := netip.MustParseAddr
	// Address order, not text order: .2 before .10.
	diff(t, "the whole IPv4 range", list(store.AddressQuery{First: ip("0.0.0.0"), Last: ip("255.255.255.255")}),
		[]string{"198.18.0.1", "198.18.0.2", "198.18.0.10", "198.18.1.0"})
	diff(t, "a /24", list(store.AddressQuery{First: ip("198.18.0.0"), Last: ip("198.18.0.255")}), []string{"198.18.0.1", "198.18.0.2", "198.18.0.10"})
	diff(t, "held only", list(store.AddressQuery{First: ip("198.18.0.0"), Last: ip("198.18.0.255"), HeldOnly: true}), []string{"198.18.0.1", "198.18.0.10"})
	diff(t, "other projects", list(store.AddressQuery{First: ip("198.18.0.0"), Last: ip("198.18.255.255"), NotProject: "prj_a"}), []string{"198.18.0.2", "198.18.0.10"})
	diff(t, "by environment", list(store.AddressQuery{First: ip("0.0.0.0"), Last: ip("255.255.255.255"), EnvironmentID: "env_c"}), []string{"198.18.0.10"})
	diff(t, "limit", list(store.AddressQuery{First: ip("198.18.0.0"), Last: ip("198.18.255.255"), Limit: 2}), []string{"198.18.0.1", "198.18.0.2"})
	diff(t, "IPv6", list(store.AddressQuery{First: ip("::"), Last: ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}), []string{"2001:db8::1"})
	if _, err := st.ListAddresses(ctx, store.AddressQuery{First: ip("198.18.0.0"), Last: ip("::1")}); err == nil {
		t.Fatal("a range from IPv4 to IPv6 was accepted")
	}

	u, err := st.AddressUsage(ctx, ip("198.18.0.0"), ip("198.18.0.255"))
	if err != nil {
		t.Fatal(err)
	}
	diffAddrs(t, "AddressUsage", u, store.AddressUsage{Held: 2, Freed: 1, FirstFreed: t0.Add(time.Minute), LastFreed: t0.Add(time.Minute)})
	if u, err := st.AddressUsage(ctx, ip("10.0.0.0"), ip("10.0.0.255")); err != nil || u != (store.AddressUsage{}) {
		t.Fatalf("AddressUsage of an empty range = %+v, %v", u, err)
	}

	// Replacing frees and re-holds; one environment cannot hold two.
	update(t, st, func(tx store.Tx) error {
		return tx.PutAddress(ctx, addr("198.18.0.2", "env_f", "prj_a", t0.Add(time.Hour), time.Time{}))
	})
	if got, _ := st.GetAddress(ctx, ip("198.18.0.2")); got.EnvironmentID != "env_f" || !got.FreedAt.IsZero() {
		t.Fatalf("replaced record = %+v", got)
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		return tx.PutAddress(ctx, addr("198.18.0.3", "env_a", "prj_a", t0, time.Time{}))
	})
	wantErr(t, err, store.ErrConflict)
	err = st.Update(ctx, func(tx store.Tx) error { return tx.PutAddress(ctx, store.Address{EnvironmentID: "env_x"}) })
	if err == nil {
		t.Fatal("a record without an address was stored")
	}
}

func testOldestFreedAddress(t *testing.T, st store.Store) {
	t0 := now()
	update(t, st, func(tx store.Tx) error {
		for _, r := range []store.Address{
			addr("198.18.0.5", "", "prj_a", t0, t0.Add(3*time.Hour)),
			addr("198.18.0.9", "", "prj_a", t0, t0.Add(time.Hour)),
			addr("198.18.0.7", "", "prj_b", t0, t0.Add(time.Hour)), // freed with .9: the lower goes first
			addr("198.18.0.3", "env_a", "prj_a", t0, time.Time{}),
			addr("198.18.9.1", "", "prj_a", t0, t0), // outside the range asked for
		} {
			if err := tx.PutAddress(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	first, last := netip.MustParseAddr("198.18.0.0"), netip.MustParseAddr("198.18.0.255")
	oldest := func(notAfter time.Time) string {
		t.Helper()
		a, err := st.OldestFreedAddress(ctx, first, last, notAfter)
		if errors.Is(err, store.ErrNotFound) {
			return "none"
		}
		if err != nil {
			t.Fatal(err)
		}
		return a.Addr.String()
	}
	for _, tc := range []struct {
		notAfter time.Duration
		want     string
	}{{0, "none"}, {time.Hour - time.Nanosecond, "none"}, {time.Hour, "198.18.0.7"}, {5 * time.Hour, "198.18.0.7"}} {
		if got := oldest(t0.Add(tc.notAfter)); got != tc.want {
			t.Fatalf("OldestFreedAddress(freed at or before t0+%s) = %s, want %s", tc.notAfter, got, tc.want)
		}
	}
	update(t, st, func(tx store.Tx) error {
		return tx.PutAddress(ctx, addr("198.18.0.7", "env_b", "prj_b", t0, time.Time{}))
	})
	if got := oldest(t0.Add(5 * time.Hour)); got != "198.18.0.9" {
		t.Fatalf("after .7 was handed out again: %s, want 198.18.0.9", got)
	}
}

func testAddressCursor(t *testing.T, st store.Store) {
	p4, p6 := netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("2001:db8::/64")
	_, err := st.GetAddressCursor(ctx, p4)
	wantErr(t, err, store.ErrNotFound)
	update(t, st, func(tx store.Tx) error {
		return errors.Join(tx.PutAddressCursor(ctx, p4, netip.MustParseAddr("198.18.0.7")), tx.PutAddressCursor(ctx, p6, netip.MustParseAddr("2001:db8::9")))
	})
	update(t, st, func(tx store.Tx) error { return tx.PutAddressCursor(ctx, p4, netip.MustParseAddr("198.18.0.8")) })
	for p, want := range map[netip.Prefix]string{p4: "198.18.0.8", p6: "2001:db8::9"} {
		if got, err := st.GetAddressCursor(ctx, p); err != nil || got.String() != want {
			t.Fatalf("cursor of %s = %s, %v; want %s", p, got, err, want)
		}
	}
	err = st.Update(ctx, func(tx store.Tx) error { return tx.PutAddressCursor(ctx, p4, netip.MustParseAddr("2001:db8::1")) })
	if err == nil {
		t.Fatal("an IPv6 cursor was stored for an IPv4 pool")
	}
}

func testAddressRollback(t *testing.T, st store.Store) {
	err := st.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutAddress(ctx, addr("198.18.0.1", "env_a", "prj_a", now(), time.Time{})); err != nil {
			return err
		}
		if err := tx.PutAddressCursor(ctx, netip.MustParsePrefix("198.18.0.0/24"), netip.MustParseAddr("198.18.0.2")); err != nil {
			return err
		}
		return errDeliberate
	})
	wantErr(t, err, errDeliberate)
	_, err = st.GetAddress(ctx, netip.MustParseAddr("198.18.0.1"))
	wantErr(t, err, store.ErrNotFound)
	_, err = st.GetAddressCursor(ctx, netip.MustParsePrefix("198.18.0.0/24"))
	wantErr(t, err, store.ErrNotFound)
}

func testReopenAddresses(t *testing.T, open Opener, reopen Reopener) {
	st := open(t)
	t0 := now()
	recs := []store.Address{addr("198.18.0.1", "env_a", "prj_a", t0, time.Time{}), addr("198.18.0.2", "", "prj_b", t0, t0.Add(time.Second))}
	pool := netip.MustParsePrefix("198.18.0.0/24")
	update(t, st, func(tx store.Tx) error {
		return errors.Join(tx.PutAddress(ctx, recs[0]), tx.PutAddress(ctx, recs[1]), tx.PutAddressCursor(ctx, pool, netip.MustParseAddr("198.18.0.3")))
	})
	st = reopen(t, st)
	t.Cleanup(func() { st.Close() })
	got, err := st.ListAddresses(ctx, store.AddressQuery{First: pool.Addr(), Last: netip.MustParseAddr("198.18.0.255")})
	if err != nil {
		t.Fatal(err)
	}
	diffAddrs(t, "address records after reopening", got, recs)
	if c, err := st.GetAddressCursor(ctx, pool); err != nil || c.String() != "198.18.0.3" {
		t.Fatalf("cursor after reopening = %s, %v", c, err)
	}
}

// diffAddrs is diff for values holding netip.Addr, which cmp cannot look into.
func diffAddrs(t *testing.T, what string, got, want any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Fatalf("%s (-want +got):\n%s", what, d)
	}
}

func testCommitAnnouncements(t *testing.T, st store.Store) {
	var mu sync.Mutex
	var got []store.Commit
	st.Subscribe(func(c store.Commit) {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	})
	taken := func() []store.Commit {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	p := mustProject(t, st, "alpha")
	if c := taken(); len(c) != 1 || len(c[0].Environments)+len(c[0].Tokens)+len(c[0].Events)+len(c[0].Reconcile) != 0 {
		t.Fatalf("a project's creation announced %+v, want one commit naming no environment, token or event", c)
	}

	a := environment(p.ID, "a", nil, apiv1.StatePending)
	b := environment(p.ID, "b", nil, apiv1.StatePending)
	tok := token("ci", p.ID)
	var appended apiv1.AuditEvent
	update(t, st, func(tx store.Tx) error {
		for _, e := range []apiv1.Environment{a, b} {
			if err := tx.CreateEnvironment(ctx, e); err != nil {
				return err
			}
		}
		a.Description = "changed"
		if err := tx.UpdateEnvironment(ctx, a); err != nil {
			return err
		}
		if err := tx.CreateToken(ctx, tok); err != nil {
			return err
		}
		tx.Reconcile("req_1", a.ID, b.ID)
		tx.Reconcile("req_2", a.ID)
		var err error
		appended, err = tx.AppendAudit(ctx, apiv1.AuditEvent{ID: newID("evt_"), Time: time.Now().UTC(), Action: "environment.create"})
		return err
	})
	want := []store.Commit{{
		Events: []apiv1.AuditEvent{appended}, Environments: []string{a.ID, b.ID}, Tokens: []string{tok.ID},
		Reconcile: []string{a.ID, b.ID}, Cause: "req_1",
	}}
	diff(t, "announcement of a commit", taken(), want)

	// A failed Update is not announced, even when it wrote first.
	err := st.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteEnvironment(ctx, b.ID); err != nil {
			return err
		}
		tx.Reconcile("req_3", b.ID)
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("the failing Update succeeded")
	}
	if c := taken(); len(c) != 0 {
		t.Fatalf("a failed Update announced %+v", c)
	}

	// Deleting is writing: the id is announced.
	update(t, st, func(tx store.Tx) error { return tx.DeleteEnvironment(ctx, b.ID) })
	diff(t, "announcement of a deletion", taken(), []store.Commit{{Environments: []string{b.ID}}})
}
