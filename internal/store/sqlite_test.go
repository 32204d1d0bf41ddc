package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/storetest"
)

func openSQLite(t *testing.T, path string) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t,
		func(t *testing.T) store.Store {
			return openSQLite(t, filepath.Join(t.TempDir(), "isolationd.db"))
		},
		storetest.WithReopen(func(t *testing.T, s store.Store) store.Store {
			path := s.(*store.SQLite).Path()
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openSQLite(t, path)
		}),
	)
}

// Concurrent Updates share commits (group commit), and a failing fn in a
// shared batch takes nothing else with it.
func TestSQLite_ConcurrentUpdatesShareCommits(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "isolationd.db"))
	defer s.Close()
	const workers, each = 32, 20
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := apiv1.Project{ID: fmt.Sprintf("prj_%02d_%02d", w, i), Name: fmt.Sprintf("p-%d-%d", w, i)}
				err := s.Update(ctx, func(tx store.Tx) error {
					if err := tx.CreateProject(ctx, p); err != nil {
						return err
					}
					if i%4 == 0 {
						return errors.New("deliberate")
					}
					return nil
				})
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	st := s.WriteStats()
	if st.Commits >= st.Updates {
		t.Fatalf("%d commits for %d updates: concurrent Updates were not batched", st.Commits, st.Updates)
	}
	projects, _, err := s.ListProjects(ctx, store.ListQuery{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if want := workers*each - int(failed.Load()); len(projects) != want || failed.Load() != workers*each/4 {
		t.Fatalf("%d projects kept, %d Updates failed; want %d kept, %d failed", len(projects), failed.Load(), want, workers*each/4)
	}
	t.Logf("%d updates in %d commits", st.Updates, st.Commits)
}

func TestSQLiteReadOnly_ReadsWhileTheServerWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "isolationd.db")
	s := openSQLite(t, path)
	defer s.Close()
	p := apiv1.Project{ID: "prj_1", Name: "alpha"}
	if err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateProject(ctx, p); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, apiv1.AuditEvent{ID: "evt_" + uuid.Must(uuid.NewV7()).String(), Time: time.Now(), Action: "project.create"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	r, err := store.OpenSQLiteReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.GetProject(ctx, p.ID); err != nil {
		t.Fatalf("read-only view misses a committed project: %v", err)
	}
	if res, err := store.VerifyAudit(ctx, r); err != nil || !res.OK() || res.Events != 1 {
		t.Fatalf("VerifyAudit through the read-only view = %+v, %v", res, err)
	}
	// The server keeps writing while the reader is open.
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, apiv1.Project{ID: "prj_2", Name: "beta"}) }); err != nil {
		t.Fatalf("write while a read-only view is open: %v", err)
	}
	if _, err := r.GetProject(ctx, "prj_2"); err != nil {
		t.Fatalf("read-only view misses a later commit: %v", err)
	}
}

func TestSQLiteReadOnly_MissingFileIsAnErrorAndStaysMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "typo.db")
	if _, err := store.OpenSQLiteReadOnly(context.Background(), path); err == nil {
		t.Fatal("OpenSQLiteReadOnly of a missing file succeeded")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenSQLiteReadOnly created %s: %v", path, err)
	}
}

func TestOpenSQLite_RefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "isolationd.db")
	openSQLite(t, path).Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'future')"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := store.OpenSQLite(context.Background(), path); err == nil {
		s.Close()
		t.Fatal("OpenSQLite accepted a database from a newer build")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("error %q does not say the schema is newer", err)
	}
	if _, err := store.OpenSQLiteReadOnly(context.Background(), path); err == nil {
		t.Fatal("OpenSQLiteReadOnly accepted a database from a newer build")
	}
}

func TestOpenSQLite_ReopeningAppliesNoMigrationTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "isolationd.db")
	openSQLite(t, path).Close()
	openSQLite(t, path).Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, max int
	if err := db.QueryRow("SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != max || n < 1 {
		t.Fatalf("schema_migrations holds %d rows up to version %d", n, max)
	}
}

// Idempotency records expire on the store's clock, the server's one
// clock, so a test moves it instead of waiting out a retention.
func TestSQLite_IdempotencyRecordsExpireOnTheStoresClock(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "isolationd.db"))
	defer s.Close()
	clock := clockwork.NewFakeClockAt(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s.UseClock(clock)
	rec := store.IdempotencyRecord{Scope: "tok_a", Key: "k", StatusCode: 201, CreatedAt: clock.Now(), ExpiresAt: clock.Now().Add(time.Hour)}
	put := func(r store.IdempotencyRecord) error {
		return s.Update(ctx, func(tx store.Tx) error { return tx.PutIdempotency(ctx, r) })
	}
	if err := put(rec); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour - time.Second)
	if _, err := s.GetIdempotency(ctx, "tok_a", "k"); err != nil {
		t.Fatalf("a record before its expiry on the store's clock: %v", err)
	}
	if err := put(rec); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second put before the expiry: %v, want a conflict", err)
	}
	clock.Advance(time.Second)
	if _, err := s.GetIdempotency(ctx, "tok_a", "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a record at its expiry on the store's clock: %v, want not found", err)
	}
	rec.StatusCode = 202
	if err := put(rec); err != nil {
		t.Fatalf("replacing an expired record: %v", err)
	}
}
