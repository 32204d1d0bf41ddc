package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

const testToken = "isot_crash-test-token-0123456789"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds isolationd once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "isolationd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "isolationd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is an isolationd subprocess.
type proc struct {
	cmd *exec.Cmd
	url string
}

func startProc(t *testing.T, dataDir string, flags ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn"}, flags...)...)
	cmd.Env = append(os.Environ(), "ISOLATIOND_BOOTSTRAP_TOKEN="+testToken)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "isolationd listening on "); ok {
				urlc <- u
			}
		}
	}()
	p := &proc{cmd: cmd}
	t.Cleanup(func() {
		if cmd.ProcessState != nil {
			return // the test stopped it and read how it exited
		}
		// Left running (or failing to start): how it exits is no longer
		// the test's concern, only that it is gone.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	select {
	case p.url = <-urlc:
		return p
	case <-time.After(30 * time.Second):
		t.Fatal("isolationd did not start within 30s")
	}
	return nil
}

// stopProc shuts isolationd down as an operator does (SIGTERM), and fails
// the test unless it exits cleanly.
func stopProc(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM shutdown: %v", err)
	}
}

// killProc kills isolationd with SIGKILL, as a crash would, and reaps it.
func killProc(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitKilled(t, p)
}

// waitKilled reaps isolationd once killed, and fails the test if it
// exited any other way.
func waitKilled(t *testing.T, p *proc) {
	t.Helper()
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("isolationd was to die of SIGKILL: %v", err)
	}
}

func (p *proc) do(method, path string, body any, key string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	return res.StatusCode, out, err
}

func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String() + errb.String()
}

// TestCrash_Kill9DuringABurstLosesNoAcknowledgedCreate kills the server
// mid-burst, restarts it on the same data directory and retries every
// unanswered request with its Idempotency-Key.
func TestCrash_Kill9DuringABurstLosesNoAcknowledgedCreate(t *testing.T) {
	dir := t.TempDir()
	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	p := startProc(t, dir, "--audit-log", auditLog)
	status, body, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "crash"}, "")
	if err != nil || status != 201 {
		t.Fatalf("create project: %d %s %v", status, body, err)
	}
	var prj apiv1.Project
	if err := json.Unmarshal(body, &prj); err != nil {
		t.Fatal(err)
	}

	const total, workers, killAfter = 120, 6, 40
	type result struct {
		acked bool
		id    string
	}
	results := make([]result, total)
	var mu sync.Mutex
	acked := 0
	killed := make(chan struct{})
	var once sync.Once
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				st, b, err := p.do("POST", "/v1/environments", envBody(prj.ID, i), key(i))
				if err != nil || st != 202 {
					continue // unanswered: retried after the restart
				}
				var e apiv1.Environment
				if err := json.Unmarshal(b, &e); err != nil {
					t.Errorf("create %d answered %s: %v", i, b, err)
					continue
				}
				mu.Lock()
				results[i] = result{acked: true, id: e.ID}
				acked++
				if acked == killAfter {
					once.Do(func() {
						if err := p.cmd.Process.Kill(); err != nil {
							t.Errorf("kill -9: %v", err)
						}
						close(killed)
					})
				}
				mu.Unlock()
			}
		})
	}
	for i := range total {
		select {
		case jobs <- i:
		case <-killed:
		}
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d creates acknowledged before kill -9", acked)
	if acked < killAfter {
		t.Fatalf("only %d acknowledged", acked)
	}
	waitKilled(t, p)
	// What the audit log got before the kill is in order; the restart
	// catches up with the rest.
	t.Logf("the audit log held seq 1 to %d at the kill", auditLogSeqs(t, auditLog, nil))

	p = startProc(t, dir, "--audit-log", auditLog)
	for i := range total {
		st, b, err := p.do("POST", "/v1/environments", envBody(prj.ID, i), key(i))
		if err != nil || st != 202 {
			t.Fatalf("retry %d: %d %s %v", i, st, b, err)
		}
		var e apiv1.Environment
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("retry %d answered %s: %v", i, b, err)
		}
		if results[i].acked && results[i].id != e.ID {
			t.Fatalf("create %d was acknowledged as %s but the retry answered %s", i, results[i].id, e.ID)
		}
	}
	var list apiv1.List[apiv1.Environment]
	_, b, err := p.do("GET", "/v1/environments?limit=1000&project_id="+prj.ID, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("list answered %s: %v", b, err)
	}
	names := map[string]bool{}
	for _, e := range list.Items {
		if names[e.Name] {
			t.Fatalf("environment %s exists twice", e.Name)
		}
		names[e.Name] = true
	}
	if len(list.Items) != total {
		t.Fatalf("%d environments, want %d", len(list.Items), total)
	}
	// None is left half-made: every one reaches ready.
	for _, e := range list.Items {
		st, b, err := p.do("GET", "/v1/environments/"+e.ID+"?wait_for=ready&timeout=30s", nil, "")
		if err != nil || st != 200 || !bytes.Contains(b, []byte(`"state":"ready"`)) || !bytes.Contains(b, []byte(`"enforced":true`)) {
			t.Fatalf("environment %s after restart: %d %s %v", e.Name, st, b, err)
		}
	}
	stopProc(t, p)
	if code, out := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("audit verify after the crash: exit %d: %s", code, out)
	}
	// The audit log is the whole chain, in order, each event once.
	auditLogSeqs(t, auditLog, chainOf(t, dir))
}

