package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// A SIEM cursor survives a restart, is kept per sink and source, and never
// moves back.
func TestSQLite_SIEMCursorIsDurableAndNeverMovesBack(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "isolationd.db")
	s := openSQLite(t, path)
	if pos, found, err := s.GetSIEMCursor(ctx, "syslog+tls://a:6514", "audit"); err != nil || found || pos != 0 {
		t.Fatalf("new cursor = %d, %v, %v; want 0, false, nil", pos, found, err)
	}
	put := func(sink, source string, pos int64) {
		t.Helper()
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutSIEMCursor(ctx, sink, source, pos) }); err != nil {
			t.Fatalf("PutSIEMCursor(%s, %s, %d): %v", sink, source, pos, err)
		}
	}
	put("syslog+tls://a:6514", "audit", 42)
	put("syslog+tls://a:6514", "audit", 7) // a slower loop's late write
	put("syslog+tls://a:6514", "flows", 3)
	put("https://b/hook", "audit", 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, path)
	defer s.Close()
	for _, c := range []struct {
		sink, source string
		want         int64
	}{
		{"syslog+tls://a:6514", "audit", 42},
		{"syslog+tls://a:6514", "flows", 3},
		{"https://b/hook", "audit", 5},
	} {
		pos, found, err := s.GetSIEMCursor(ctx, c.sink, c.source)
		if err != nil || !found || pos != c.want {
			t.Errorf("cursor %s %s = %d, %v, %v; want %d", c.sink, c.source, pos, found, err, c.want)
		}
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutSIEMCursor(ctx, "", "audit", 1) }); err == nil {
		t.Error("a cursor without a sink name was stored")
	}
}
