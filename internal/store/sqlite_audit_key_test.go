package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func appendEvent(t *testing.T, s *store.SQLite, action string) (apiv1.AuditEvent, error) {
	t.Helper()
	ctx := context.Background()
	var ev apiv1.AuditEvent
	err := s.Update(ctx, func(tx store.Tx) error {
		var err error
		ev, err = tx.AppendAudit(ctx, apiv1.AuditEvent{ID: "evt_" + uuid.Must(uuid.NewV7()).String(), Time: time.Now(), Action: action, Outcome: apiv1.OutcomeSuccess})
		return err
	})
	return ev, err
}

func TestSQLite_AKeyedChainStaysKeyedWithItsOneKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "isolationd.db")
	k, _ := audit.NewKey([]byte(strings.Repeat("k", 32)))
	other, _ := audit.NewKey([]byte(strings.Repeat("o", 32)))

	s := openSQLite(t, path)
	if _, err := appendEvent(t, s, "before.key"); err != nil {
		t.Fatal(err)
	}
	// An unkeyed chain may become keyed.
	if err := s.UseAuditKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	ev, err := appendEvent(t, s, "after.key")
	if err != nil || ev.KeyID != k.ID() || ev.Hash != k.Hash(ev) {
		t.Fatalf("keyed append = %+v, %v", ev, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSQLite(t, path)
	defer s.Close()
	for _, key := range []*audit.Key{nil, other} {
		if err := s.UseAuditKey(ctx, key); !errors.Is(err, store.ErrAuditKey) || !strings.Contains(err.Error(), k.ID()) {
			t.Fatalf("UseAuditKey(%v) on a chain keyed with %s: %v", key, k.ID(), err)
		}
	}
	// Appending unkeyed (no UseAuditKey) is refused too, and keeps nothing.
	if _, err := appendEvent(t, s, "unkeyed.after.keyed"); !errors.Is(err, store.ErrAuditKey) {
		t.Fatalf("an unkeyed append to a keyed chain: %v", err)
	}
	if err := s.UseAuditKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, err := appendEvent(t, s, "keyed.again"); err != nil {
		t.Fatal(err)
	}
	res, err := store.VerifyAuditWithKey(ctx, s, k)
	if err != nil || !res.OK() || res.Events != 3 || res.FirstKeyedSeq != 2 || res.KeyID != k.ID() {
		t.Fatalf("VerifyAuditWithKey = %+v, %v", res, err)
	}
	if res, err := store.VerifyAudit(ctx, s); err != nil || res.OK() || !res.Broken.NeedsKey || res.Broken.Seq != 2 {
		t.Fatalf("VerifyAudit without the key = %+v, %v", res.Broken, err)
	}
}
