package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

func writeKey(t *testing.T, dir, name, secret string) (string, *audit.Key) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := audit.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, k
}

func createProjects(t *testing.T, p *proc, names ...string) {
	t.Helper()
	for _, n := range names {
		if st, b, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: n}, ""); err != nil || st != 201 {
			t.Fatalf("create %s: %d %s %v", n, st, b, err)
		}
	}
}

func TestAuditVerify_SaysWhetherTheChainIsKeyedAndNeedsItsKey(t *testing.T) {
	dir := t.TempDir()
	keys := t.TempDir()
	keyFile, key := writeKey(t, keys, "audit.key", strings.Repeat("5a", 32))
	wrongFile, wrong := writeKey(t, keys, "wrong.key", strings.Repeat("a5", 32))

	// Unkeyed at first: verify says so, as it always did.
	p := startProc(t, dir)
	createProjects(t, p, "p0")
	stopProc(t, p)
	if code, out := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "intact: 2 events") || !strings.Contains(out, "not keyed") {
		t.Fatalf("unkeyed chain: exit %d: %s", code, out)
	}
	// Given a key, an unkeyed chain fails: it may have been re-sealed without it.
	if code, out := runCLI(t, "audit", "verify", "--data-dir", dir, "--hmac-key-file", keyFile); code == 0 || !strings.Contains(out, "NOT KEYED") {
		t.Fatalf("unkeyed chain verified with a key: exit %d: %s", code, out)
	}

	// Keyed from the restart on: seq 3 and after.
	p = startProc(t, dir, "--audit-hmac-key-file", keyFile)
	createProjects(t, p, "p1", "p2")
	stopProc(t, p)
	code, out := runCLI(t, "audit", "verify", "--data-dir", dir, "--hmac-key-file", keyFile)
	if want := fmt.Sprintf("keyed (HMAC-SHA256, key id %s) from seq 3", key.ID()); code != 0 || !strings.Contains(out, "intact: 4 events") || !strings.Contains(out, want) {
		t.Fatalf("keyed chain with its key: exit %d: %s; want %q", code, out, want)
	}
	code, out = runCLI(t, "audit", "verify", "--data-dir", dir)
	if code == 0 || !strings.Contains(out, "KEYED") || !strings.Contains(out, "seq 3") || !strings.Contains(out, key.ID()) || !strings.Contains(out, "--hmac-key-file") {
		t.Fatalf("keyed chain without the key: exit %d: %s", code, out)
	}
	t.Log(strings.TrimSpace(out))
	code, out = runCLI(t, "audit", "verify", "--data-dir", dir, "--hmac-key-file", wrongFile)
	if code == 0 || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "seq 3") || !strings.Contains(out, wrong.ID()) {
		t.Fatalf("keyed chain with the wrong key: exit %d: %s", code, out)
	}
	t.Log(strings.TrimSpace(out))

	// The server refuses to go on with a keyed chain without its key.
	for _, flags := range [][]string{nil, {"--audit-hmac-key-file", wrongFile}} {
		cmd := exec.Command(binary(t), append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir}, flags...)...)
		cmd.Env = append(os.Environ(), "ISOLATIOND_BOOTSTRAP_TOKEN="+testToken)
		b, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(b), "keyed") || !strings.Contains(string(b), key.ID()) {
			t.Fatalf("serve %v on a keyed chain: %v: %s", flags, err, b)
		}
		if strings.Contains(string(b), strings.Repeat("5a", 32)) || strings.Contains(string(b), strings.Repeat("a5", 32)) {
			t.Fatalf("serve printed a key: %s", b)
		}
	}

	// Someone with the database but not the key alters a keyed event: the
	// first link named is the one they touched.
	tamper(t, dir, "UPDATE audit_events SET reason = 'nothing happened' WHERE seq = 4")
	code, out = runCLI(t, "audit", "verify", "--data-dir", dir, "--hmac-key-file", keyFile)
	if code == 0 || !strings.Contains(out, "BROKEN after 3 good events") || !strings.Contains(out, "seq 4") {
		t.Fatalf("tampered keyed chain: exit %d: %s", code, out)
	}
}

func TestServe_RefusesAnAuditKeyFileThatIsMissingOrShort(t *testing.T) {
	keys := t.TempDir()
	short, _ := filepath.Abs(filepath.Join(keys, "short.key"))
	if err := os.WriteFile(short, []byte("not-long-enough\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{short, filepath.Join(keys, "missing.key")} {
		code, out := runCLI(t, "serve", "--data-dir", t.TempDir(), "--audit-hmac-key-file", f)
		if code != 2 || !strings.Contains(out, "--audit-hmac-key-file") || strings.Contains(out, "not-long-enough") {
			t.Fatalf("serve --audit-hmac-key-file %s: exit %d: %s", f, code, out)
		}
	}
	if code, out := runCLI(t, "audit", "verify", "--data-dir", t.TempDir(), "--hmac-key-file", short); code != 2 || !strings.Contains(out, "--hmac-key-file") {
		t.Fatalf("verify with a short key: exit %d: %s", code, out)
	}
}
