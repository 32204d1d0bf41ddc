package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem/siemtest"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// headSeq is the newest audit seq in dir's database.
func headSeq(t *testing.T, dir string) int64 {
	t.Helper()
	chain := chainOf(t, dir)
	return chain[len(chain)-1].Seq
}

// webhookBySeq are the audit seqs a webhook accepted (OCSF), each with
// the ids of its copies.
func webhookBySeq(t *testing.T, w *siemtest.Webhook) map[int64][]string {
	t.Helper()
	ids, _, err := w.BySeq()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// storedCursor is the audit cursor of sink in dir's database, read
// beside the running server.
func storedCursor(t *testing.T, dir, sink string) int64 {
	t.Helper()
	st, err := store.OpenSQLiteReadOnly(context.Background(), filepath.Join(dir, server.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pos, _, err := st.GetSIEMCursor(context.Background(), sink, siem.SourceAudit)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// batchStart is where a batch header ("audit:FIRST-LAST") starts.
func batchStart(t *testing.T, h string) int64 {
	t.Helper()
	first, _, _ := strings.Cut(strings.TrimPrefix(h, "audit:"), "-")
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		t.Fatalf("batch header %q", h)
	}
	return n
}

// isolationd killed with -9 while a slow webhook is still receiving
// resumes on restart from its stored cursor: every event arrives, each
// copy with its id, and what was resent starts at the cursor, not at the
// beginning.
func TestCrash_Kill9MidDeliveryResumesTheSIEMSinkFromItsCursor(t *testing.T) {
	dir := t.TempDir()
	pki := siemtest.NewPKI(t, t.TempDir())
	w := siemtest.StartWebhook(t, pki, siemtest.WebhookOptions{Delay: 150 * time.Millisecond})
	sink := fmt.Sprintf("--siem=%s/hook?format=ocsf&from=oldest&ca=%s&cert=%s&key=%s", w.URL, pki.CA, pki.ClientCert, pki.ClientKey)
	p := startProc(t, dir, sink)
	// Writes go on until the kill; the kill comes once 40 events are in,
	// with a batch on its way (each takes the webhook 150 ms) and the
	// writes since behind it.
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := range 2000 {
			if st, _, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: fmt.Sprintf("p%d", i)}, ""); err != nil || st != 201 {
				return // killed
			}
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(webhookBySeq(t, w)) < 40 || storedCursor(t, dir, w.URL+"/hook") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook got %d events within 20s, the stored cursor is %d", len(webhookBySeq(t, w)), storedCursor(t, dir, w.URL+"/hook"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	killProc(t, p)
	cursor := storedCursor(t, dir, w.URL+"/hook")
	<-writing
	before := len(w.Batches())
	got := len(webhookBySeq(t, w))
	if head := headSeq(t, dir); int64(got) >= head {
		t.Fatalf("everything (%d events) was delivered before the kill; the test proves nothing", got)
	}

	p = startProc(t, dir, sink)
	for i := range 10 {
		if st, b, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: fmt.Sprintf("after%d", i)}, ""); err != nil || st != 201 {
			t.Fatalf("create: %d %s %v", st, b, err)
		}
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		head := headSeq(t, dir)
		seen := webhookBySeq(t, w)
		missing := 0
		for s := int64(1); s <= head; s++ {
			if len(seen[s]) == 0 {
				missing++
			}
		}
		if missing == 0 {
			for s, ids := range seen {
				for _, id := range ids {
					if id != ids[0] {
						t.Errorf("seq %d arrived with ids %v", s, ids)
					}
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events missing 30s after the restart", missing, head)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopProc(t, p)
	// The first batch accepted after the kill: the old process's last,
	// if the webhook finished it after all, or the new one's first.
	resumed := batchStart(t, w.Batches()[before])
	if resumed != cursor+1 && resumed != int64(got)+1 {
		t.Errorf("after the restart delivery began at seq %d; the stored cursor was %d (%d events were in)", resumed, cursor, got)
	}
	t.Logf("%d events in before the kill, cursor %d, delivery resumed at seq %d", got, cursor, resumed)
}

// isolationd audit export writes any range of the chain in a SIEM
// format, for backfill; bad flags exit 2 naming the flag.
func TestAuditExport_WritesTheRangeAsOCSF(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	createProjects(t, p, "a", "b", "c", "d")
	stopProc(t, p)
	head := headSeq(t, dir)
	code, out, errOut := runSplit("audit", "export", "--data-dir", dir, "--since", "3", "--format", "ocsf")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if int64(len(lines)) != head-2 || !strings.Contains(errOut, fmt.Sprintf("%d events", head-2)) {
		t.Fatalf("%d lines for seqs 3 to %d: %s", len(lines), head, errOut)
	}
	for i, line := range lines {
		var ev struct {
			ClassUID int `json:"class_uid"`
			Metadata struct {
				Sequence int64 `json:"sequence"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Metadata.Sequence != int64(i+3) || ev.ClassUID != 6003 {
			t.Errorf("line %d: %s (%v)", i, line, err)
		}
	}
	if code, out, _ := runSplit("audit", "export", "--data-dir", dir, "--since", "2", "--until", "2"); code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"seq":2`) {
		t.Errorf("--since 2 --until 2 (json): exit %d: %s", code, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "1", "--format", "leef"}, `--format: unknown format "leef"`},
		{[]string{"--since", "0"}, "--since 0: audit seqs start at 1"},
		{[]string{"--since", "5", "--until", "4"}, "--until 4 is before --since 5"},
	} {
		if code, _, errOut := runSplit(append([]string{"audit", "export", "--data-dir", dir}, c.args...)...); code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("audit export %v: exit %d: %s", c.args, code, errOut)
		}
	}
}

// A bad --siem fails serve at start, exit 2, naming the rule.
func TestServe_RefusesABadSIEMSinkAtStart(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"kafka://broker:9092", `unknown scheme "kafka"`},
		{"syslog+tls://127.0.0.1:6514?format=xml", `unknown format "xml"`},
		{"syslog+tls://127.0.0.1:6514?ca=/nonexistent/ca.pem", "ca=/nonexistent/ca.pem: no such file or directory"},
		{"https://hooks.example/in?secret=hunter2", "at least 16 characters"},
	} {
		code, out := runCLI(t, "serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--siem", c.url)
		if code != 2 || !strings.Contains(out, "isolationd serve: --siem") || !strings.Contains(out, c.want) || strings.Contains(out, "hunter2") {
			t.Errorf("serve --siem %s: exit %d: %s", c.url, code, out)
		}
	}
}
