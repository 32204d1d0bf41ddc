package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/storetest"
)

var ctx = context.Background()

func openPostgres(t testing.TB, dsn string) *store.Postgres {
	t.Helper()
	s, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	return s
}

// dsns remembers each store's database, for the reopen.
var dsns = map[*store.Postgres]string{}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t,
		func(t *testing.T) store.Store {
			dsn := pgtest.DSN(t)
			s := openPostgres(t, dsn)
			dsns[s] = dsn
			return s
		},
		storetest.WithReopen(func(t *testing.T, s store.Store) store.Store {
			dsn := dsns[s.(*store.Postgres)]
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			r := openPostgres(t, dsn)
			dsns[r] = dsn
			return r
		}),
		storetest.WithExclusiveLeases(func(t *testing.T, s store.Store) store.Store {
			return openPostgres(t, dsns[s.(*store.Postgres)])
		}),
	)
}

// twoStores opens two stores on one new database, as two servers would.
func twoStores(t *testing.T) (a, b *store.Postgres) {
	dsn := pgtest.DSN(t)
	a, b = openPostgres(t, dsn), openPostgres(t, dsn)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Two servers on one database append at once: the chain stays one
// unbroken sequence that verifies, every event of both is in it once.
func TestPostgres_TwoStoresAppendOneUnbrokenAuditChain(t *testing.T) {
	a, b := twoStores(t)
	const each = 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for _, s := range []*store.Postgres{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				errs <- s.Update(ctx, func(tx store.Tx) error {
					_, err := tx.AppendAudit(ctx, apiv1.AuditEvent{ID: "evt_" + uuid.Must(uuid.NewV7()).String(), Time: time.Now(), Action: "project.create"})
					return err
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	res, err := store.VerifyAudit(ctx, a)
	if err != nil || !res.OK() || res.Events != 2*each {
		t.Fatalf("VerifyAudit = %+v, %v; want %d events verified", res, err, 2*each)
	}
	last, err := b.LastAudit(ctx)
	if err != nil || last.Seq != 2*each {
		t.Fatalf("last seq %d (%v), want %d: the sequence has a gap or a repeat", last.Seq, err, 2*each)
	}
}

// A commit on one server is announced on the other, with its audit
// events read back and the ids it wrote; the writer hears it once, from
// its own Update.
func TestPostgres_ACommitOnOneStoreIsAnnouncedOnTheOther(t *testing.T) {
	a, b := twoStores(t)
	heard := make(chan store.Commit, 16)
	b.Subscribe(func(c store.Commit) { heard <- c })
	var own atomic.Int64
	a.Subscribe(func(store.Commit) { own.Add(1) })
	p := apiv1.Project{ID: "prj_" + uuid.Must(uuid.NewV7()).String(), Name: "p", CreatedAt: time.Now()}
	env := benchEnv(p.ID, 1)
	var ev apiv1.AuditEvent
	err := a.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateProject(ctx, p); err != nil {
			return err
		}
		if err := tx.CreateEnvironment(ctx, env); err != nil {
			return err
		}
		tx.Reconcile("req_1", env.ID)
		var err error
		ev, err = tx.AppendAudit(ctx, apiv1.AuditEvent{ID: "evt_" + uuid.Must(uuid.NewV7()).String(), Time: time.Now(), Action: "environment.create"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-heard:
		if len(c.Events) != 1 || c.Events[0].Hash != ev.Hash || !slices.Equal(c.Environments, []string{env.ID}) ||
			!slices.Equal(c.Reconcile, []string{env.ID}) || c.Cause != "req_1" || c.Resync {
			t.Fatalf("B heard %+v; want A's event %d, environment %s to reconcile for req_1", c, ev.Seq, env.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("B heard nothing of A's commit within 10 s")
	}
	if n := own.Load(); n != 1 {
		t.Fatalf("A announced its commit %d times, want once", n)
	}
}

// Many ids overflow one notification: they arrive split, every id once.
func TestPostgres_ALargeCommitIsAnnouncedInParts(t *testing.T) {
	a, b := twoStores(t)
	heard := make(chan store.Commit, 64)
	b.Subscribe(func(c store.Commit) { heard <- c })
	p := apiv1.Project{ID: "prj_" + uuid.Must(uuid.NewV7()).String(), Name: "p", CreatedAt: time.Now()}
	var want []string
	err := a.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateProject(ctx, p); err != nil {
			return err
		}
		for i := range 400 { // 400 ids of 40 bytes: twice a payload
			e := benchEnv(p.ID, i)
			want = append(want, e.ID)
			if err := tx.CreateEnvironment(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	parts := 0
	for len(got) < len(want) {
		select {
		case c := <-heard:
			got = append(got, c.Environments...)
			parts++
		case <-time.After(10 * time.Second):
			t.Fatalf("B heard %d of %d ids within 10 s", len(got), len(want))
		}
	}
	if !slices.Equal(got, want) || parts < 2 {
		t.Fatalf("B heard %d ids in %d parts; want the %d ids in order, in several parts", len(got), parts, len(want))
	}
}

// An Idempotency-Key put from two servers at once has one winner.
func TestPostgres_IdempotencyKeyHasOneWinnerAcrossStores(t *testing.T) {
	a, b := twoStores(t)
	for round := range 20 {
		rec := store.IdempotencyRecord{Scope: "tok_a", Key: fmt.Sprintf("key-%d", round), StatusCode: 201,
			CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		start := make(chan struct{})
		results := make(chan error, 2)
		for i, s := range []*store.Postgres{a, b} {
			go func() {
				<-start
				r := rec
				r.ResourceID = fmt.Sprintf("winner-%d", i)
				results <- s.Update(ctx, func(tx store.Tx) error { return tx.PutIdempotency(ctx, r) })
			}()
		}
		close(start)
		e1, e2 := <-results, <-results
		if (e1 == nil) == (e2 == nil) || !(errors.Is(e1, store.ErrConflict) || errors.Is(e2, store.ErrConflict)) {
			t.Fatalf("round %d: the two puts returned %v and %v; want one success and one ErrConflict", round, e1, e2)
		}
		ra, err := a.GetIdempotency(ctx, "tok_a", rec.Key)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.GetIdempotency(ctx, "tok_a", rec.Key)
		if err != nil || rb.ResourceID != ra.ResourceID {
			t.Fatalf("round %d: the stores see winners %q and %q (%v)", round, ra.ResourceID, rb.ResourceID, err)
		}
	}
}

// PostgreSQL stopped: reads and writes are ErrUnavailable (never another
// answer); started again: the same store serves, without being reopened,
// and its subscribers are told to resync.
func TestPostgres_StoppedServerIsUnavailableThenServesAgain(t *testing.T) {
	srv, dsn := pgtest.Private(t)
	s := openPostgres(t, dsn)
	defer s.Close()
	resync := make(chan struct{}, 1)
	s.Subscribe(func(c store.Commit) {
		if c.Resync {
			select {
			case resync <- struct{}{}:
			default:
			}
		}
	})
	p := apiv1.Project{ID: "prj_" + uuid.Must(uuid.NewV7()).String(), Name: "before", CreatedAt: time.Now()}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, p) }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetProject(ctx, p.ID); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a read while PostgreSQL is stopped: %v, want ErrUnavailable", err)
	}
	if _, _, err := s.ListProjects(ctx, store.ListQuery{}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a list while PostgreSQL is stopped: %v, want ErrUnavailable", err)
	}
	q := apiv1.Project{ID: "prj_" + uuid.Must(uuid.NewV7()).String(), Name: "during", CreatedAt: time.Now()}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, q) }); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a write while PostgreSQL is stopped: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping while PostgreSQL is stopped: %v, want ErrUnavailable", err)
	}
	if _, _, err := s.Lease(ctx, "reconciler", "a", time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Lease while PostgreSQL is stopped: %v, want ErrUnavailable", err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The first statement after the restart may still meet a connection
	// of before it: poll, with a bound, until the pool serves again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, q) })
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("a write after the restart: %v, want success or ErrUnavailable", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not write again within 30 s of the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range []string{p.ID, q.ID} {
		if _, err := s.GetProject(ctx, id); err != nil {
			t.Fatalf("after the restart, project %s: %v", id, err)
		}
	}
	if cur, want, err := s.SchemaVersion(ctx); err != nil || cur != want {
		t.Fatalf("SchemaVersion after the restart = %d, %d, %v", cur, want, err)
	}
	select {
	case <-resync:
	case <-time.After(30 * time.Second):
		t.Fatal("no Resync announced within 30 s of the restart")
	}
}

// If-Match across servers: each writer reads the generation outside the
// transaction (a GET's ETag), then writes only if it is still the one in
// the transaction, retrying on a precondition failure as a client would.
// No update is lost: the final generation counts every success.
func TestPostgres_IfMatchLosesNoUpdateAcrossStores(t *testing.T) {
	a, b := twoStores(t)
	p := apiv1.Project{ID: "prj_" + uuid.Must(uuid.NewV7()).String(), Name: "counted", Generation: 1, CreatedAt: time.Now()}
	if err := a.Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, p) }); err != nil {
		t.Fatal(err)
	}
	const each = 50
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	errs := make(chan error, 2)
	for _, s := range []*store.Postgres{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done, tries := 0, 0; done < each; tries++ {
				if tries > 100*each {
					errs <- fmt.Errorf("%d of %d updates after %d tries", done, each, tries)
					return
				}
				seen, err := s.GetProject(ctx, p.ID)
				if err != nil {
					errs <- err
					return
				}
				err = s.Update(ctx, func(tx store.Tx) error {
					cur, err := tx.GetProject(ctx, p.ID)
					if err != nil {
						return err
					}
					if cur.Generation != seen.Generation {
						return store.ErrPrecondition
					}
					cur.Generation++
					return tx.UpdateProject(ctx, cur)
				})
				switch {
				case err == nil:
					done++
				case errors.Is(err, store.ErrPrecondition):
					conflicts.Add(1)
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := b.GetProject(ctx, p.ID)
	if err != nil || got.Generation != 1+2*each {
		t.Fatalf("generation %d (%v) after %d successful updates, want %d: an update was lost", got.Generation, err, 2*each, 1+2*each)
	}
	t.Logf("%d precondition failures retried", conflicts.Load())
}
