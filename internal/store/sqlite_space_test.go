package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/storetest"
)

func createProject(ctx context.Context, s store.Store, i int) error {
	now := time.Now().UTC()
	return s.Update(ctx, func(tx store.Tx) error {
		return tx.CreateProject(ctx, apiv1.Project{
			ID: fmt.Sprintf("prj_%06d", i), Name: fmt.Sprintf("p%06d", i), Description: strings.Repeat("d", 4000),
			Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: `"1"`,
		})
	})
}

// On a full disk a write fails with ErrFull, the reserve is released so
// that the next audit event still has room, and writes are reported
// failing until a probe finds the space back and holds the reserve again.
func TestSQLite_AFullDiskIsErrFullAndTheReserveLeavesRoomForTheAudit(t *testing.T) {
	ctx := context.Background()
	vol := storetest.SmallVolume(t, 16<<20)
	s := openSQLite(t, filepath.Join(vol, "isolationd.db"))
	defer s.Close()
	const reserve = 2 << 20
	if err := s.HoldReserve(reserve); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.Path() + store.ReserveSuffix); err != nil || fi.Mode().Perm() != 0o600 || !s.Reserved() {
		t.Fatalf("reserve file: %v %v (held %v), want mode 0600", fi, err, s.Reserved())
	}
	filler := storetest.Fill(t, vol)

	var err error
	written := 0
	for ; written < 10000; written++ {
		if err = createProject(ctx, s, written); err != nil {
			break
		}
	}
	if !errors.Is(err, store.ErrFull) {
		t.Fatalf("after %d writes on a full disk: %v, want ErrFull", written, err)
	}
	if s.Reserved() || !errors.Is(s.WriteErr(), store.ErrFull) {
		t.Fatalf("after ErrFull: reserve held %v, WriteErr %v; want released and ErrFull", s.Reserved(), s.WriteErr())
	}
	for range 20 {
		if _, err := appendEvent(t, s, "auth.denied"); err != nil {
			t.Fatalf("an audit event after the reserve was released: %v", err)
		}
	}
	if err := s.Probe(ctx); !errors.Is(err, store.ErrFull) {
		t.Fatalf("probe with the disk still full: %v, want ErrFull", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("probe after space was freed: %v", err)
	}
	if !s.Reserved() || s.WriteErr() != nil {
		t.Fatalf("after a good probe: reserve held %v, WriteErr %v", s.Reserved(), s.WriteErr())
	}
	if err := createProject(ctx, s, written); err != nil {
		t.Fatalf("a write once space is back: %v", err)
	}
	t.Logf("%d projects of 4 KB filled the disk; 20 audit events fitted in the %d-byte reserve", written, reserve)
}

// A server restarted on a full disk still opens: it serves reads and
// reports the disk full until there is room for its reserve again.
func TestSQLite_OpeningOnAFullDiskStartsAsAfterOne(t *testing.T) {
	ctx := context.Background()
	vol := storetest.SmallVolume(t, 16<<20)
	s := openSQLite(t, filepath.Join(vol, "isolationd.db"))
	defer s.Close()
	filler := storetest.Fill(t, vol)
	if err := s.HoldReserve(2 << 20); err != nil {
		t.Fatalf("holding a reserve on a full disk: %v, want the store to start", err)
	}
	if s.Reserved() || !errors.Is(s.WriteErr(), store.ErrFull) {
		t.Fatalf("reserve held %v, WriteErr %v: want none held and ErrFull", s.Reserved(), s.WriteErr())
	}
	if _, _, err := s.ListProjects(ctx, store.ListQuery{}); err != nil {
		t.Fatalf("a read on the full disk: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctx); err != nil || !s.Reserved() {
		t.Fatalf("probe once there is room: %v (reserve held %v)", err, s.Reserved())
	}
}
