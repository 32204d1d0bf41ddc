package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %04o, want %04o", filepath.Base(path), got, want)
	}
}

func TestSQLite_DatabaseWALAndSHMFilesAreOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "isolationd.db")
	s := openSQLite(t, path)
	assertMode(t, path, 0o600)
	ctx := context.Background()
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.CreateProject(ctx, apiv1.Project{ID: "prj_mode", Name: "mode"})
	}); err != nil {
		t.Fatal(err)
	}
	// The write made the WAL, and the read pool the shared memory.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		assertMode(t, p, 0o600)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSQLite_FilesAnOlderVersionLeftReadableAreTightenedOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "isolationd.db")
	s := openSQLite(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.WriteFile(p, nil, 0o644); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = openSQLite(t, path)
	defer s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		assertMode(t, p, 0o600)
	}
}
