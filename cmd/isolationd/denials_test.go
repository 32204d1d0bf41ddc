package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// anonymous sends n requests without a token and returns how many were
// answered 401 or 429 (the anonymous rate limit of the default flags).
func anonymous(t *testing.T, p *proc, n int) int {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	refused := 0
	for range n {
		res, err := c.Get(p.url + "/v1/projects")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 401 || res.StatusCode == 429 {
			refused++
		}
	}
	return refused
}

// auditedRefusals adds up the refused requests the database's audit
// events stand for: one per auth.denied event, the count of each
// aggregate.
func auditedRefusals(t *testing.T, dir string) (events, refusals int) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "isolationd.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), "SELECT action, changes FROM audit_events WHERE outcome = 'denied'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var action, changes string
		if err := rows.Scan(&action, &changes); err != nil {
			t.Fatal(err)
		}
		events++
		if !strings.HasSuffix(action, ".aggregate") {
			refusals++
			continue
		}
		var c struct {
			After struct {
				Count int `json:"count"`
			} `json:"after"`
		}
		if err := json.Unmarshal([]byte(changes), &c); err != nil || c.After.Count < 1 {
			t.Fatalf("aggregate event without a count: %s (%v)", changes, err)
		}
		refusals += c.After.Count
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return events, refusals
}

func TestServe_SIGTERMAuditsEveryRefusalStillCounted(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	const n = 100
	if got := anonymous(t, p, n); got != n {
		t.Fatalf("%d of %d anonymous requests refused", got, n)
	}
	stopProc(t, p)
	events, refusals := auditedRefusals(t, dir)
	if refusals != n {
		t.Fatalf("after SIGTERM the trail stands for %d refusals in %d events, want %d", refusals, events, n)
	}
	if code, out := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("audit verify: exit %d: %s", code, out)
	}
	t.Logf("%d refusals in %d audit events", refusals, events)
}

// A kill -9 loses at most what the aggregator held in memory: the counts
// of the open minute. Every refusal an audit read has followed is kept.
func TestServe_Kill9LosesAtMostTheOpenMinutesCounts(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	const n = 100
	anonymous(t, p, n)
	// An audit read waits for the refusals answered before it.
	if st, b, err := p.do("GET", "/v1/audit-events?outcome=denied&limit=1000", nil, ""); err != nil || st != 200 {
		t.Fatalf("audit read: %d %s %v", st, b, err)
	}
	killProc(t, p)
	events, refusals := auditedRefusals(t, dir)
	if events < 1 || refusals > n {
		t.Fatalf("after kill -9: %d events standing for %d refusals of %d", events, refusals, n)
	}
	if code, out := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("audit verify: exit %d: %s", code, out)
	}
	t.Logf("kill -9 kept the %d first refusals of their minute and lost the %d counted after them", refusals, n-refusals)
}

func TestServe_RefusesNegativeAnonymousLimitsAndReserve(t *testing.T) {
	for _, flag := range []string{"--anon-rate-limit=-1", "--anon-rate-burst=-1", "--audit-reserve-mib=-1"} {
		if code, out := runCLI(t, "serve", "--data-dir", t.TempDir(), flag); code != 2 || !strings.Contains(out, "0 or more") {
			t.Errorf("serve %s: exit %d: %s", flag, code, out)
		}
	}
}
