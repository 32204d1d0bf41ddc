package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// A token stored before session tokens existed (schema version 4) is
// found after the upgrade as it was, by no parent and no environment,
// and a session token is found by both.
func TestSQLite_TokensOfAnOlderSchemaGainParentAndEnvironment(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "isolationd.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for v, m := range migrations[:4] {
		if _, err := db.Exec(m); err != nil {
			t.Fatalf("migration %d: %v", v+1, err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations VALUES (?, 'then')`, v+1); err != nil {
			t.Fatal(err)
		}
	}
	old := TokenRecord{Token: apiv1.Token{ID: "tok_old", Name: "ci", Role: apiv1.RoleAdmin, CreatedAt: time.Now().UTC().Truncate(time.Second), ETag: `"1"`},
		Hash: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	_, vals, _, data, err := encode(tokens, old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO tokens (id, hash, project_id, data) VALUES (?, ?, ?, ?)`, old.ID, vals[0], vals[1], data); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ses := TokenRecord{Token: apiv1.Token{ID: "tok_ses", Name: "ci", Role: apiv1.RoleSession, ProjectID: "prj_a", EnvironmentID: "env_a", ParentID: old.ID,
		CreatedAt: old.CreatedAt, ETag: `"1"`}, Hash: "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	if err := s.Update(ctx, func(tx Tx) error { return tx.CreateToken(ctx, ses) }); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetToken(ctx, old.ID); err != nil || got.ID != old.ID || got.ParentID != "" || got.EnvironmentID != "" {
		t.Fatalf("the old token after the upgrade: %+v, %v", got, err)
	}
	for _, q := range []ListQuery{{ParentID: old.ID}, {EnvironmentID: "env_a"}} {
		got, _, err := s.ListTokens(ctx, q)
		if err != nil || len(got) != 1 || got[0].ID != ses.ID {
			t.Errorf("tokens by %+v: %+v, %v; want only %s", q, got, err, ses.ID)
		}
	}
}
