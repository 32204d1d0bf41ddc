package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
)

// A single-node deployment moves to PostgreSQL with store copy: every
// table verified, the keyed audit chain intact on the target (audit
// verify --store says the same as on the file), and a server on the
// copy answers as the old one did: the same objects under the same ids,
// an Idempotency-Key replayed, the admin token valid. A second copy into
// the same database is refused.
func TestStoreCopy_MovesASQLiteDeploymentToPostgresIntact(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	keyFile, key := writeKey(t, t.TempDir(), "audit.key", strings.Repeat("3c", 32))

	p := startProc(t, dir, "--audit-hmac-key-file", keyFile)
	createProjects(t, p, "web", "data")
	st, body, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "ops"}, "copy-key-1")
	if err != nil || st != 201 {
		t.Fatalf("create ops: %d %s %v", st, body, err)
	}
	var ops apiv1.Project
	if err := json.Unmarshal(body, &ops); err != nil {
		t.Fatal(err)
	}
	_, before, err := p.do("GET", "/v1/projects", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	stopProc(t, p)

	code, out := runCLI(t, "audit", "verify", "--data-dir", dir, "--hmac-key-file", keyFile)
	if code != 0 {
		t.Fatalf("audit verify on the file: exit %d: %s", code, out)
	}
	lastHash := regexp.MustCompile(`last hash ([0-9a-f]+)`).FindStringSubmatch(out)

	code, out = runCLI(t, "store", "copy", "--from", "sqlite:"+filepath.Join(dir, "isolationd.db"), "--to", dsn, "--hmac-key-file", keyFile)
	if code != 0 || !strings.Contains(out, "every table's rows and digest match") || !strings.Contains(out, "audit chain intact on the target") {
		t.Fatalf("store copy: exit %d: %s", code, out)
	}
	if !regexp.MustCompile(`projects\s+3 rows`).MatchString(out) || !strings.Contains(out, "tokens") || !strings.Contains(out, "idempotency") {
		t.Errorf("store copy should print each table it copied, got:\n%s", out)
	}
	code, out = runCLI(t, "audit", "verify", "--store", dsn, "--hmac-key-file", keyFile)
	if code != 0 || lastHash == nil || !strings.Contains(out, "last hash "+lastHash[1]) || !strings.Contains(out, "key id "+key.ID()) {
		t.Fatalf("audit verify --store on the copy: exit %d: %s; want the file's last hash %v", code, out, lastHash)
	}

	p = startProc(t, dir, "--store", dsn, "--audit-hmac-key-file", keyFile)
	_, after, err := p.do("GET", "/v1/projects", nil, "")
	if err != nil || string(after) != string(before) {
		t.Errorf("the projects on the copy:\n%s\nwant as before:\n%s", after, before)
	}
	st, body, err = p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "ops"}, "copy-key-1")
	var replay apiv1.Project
	if err != nil || st != 201 || json.Unmarshal(body, &replay) != nil || replay.ID != ops.ID {
		t.Errorf("the Idempotency-Key replayed on the copy: %d %s %v; want 201 with project %s", st, body, err, ops.ID)
	}
	stopProc(t, p)

	code, out = runCLI(t, "store", "copy", "--from", "sqlite:"+filepath.Join(dir, "isolationd.db"), "--to", dsn)
	if code != 1 || !strings.Contains(out, "the target is not empty") {
		t.Errorf("a second copy into the same database: exit %d: %s; want refused as not empty", code, out)
	}
}

// migrate brings a store to this build's schema and says which; a store
// it cannot reach or name fails with a clear message, never the
// password.
func TestMigrate_PrintsTheSchemaVersionAndFailsClearly(t *testing.T) {
	dsn := pgtest.DSN(t)
	code, out := runCLI(t, "migrate", "--store", dsn)
	if code != 0 || !regexp.MustCompile(`schema version \d+ \(current\)`).MatchString(out) {
		t.Errorf("migrate --store postgres: exit %d: %s", code, out)
	}
	dir := t.TempDir()
	code, out = runCLI(t, "migrate", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "sqlite:"+filepath.Join(dir, "isolationd.db")+": schema version") {
		t.Errorf("migrate --data-dir: exit %d: %s", code, out)
	}
	code, out = runCLI(t, "migrate", "--store", "postgres://iso:s3cret@127.0.0.1:1/iso?connect_timeout=2")
	if code != 1 || !strings.Contains(out, "postgres://iso:REDACTED@127.0.0.1:1/iso") || strings.Contains(out, "s3cret") {
		t.Errorf("migrate on an unreachable server: exit %d: %s; want exit 1 naming it, its password redacted", code, out)
	}
	code, out = runCLI(t, "migrate", "--store", "mysql://iso:s3cret@db/iso")
	if code != 2 || !strings.Contains(out, "--store: mysql://iso:REDACTED@db/iso: want sqlite") || strings.Contains(out, "s3cret") {
		t.Errorf("migrate --store mysql: exit %d: %s", code, out)
	}
	if code, out = runCLI(t, "migrate"); code != 2 || !strings.Contains(out, "--data-dir or --store is required") {
		t.Errorf("migrate without a store: exit %d: %s", code, out)
	}
}
