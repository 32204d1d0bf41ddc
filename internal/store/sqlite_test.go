package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

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
