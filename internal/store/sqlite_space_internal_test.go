package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// A store that cannot write (here the writer connection is made
// query-only, which SQLite answers with SQLITE_READONLY, as it does for a
// read-only file) fails with ErrUnavailable, and recovers through Probe.
func TestSQLite_AReadOnlyStoreIsErrUnavailableUntilAProbeWrites(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "isolationd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func() error {
		return s.Update(ctx, func(tx Tx) error {
			return tx.CreateProject(ctx, apiv1.Project{ID: "prj_1", Name: "one", Generation: 1, ETag: `"1"`})
		})
	}
	if _, err := s.wq.ExecContext(ctx, "PRAGMA query_only = 1"); err != nil {
		t.Fatal(err)
	}
	if err := write(); !errors.Is(err, ErrUnavailable) || !errors.Is(s.WriteErr(), ErrUnavailable) {
		t.Fatalf("write: %v, WriteErr %v; want ErrUnavailable", err, s.WriteErr())
	}
	if err := s.Probe(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("probe while read-only: %v, want ErrUnavailable", err)
	}
	if _, err := s.wq.ExecContext(ctx, "PRAGMA query_only = 0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctx); err != nil || s.WriteErr() != nil {
		t.Fatalf("probe once writable: %v, WriteErr %v", err, s.WriteErr())
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
}

func TestStorageError_MapsOnlyTheCodesOfADiskThatCannotWrite(t *testing.T) {
	t.Parallel()
	plain := errors.New("something else")
	if got := storageError(plain); got != plain {
		t.Fatalf("a non-SQLite error was mapped: %v", got)
	}
	if got := storageError(ErrNotFound); !errors.Is(got, ErrNotFound) || errors.Is(got, ErrUnavailable) {
		t.Fatalf("ErrNotFound mapped to %v", got)
	}
}
