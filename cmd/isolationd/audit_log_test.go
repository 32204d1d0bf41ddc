package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// auditLogSeqs checks that the JSON-lines audit log at path holds seq 1,
// 2, 3... in order, each once, and whole lines only; when chain is not nil
// that it is exactly chain. It returns the last seq.
func auditLogSeqs(t *testing.T, path string, chain []apiv1.AuditEvent) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev apiv1.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit log line %d: %v", n+1, err)
		}
		if n++; ev.Seq != n {
			t.Fatalf("audit log line %d is seq %d: out of order, repeated or missing", n, ev.Seq)
		}
		if chain != nil && (n > int64(len(chain)) || chain[n-1].Hash != ev.Hash) {
			t.Fatalf("audit log line %d (seq %d) is not the chain's event", n, ev.Seq)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if chain != nil && n != int64(len(chain)) {
		t.Fatalf("the audit log ends at seq %d, the chain at seq %d", n, len(chain))
	}
	return n
}

// chainOf reads the whole audit chain of a stopped server's data directory.
func chainOf(t *testing.T, dir string) []apiv1.AuditEvent {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLiteReadOnly(ctx, filepath.Join(dir, server.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var all []apiv1.AuditEvent
	read := store.AuditPager(st)
	for {
		page, err := read(ctx, int64(len(all)))
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
	}
}
