package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// chainStore returns a store holding a chain of n events, and a second
// connection to its file for tampering with rows behind its back.
func chainStore(t *testing.T, n int) (*store.SQLite, *sql.DB, []apiv1.AuditEvent) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "isolationd.db")
	s := openSQLite(t, path)
	t.Cleanup(func() { s.Close() })
	var evs []apiv1.AuditEvent
	for i := range n {
		ev, err := appendAudit(s, apiv1.AuditEvent{
			ID: fmt.Sprintf("evt_%d", i), Time: time.Now(), RequestID: fmt.Sprintf("req_%d", i), Actor: apiv1.Actor{TokenID: "tok_1", Name: "admin"},
			Source: apiv1.Source{IP: "127.0.0.1", UserAgent: "test"}, ProjectID: "prj_1", Action: "environment.create",
			Resource: apiv1.ResourceRef{Type: "environment", ID: fmt.Sprintf("env_%d", i)}, Outcome: apiv1.OutcomeSuccess,
			StatusCode: 202, Reason: "because", Changes: &apiv1.Changes{After: map[string]any{"name": fmt.Sprintf("e%d", i)}},
		})
		evs = append(evs, ev)
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return s, db, evs
}

// appendAudit appends ev to the chain in a transaction of its own.
func appendAudit(s *store.SQLite, ev apiv1.AuditEvent) (apiv1.AuditEvent, error) {
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error {
		var err error
		ev, err = tx.AppendAudit(ctx, ev)
		return err
	})
	return ev, err
}

// appendEvent appends a bare successful event of action.
func appendEvent(t *testing.T, s *store.SQLite, action string) (apiv1.AuditEvent, error) {
	t.Helper()
	return appendAudit(s, apiv1.AuditEvent{ID: "evt_" + uuid.Must(uuid.NewV7()).String(), Time: time.Now(), Action: action, Outcome: apiv1.OutcomeSuccess})
}