// tamper runs statement on the database of a stopped server in dir, as
// someone with write access to the file but not to isolationd would.
func tamper(t *testing.T, dir, statement string) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "isolationd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), statement); err != nil {
		t.Fatal(err)
	}
}

func envBody(projectID string, i int) apiv1.EnvironmentCreate {
	return apiv1.EnvironmentCreate{ProjectID: projectID, Name: fmt.Sprintf("env-%03d", i), Labels: map[string]string{"burst": "1"}}
}

func key(i int) string { return fmt.Sprintf("crash-key-%03d", i) }

func TestAuditVerify_FailsNamingTheFirstAlteredEvent(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	for i := range 3 {
		if st, b, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: fmt.Sprintf("p%d", i)}, ""); err != nil || st != 201 {
			t.Fatalf("create: %d %s %v", st, b, err)
		}
	}
	stopProc(t, p)
	if code, out := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "intact: 4 events") {
		t.Fatalf("untouched chain: exit %d: %s", code, out)
	}
	tamper(t, dir, "UPDATE audit_events SET action = 'project.delete' WHERE seq = 3")
	code, out := runCLI(t, "audit", "verify", "--data-dir", dir)
	if code == 0 || !strings.Contains(out, "seq 3") {
		t.Fatalf("tampered chain: exit %d: %s", code, out)
	}
	t.Log(strings.TrimSpace(out))
}

func TestAuditVerify_ReadsBesideARunningServerAndNeverCreatesADatabase(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	if st, b, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "live"}, ""); err != nil || st != 201 {
		t.Fatalf("create: %d %s %v", st, b, err)
	}
	if code, out := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "intact: 2 events") {
		t.Fatalf("verify beside the running server: exit %d: %s", code, out)
	}
	// The server still writes after the verifier has come and gone.
	if st, b, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "after"}, ""); err != nil || st != 201 {
		t.Fatalf("create after verify: %d %s %v", st, b, err)
	}

	empty := t.TempDir()
	if code, out := runCLI(t, "audit", "verify", "--data-dir", empty); code == 0 || !strings.Contains(out, "isolationd.db") {
		t.Fatalf("verify of a directory without a database: exit %d: %s", code, out)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("verify created %v in a directory without a database", entries)
	}
}

func TestServe_RefusesMissingDataDirAndUnknownCommands(t *testing.T) {
	if code, out := runCLI(t, "serve"); code != 2 || !strings.Contains(out, "--data-dir") {
		t.Fatalf("serve without --data-dir: %d %s", code, out)
	}
	if code, _ := runCLI(t, "frobnicate"); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
}
