package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// WithExclusiveLeases runs the lease tests that need a store shared by
// several holders (PostgreSQL): open returns another handle on the store
// s uses, as a second server would open it. A single-process store
// (SQLite) holds every lease itself and has none of this.
func WithExclusiveLeases(open func(t *testing.T, s store.Store) store.Store) Option {
	return func(s *suite) { s.shared = open }
}

func leaser(t *testing.T, st store.Store) store.Leaser {
	t.Helper()
	l, ok := st.(store.Leaser)
	if !ok {
		t.Fatalf("%T is not a store.Leaser", st)
	}
	return l
}

// fenced runs an Update that checks the lease and writes a project.
func fenced(st store.Store, lease, holder string, fence int64, name string) error {
	return st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CheckLease(lease, holder, fence); err != nil {
			return err
		}
		return tx.CreateProject(ctx, project(name))
	})
}

func testLeases(t *testing.T, st store.Store) {
	l := leaser(t, st)
	fence, held, err := l.Lease(ctx, "reconciler", "replica-a", time.Minute)
	if err != nil || !held || fence < 1 {
		t.Fatalf("first Lease = %d, %v, %v; want held with a fence of 1 or more", fence, held, err)
	}
	again, held, err := l.Lease(ctx, "reconciler", "replica-a", time.Minute)
	if err != nil || !held || again != fence {
		t.Fatalf("renewing = %d, %v, %v; want held with the same fence %d", again, held, err, fence)
	}
	if err := fenced(st, "reconciler", "replica-a", fence, "fenced-ok"); err != nil {
		t.Fatalf("a write fenced by the lease held: %v", err)
	}
	if err := fenced(st, "reconciler", "replica-a", fence+1, "fenced-wrong"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("a write fenced by another fence: %v, want ErrFenced", err)
	}
	assertProjectNames(t, st, "fenced-ok")
	if _, _, err := l.Lease(ctx, "", "replica-a", time.Minute); err == nil {
		t.Fatal("a lease without a name was taken")
	}
	if err := l.ReleaseLease(ctx, "reconciler", "replica-a"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
}

func testExclusiveLeases(t *testing.T, a store.Store, b store.Store) {
	la, lb := leaser(t, a), leaser(t, b)
	fa, held, err := la.Lease(ctx, "reconciler", "replica-a", time.Minute)
	if err != nil || !held {
		t.Fatalf("A's Lease = %d, %v, %v", fa, held, err)
	}
	if fb, held, err := lb.Lease(ctx, "reconciler", "replica-b", time.Minute); err != nil || held {
		t.Fatalf("B's Lease while A holds it = %d, %v, %v; want not held", fb, held, err)
	}
	if err := fenced(b, "reconciler", "replica-b", fa, "b-without-lease"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("B's write under A's fence: %v, want ErrFenced", err)
	}
	// Released: B takes it at once, with the next fence, and A's fence
	// no longer lets A write.
	if err := la.ReleaseLease(ctx, "reconciler", "replica-a"); err != nil {
		t.Fatal(err)
	}
	fb, held, err := lb.Lease(ctx, "reconciler", "replica-b", time.Minute)
	if err != nil || !held || fb != fa+1 {
		t.Fatalf("B's Lease after A released = %d, %v, %v; want held with fence %d", fb, held, err, fa+1)
	}
	if err := fenced(a, "reconciler", "replica-a", fa, "a-after-handover"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("A's write after the handover: %v, want ErrFenced", err)
	}
	if err := fenced(a, "reconciler", "replica-b", fb, "b-fenced"); err != nil {
		t.Fatalf("B's fenced write (through A's handle): %v", err)
	}
	// Expiry on the database's clock: a short lease lapses and A takes
	// it back, the fence moving on again. Polled, with a bound.
	if _, held, err := lb.Lease(ctx, "reconciler", "replica-b", 50*time.Millisecond); err != nil || !held {
		t.Fatalf("B's short renewal: %v, %v", held, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, held, err := la.Lease(ctx, "reconciler", "replica-a", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if held {
			if f != fb+1 {
				t.Fatalf("A's fence after B's lease expired = %d, want %d", f, fb+1)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B's 50 ms lease never expired for A within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertProjectNames(t, a, "b-fenced")
}

// assertProjectNames fails unless the store's projects are exactly names.
func assertProjectNames(t *testing.T, st store.Store, names ...string) {
	t.Helper()
	got, _, err := st.ListProjects(ctx, store.ListQuery{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, p := range got {
		have = append(have, p.Name)
	}
	slices.Sort(have)
	slices.Sort(names)
	if !slices.Equal(have, names) {
		t.Fatalf("projects %v, want %v: a fenced write was kept or lost", have, names)
	}
}