func tamper(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func verify(t *testing.T, s *store.SQLite) audit.Result {
	t.Helper()
	res, err := store.VerifyAudit(context.Background(), s)
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	return res
}

func wantBreak(t *testing.T, res audit.Result, seq int64, id, because string) {
	t.Helper()
	if res.OK() || res.Broken.Seq != seq || res.Broken.ID != id || !strings.Contains(res.Broken.Reason, because) {
		t.Fatalf("first broken link = %v, want seq %d (id %s) because %q", res.Broken, seq, id, because)
	}
}

func TestVerifyAudit_IntactChainVerifies(t *testing.T) {
	s, _, evs := chainStore(t, 5)
	res := verify(t, s)
	if !res.OK() || res.Events != 5 || res.LastSeq != 5 || res.LastHash != evs[4].Hash {
		t.Fatalf("VerifyAudit = %+v", res)
	}
}

func TestVerifyAudit_DetectsAlteredColumn(t *testing.T) {
	for col, set := range map[string]string{
		"id":                "id || 'x'",
		"time":              "'2001-01-01T00:00:00.000000000Z'",
		"request_id":        "request_id || 'x'",
		"actor_token_id":    "'tok_evil'",
		"actor_name":        "'mallory'",
		"source_ip":         "'10.6.6.6'",
		"source_user_agent": "'evil'",
		"project_id":        "'prj_other'",
		"action":            "'environment.delete'",
		"resource_type":     "'project'",
		"resource_id":       "'env_other'",
		"outcome":           "'denied'",
		"status_code":       "status_code + 1",
		"reason":            "''",
		"changes":           `'{"after":{"name":"evil"},"before":null}'`,
		"prev_hash":         "hash",
		"hash":              "prev_hash",
	} {
		t.Run(col, func(t *testing.T) {
			s, db, evs := chainStore(t, 5)
			tamper(t, db, "UPDATE audit_events SET "+col+" = "+set+" WHERE seq = 3")
			id := evs[2].ID
			if col == "id" {
				id += "x"
			}
			because := "hash mismatch"
			if col == "prev_hash" {
				because = "prev_hash"
			}
			wantBreak(t, verify(t, s), 3, id, because)
		})
	}
}

func TestVerifyAudit_DetectsRemovedEvent(t *testing.T) {
	s, db, evs := chainStore(t, 5)
	tamper(t, db, "DELETE FROM audit_events WHERE seq = 3")
	wantBreak(t, verify(t, s), 4, evs[3].ID, "seq gap")
}

func TestVerifyAudit_DetectsRemovedEventWithSeqsClosedUp(t *testing.T) {
	s, db, evs := chainStore(t, 5)
	tamper(t, db, "DELETE FROM audit_events WHERE seq = 3")
	tamper(t, db, "UPDATE audit_events SET seq = seq - 1 WHERE seq > 3")
	wantBreak(t, verify(t, s), 3, evs[3].ID, "prev_hash")
}

// A truncated tail leaves a valid chain; only the head, compared with a
// copy kept elsewhere (the sink), shows it. Verify reports that head.
func TestVerifyAudit_TruncationShowsInTheHead(t *testing.T) {
	s, db, evs := chainStore(t, 5)
	tamper(t, db, "DELETE FROM audit_events WHERE seq = 5")
	res := verify(t, s)
	if !res.OK() || res.LastSeq != 4 || res.LastHash != evs[3].Hash {
		t.Fatalf("VerifyAudit after truncation = %+v, want an intact chain ending at seq 4", res)
	}
}

func TestVerifyAudit_DetectsInsertedEvent(t *testing.T) {
	s, db, evs := chainStore(t, 5)
	// The forger links the new event correctly and makes room for it.
	forged := evs[2]
	forged.ID, forged.Seq, forged.PrevHash, forged.Action = "aud_forged", 4, evs[2].Hash, "environment.delete"
	forged.Hash = audit.Hash(forged)
	tamper(t, db, "UPDATE audit_events SET seq = seq + 100 WHERE seq > 3")
	tamper(t, db, "UPDATE audit_events SET seq = seq - 99 WHERE seq > 100")
	tamper(t, db, `INSERT INTO audit_events SELECT ?, ?, time, request_id, actor_token_id, actor_name, source_ip,
		source_user_agent, project_id, ?, resource_type, resource_id, outcome, status_code, reason, changes, ?, ?, key_id
		FROM audit_events WHERE seq = 3`, forged.Seq, forged.ID, forged.Action, forged.PrevHash, forged.Hash)
	wantBreak(t, verify(t, s), 5, evs[3].ID, "prev_hash")
}

func TestVerifyAudit_DetectsReorderedEvents(t *testing.T) {
	s, db, evs := chainStore(t, 5)
	// Swap the rows holding events 2 and 3.
	tamper(t, db, "UPDATE audit_events SET seq = 100 WHERE seq = 2")
	tamper(t, db, "UPDATE audit_events SET seq = 2 WHERE seq = 3")
	tamper(t, db, "UPDATE audit_events SET seq = 3 WHERE seq = 100")
	wantBreak(t, verify(t, s), 2, evs[2].ID, "prev_hash")
}

func TestVerifyAudit_PagesThroughLongChains(t *testing.T) {
	s, db, evs := chainStore(t, 1)
	ctx := context.Background()
	// More events than one page holds, appended in a few large Updates.
	for range 3 {
		err := s.Update(ctx, func(tx store.Tx) error {
			for range 900 {
				ev, err := tx.AppendAudit(ctx, apiv1.AuditEvent{ID: "evt_" + uuid.Must(uuid.NewV7()).String(), Time: time.Now(), Action: "project.create", Outcome: apiv1.OutcomeSuccess})
				if err != nil {
					return err
				}
				evs = append(evs, ev)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if res := verify(t, s); !res.OK() || res.Events != 2701 {
		t.Fatalf("VerifyAudit = %+v", res)
	}
	tamper(t, db, "UPDATE audit_events SET outcome = 'failure' WHERE seq = 2500")
	wantBreak(t, verify(t, s), 2500, evs[2499].ID, "hash mismatch")
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
