package store_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
)

// populate writes a row into every table copy moves, a keyed audit
// chain, and flows of which the newest were pruned, so that the flow
// counter stands above the highest id left.
func populate(t *testing.T, st *store.SQLite, key *audit.Key) {
	t.Helper()
	ctx := context.Background()
	if err := st.UseAuditKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	revoked := now.Add(time.Minute)
	hash := func(i int) string { return fmt.Sprintf("%064x", i+1) }
	err := st.Update(ctx, func(tx store.Tx) error {
		for i := range 3 {
			p := apiv1.Project{ID: fmt.Sprintf("prj_%d", i), Name: fmt.Sprintf("p%d", i), Labels: map[string]string{"team": "a"}, CreatedAt: now, Generation: 1, ETag: `"1"`}
			if err := tx.CreateProject(ctx, p); err != nil {
				return err
			}
			for j := range 4 {
				e := apiv1.Environment{ID: fmt.Sprintf("env_%d_%d", i, j), ProjectID: p.ID, Name: fmt.Sprintf("e%d", j), State: apiv1.StateReady,
					Labels: map[string]string{"tier": "web"}, CreatedAt: now, Generation: 1, ETag: `"1"`}
				if j == 0 {
					e.ExpiresAt = &exp
				}
				if err := tx.CreateEnvironment(ctx, e); err != nil {
					return err
				}
				if err := tx.PutAddress(ctx, store.Address{Addr: netip.AddrFrom4([4]byte{10, 200, byte(i), byte(j + 2)}), EnvironmentID: e.ID, ProjectID: p.ID, AllocatedAt: now}); err != nil {
					return err
				}
			}
			if err := tx.CreatePolicy(ctx, apiv1.Policy{ID: fmt.Sprintf("pol_%d", i), ProjectID: p.ID, PolicySpec: apiv1.PolicySpec{Name: "allow"}, CreatedAt: now, Generation: 1, ETag: `"1"`}); err != nil {
				return err
			}
		}
		if err := tx.PutAddress(ctx, store.Address{Addr: netip.MustParseAddr("10.200.9.9"), ProjectID: "prj_0", AllocatedAt: now, FreedAt: now.Add(time.Second)}); err != nil {
			return err
		}
		if err := tx.PutAddressCursor(ctx, netip.MustParsePrefix("10.200.0.0/16"), netip.MustParseAddr("10.200.3.0")); err != nil {
			return err
		}
		for i := range 5 {
			tok := store.TokenRecord{Token: apiv1.Token{ID: fmt.Sprintf("tok_%d", i), Name: "t", Role: apiv1.RoleEditor, ProjectID: "prj_0", CreatedAt: now, ETag: `"1"`}, Hash: hash(i)}
			if i == 4 {
				tok.RevokedAt = &revoked
			}
			if err := tx.CreateToken(ctx, tok); err != nil {
				return err
			}
		}
		if err := tx.CreateUISession(ctx, store.UISession{ID: "uis_1", TokenID: "tok_0", Hash: hash(100), CreatedAt: now, ExpiresAt: exp}); err != nil {
			return err
		}
		if err := tx.PutIdempotency(ctx, store.IdempotencyRecord{Scope: "tok_0", Key: "k1", Method: "POST", Path: "/v1/projects", BodyHash: hash(7),
			StatusCode: 201, Header: map[string]string{"Location": "/v1/projects/prj_0"}, Body: []byte(`{"id":"prj_0"}`), ResourceID: "prj_0",
			CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}); err != nil {
			return err
		}
		for _, sink := range []string{"splunk", "elastic"} {
			if err := tx.PutSIEMCursor(ctx, sink, "audit", 7); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("populate: %v", err)
	}
	for i := range 40 {
		err := st.Update(ctx, func(tx store.Tx) error {
			_, err := tx.AppendAudit(ctx, apiv1.AuditEvent{ID: fmt.Sprintf("evt_%03d", i), Time: now.Add(time.Duration(i) * time.Second), RequestID: "req",
				Actor: apiv1.Actor{Name: "admin"}, Action: "environment.create", Resource: apiv1.ResourceRef{Type: "environment", ID: "env_0_0"}, Outcome: "success", StatusCode: 201})
			return err
		})
		if err != nil {
			t.Fatalf("append audit: %v", err)
		}
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		var flows []apiv1.Flow
		for i := range 30 {
			flows = append(flows, apiv1.Flow{Time: now.Add(time.Duration(i) * time.Second), EnvironmentID: "env_0_1", ProjectID: "prj_0", Direction: "egress",
				Protocol: "tcp", SrcAddress: "10.200.0.3", SrcPort: 40000 + i, DstAddress: "192.0.2.1", DstPort: 443, Verdict: "allowed", Packets: 1, Bytes: 60, Count: 1,
				FirstSeen: now, LastSeen: now})
		}
		if err := tx.AppendFlows(ctx, flows); err != nil {
			return err
		}
		_, err := tx.PruneFlows(ctx, now.Add(10*time.Second), 0) // the oldest ten go
		return err
	})
	if err != nil {
		t.Fatalf("flows: %v", err)
	}
}

func testKey(t *testing.T) *audit.Key {
	t.Helper()
	k, err := audit.NewKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantCopied copies a populated SQLite file into to and checks what
// arrived: every table's rows and digest, the next flow id, and the
// audit chain, which verifies on the target with the same seq, hashes
// and key id; a second copy into it is refused.
func wantCopied(t *testing.T, to interface {
	store.Copyable
	store.Store
}) {
	t.Helper()
	ctx := context.Background()
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "isolationd.db")
	src := openSQLite(t, path)
	populate(t, src, key)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := store.OpenSQLiteReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()

	rep, err := store.Copy(ctx, ro, to)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	rows := map[string]int64{}
	for _, d := range rep.Tables {
		rows[d.Table] = d.Rows
	}
	for table, want := range map[string]int64{"projects": 3, "project_labels": 3, "environments": 12, "environment_labels": 12, "policies": 3,
		"tokens": 5, "ui_sessions": 1, "idempotency": 1, "audit_events": 40, "addresses": 13, "address_cursors": 1, "siem_cursors": 2, "flows": 20} {
		if rows[table] != want {
			t.Errorf("copied %d rows of %s, want %d", rows[table], table, want)
		}
	}
	if rep.FlowSeq != 31 {
		t.Errorf("the next flow id is %d, want 31 (30 were handed out)", rep.FlowSeq)
	}
	srcDigests, err := store.Digests(ctx, ro)
	if err != nil {
		t.Fatal(err)
	}
	dstDigests, err := store.Digests(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	for i := range srcDigests {
		if srcDigests[i] != dstDigests[i] {
			t.Errorf("table %s: source %+v, target %+v", srcDigests[i].Table, srcDigests[i], dstDigests[i])
		}
	}

	// The chain verifies on the target, keyed, ending where the source's ends.
	want, err := store.VerifyAuditWithKey(ctx, ro, key)
	if err != nil || !want.OK() {
		t.Fatalf("verify the source: %+v, %v", want, err)
	}
	got, err := store.VerifyAuditWithKey(ctx, to, key)
	if err != nil || !got.OK() || got.Events != 40 || got.LastSeq != want.LastSeq || got.LastHash != want.LastHash || got.KeyID != key.ID() {
		t.Fatalf("verify the target: %+v, %v; want %d events ending at seq %d, hash %s, key %s", got, err, want.Events, want.LastSeq, want.LastHash, key.ID())
	}
	// What reads the target finds the objects as they were: a revoked
	// token stays revoked, an idempotency record replays.
	tok, err := to.GetTokenByHash(ctx, fmt.Sprintf("%064x", 5))
	if err != nil || tok.ID != "tok_4" || tok.RevokedAt == nil {
		t.Errorf("the revoked token on the target: %+v, %v", tok, err)
	}
	if rec, err := to.GetIdempotency(ctx, "tok_0", "k1"); err != nil || rec.ResourceID != "prj_0" || string(rec.Body) != `{"id":"prj_0"}` {
		t.Errorf("the idempotency record on the target: %+v, %v", rec, err)
	}
	// The next flow on the target gets the next id, not one the source
	// handed out before pruning.
	var next []apiv1.Flow
	err = to.Update(ctx, func(tx store.Tx) error {
		next = []apiv1.Flow{{Time: time.Now().UTC(), EnvironmentID: "env_0_1", ProjectID: "prj_0", Direction: "egress", Verdict: "allowed", FirstSeen: time.Now().UTC(), LastSeen: time.Now().UTC()}}
		return tx.AppendFlows(ctx, next)
	})
	if err != nil || next[0].ID != 31 {
		t.Errorf("a flow appended on the target got id %d (%v), want 31", next[0].ID, err)
	}

	if _, err := store.Copy(ctx, ro, to); err == nil || !strings.Contains(err.Error(), "the target is not empty: its table projects holds 3 rows") {
		t.Errorf("a second copy into the same target: %v, want it refused as not empty", err)
	}
}

func TestCopy_SQLiteToSQLiteKeepsEveryRowAndTheChain(t *testing.T) {
	t.Parallel()
	to := openSQLite(t, filepath.Join(t.TempDir(), "target.db"))
	defer to.Close()
	wantCopied(t, to)
}

func TestCopy_SQLiteToPostgresKeepsEveryRowAndTheChain(t *testing.T) {
	t.Parallel()
	to := openPostgres(t, pgtest.DSN(t))
	defer to.Close()
	wantCopied(t, to)
}
