package server

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

func TestStart_RefusesAnAuditLogOfAnotherDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	start := func(dir string) (*Server, error) {
		sink, err := audit.OpenSink(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sink.Close() })
		return Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: dir, BootstrapToken: "isot_audit-log-test-token-0123456789", AuditSink: sink})
	}
	first := t.TempDir()
	srv, err := start(first)
	if err != nil {
		t.Fatal(err)
	}
	stop(t, srv)
	// Another database with a chain as long: same seq, another hash.
	if _, err := start(t.TempDir()); err == nil || !strings.Contains(err.Error(), "belongs to another database") {
		t.Fatalf("start with the audit log of another database: %v", err)
	}
	srv, err = start(first)
	if err != nil {
		t.Fatalf("restart on its own audit log: %v", err)
	}
	stop(t, srv)
}
