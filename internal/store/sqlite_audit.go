package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

// timeText is how audit times are stored: fixed width, so that comparing
// the text compares the times.
const timeText = "2006-01-02T15:04:05.000000000Z"

func (r reader) GetIdempotency(ctx context.Context, scope, key string) (IdempotencyRecord, error) {
	var rec IdempotencyRecord
	var data []byte
	found, err := queryOne(ctx, r.q, "SELECT data FROM idempotency WHERE scope = ? AND key = ? AND expires_at > ?",
		[]any{scope, key, r.clock.now().UnixNano()}, &data)
	if err != nil {
		return rec, fmt.Errorf("store: get idempotency record: %w", err)
	}
	if !found {
		return rec, fmt.Errorf("idempotency key: %w", ErrNotFound)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("store: decode idempotency record: %w", err)
	}
	return rec, nil
}

// PutIdempotency fails with ErrConflict while an unexpired record holds
// (scope, key); an expired one is replaced.
func (t *sqlTx) PutIdempotency(ctx context.Context, rec IdempotencyRecord) error {
	if rec.Scope == "" || rec.Key == "" {
		return fmt.Errorf("store: idempotency record needs a scope and a key")
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("store: encode idempotency record: %w", err)
	}
	if _, err := t.q.ExecContext(ctx, "DELETE FROM idempotency WHERE scope = ? AND key = ? AND expires_at <= ?",
		rec.Scope, rec.Key, t.clock.now().UnixNano()); err != nil {
		return fmt.Errorf("store: put idempotency record: %w", err)
	}
	if _, err := t.q.ExecContext(ctx, "INSERT INTO idempotency (scope, key, expires_at, data) VALUES (?, ?, ?, ?)",
		rec.Scope, rec.Key, rec.ExpiresAt.UnixNano(), data); err != nil {
		if c := constraint(err); c == conPrimaryKey || c == conUnique {
			return fmt.Errorf("%w: idempotency key already used", ErrConflict)
		}
		return fmt.Errorf("store: put idempotency record: %w", err)
	}
	return nil
}

func (t *sqlTx) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	res, err := t.q.ExecContext(ctx, "DELETE FROM idempotency WHERE expires_at < ?", now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: purge idempotency records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: purge idempotency records: %w", err)
	}
	return int(n), nil
}

const auditCols = `seq, id, time, request_id, actor_token_id, actor_name, source_ip, source_user_agent,
	project_id, action, resource_type, resource_id, outcome, status_code, reason, changes, prev_hash, hash, key_id`

// AppendAudit sets Seq, PrevHash and Hash; the caller gives the id and the
// time. It reads the chain's head inside the transaction, so concurrent
// Updates link in commit order.
func (t *sqlTx) AppendAudit(ctx context.Context, ev apiv1.AuditEvent) (apiv1.AuditEvent, error) {
	if ev.ID == "" || ev.Time.IsZero() {
		return ev, errors.New("store: an audit event needs an id and a time (control.Service.Event gives both)")
	}
	if y := ev.Time.UTC().Year(); y < 1 || y > 9999 {
		return ev, fmt.Errorf("store: audit event time %v is outside years 1 to 9999", ev.Time)
	}
	ev.Seq, ev.PrevHash = 1, audit.GenesisHash
	var lastSeq int64
	var lastHash, lastKey string
	found, err := queryOne(ctx, t.q, "SELECT seq, hash, key_id FROM audit_events ORDER BY seq DESC LIMIT 1", nil, &lastSeq, &lastHash, &lastKey)
	if err != nil {
		return ev, fmt.Errorf("store: read audit chain head: %w", err)
	}
	if found {
		ev.Seq, ev.PrevHash = lastSeq+1, lastHash
	}
	if err := keyFits(lastKey, t.key); err != nil {
		return ev, err
	}
	ev, changes, err := audit.Seal(ev, t.key)
	if err != nil {
		return ev, fmt.Errorf("store: audit event: %w", err)
	}
	_, err = t.q.ExecContext(ctx, "INSERT INTO audit_events ("+auditCols+") VALUES (?"+strings.Repeat(", ?", 18)+")",
		ev.Seq, ev.ID, ev.Time.Format(timeText), ev.RequestID, ev.Actor.TokenID, ev.Actor.Name,
		ev.Source.IP, ev.Source.UserAgent, ev.ProjectID, ev.Action, ev.Resource.Type, ev.Resource.ID,
		ev.Outcome, ev.StatusCode, ev.Reason, string(changes), ev.PrevHash, ev.Hash, ev.KeyID)
	if err != nil {
		if constraint(err) == conUnique {
			return ev, fmt.Errorf("%w: audit event %s already exists", ErrConflict, ev.ID)
		}
		return ev, fmt.Errorf("store: append audit event: %w", err)
	}
	t.commit.Events = append(t.commit.Events, ev)
	return ev, nil
}

// ListAudit pages oldest first; the cursor it returns is the seq of the
// last event, for AuditQuery.AfterSeq.
func (r reader) ListAudit(ctx context.Context, q AuditQuery) ([]apiv1.AuditEvent, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	where := []string{"seq > ?"}
	args := []any{q.AfterSeq}
	for _, f := range []struct{ col, value string }{
		{"project_id", q.ProjectID},
		{"action", q.Action},
		{"resource_type", q.ResourceType},
		{"resource_id", q.ResourceID},
		{"outcome", q.Outcome},
		{"request_id", q.RequestID},
	} {
		if f.value != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.value)
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, q.Since.UTC().Format(timeText))
	}
	args = append(args, limit+1)
	events, err := queryAudit(ctx, r.q, "SELECT "+auditCols+" FROM audit_events WHERE "+
		strings.Join(where, " AND ")+" ORDER BY seq LIMIT ?", args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(events) > limit {
		events = events[:limit]
		next = strconv.FormatInt(events[limit-1].Seq, 10)
	}
	return events, next, nil
}

func (r reader) LastAudit(ctx context.Context) (apiv1.AuditEvent, error) {
	events, err := queryAudit(ctx, r.q, "SELECT "+auditCols+" FROM audit_events ORDER BY seq DESC LIMIT 1")
	if err != nil {
		return apiv1.AuditEvent{}, err
	}
	if len(events) == 0 {
		return apiv1.AuditEvent{}, fmt.Errorf("audit chain is empty: %w", ErrNotFound)
	}
	return events[0], nil
}

func queryAudit(ctx context.Context, q querier, query string, args ...any) ([]apiv1.AuditEvent, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit events: %w", err)
	}
	defer rows.Close()
	var events []apiv1.AuditEvent
	for rows.Next() {
		var ev apiv1.AuditEvent
		var at, changes string
		if err := rows.Scan(&ev.Seq, &ev.ID, &at, &ev.RequestID, &ev.Actor.TokenID, &ev.Actor.Name,
			&ev.Source.IP, &ev.Source.UserAgent, &ev.ProjectID, &ev.Action, &ev.Resource.Type, &ev.Resource.ID,
			&ev.Outcome, &ev.StatusCode, &ev.Reason, &changes, &ev.PrevHash, &ev.Hash, &ev.KeyID); err != nil {
			return nil, fmt.Errorf("store: list audit events: %w", err)
		}
		// A value that does not parse is returned as found (zero time, no
		// changes): the hash then fails to verify, which is the point.
		ev.Time, _ = time.Parse(timeText, at)
		ev.Changes, _ = audit.DecodeChanges([]byte(changes))
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list audit events: %w", err)
	}
	return events, nil
}

// VerifyAudit walks the whole audit chain of r (see audit.Verify).
func VerifyAudit(ctx context.Context, r Reader) (audit.Result, error) {
	return VerifyAuditWithKey(ctx, r, nil)
}

// VerifyAuditWithKey walks the whole audit chain of r, checking its keyed
// events with key (see audit.VerifyWithKey).
func VerifyAuditWithKey(ctx context.Context, r Reader, key *audit.Key) (audit.Result, error) {
	return audit.VerifyWithKey(ctx, AuditPager(r), key)
}

// AuditPager pages r's whole audit chain, oldest first, for audit.Verify
// and audit.InOrder.
func AuditPager(r Reader) audit.Pager {
	return func(ctx context.Context, afterSeq int64) ([]apiv1.AuditEvent, error) {
		events, _, err := r.ListAudit(ctx, AuditQuery{AfterSeq: afterSeq, Limit: MaxLimit})
		return events, err
	}
}

// ErrAuditKey: the audit chain is keyed and the store was given no key or
// another one; appending would break the chain.
var ErrAuditKey = errors.New("audit key mismatch")

// keyFits refuses to append to a chain whose head is keyed (headKey) with
// no key or another one: a keyed chain stays keyed with its one key. An
// unkeyed chain may become keyed.
func keyFits(headKey string, key *audit.Key) error {
	switch {
	case headKey == "":
		return nil
	case key == nil:
		return fmt.Errorf("store: %w: the audit chain is keyed (HMAC-SHA256, key id %s); start with the key that sealed it (--audit-hmac-key-file)", ErrAuditKey, headKey)
	case key.ID() != headKey:
		return fmt.Errorf("store: %w: the audit chain is keyed with key id %s, not with the key given (key id %s); start with the key that sealed it", ErrAuditKey, headKey, key.ID())
	}
	return nil
}

// UseAuditKey makes every audit event appended from now on sealed with key
// (an HMAC-SHA256 chain; nil keeps plain SHA-256). It fails, changing
// nothing, when the chain's last event is keyed with another key or key
// is nil and the chain is keyed. Call it before the first Update.
func (s *SQLite) UseAuditKey(ctx context.Context, key *audit.Key) error {
	return useAuditKey(ctx, s.wq, key, &s.auditKey)
}

// useAuditKey stores key in dst if it fits the chain q reads.
func useAuditKey(ctx context.Context, q querier, key *audit.Key, dst *atomic.Pointer[audit.Key]) error {
	var head string
	if _, err := queryOne(ctx, q, "SELECT key_id FROM audit_events ORDER BY seq DESC LIMIT 1", nil, &head); err != nil {
		return fmt.Errorf("store: read audit chain head: %w", err)
	}
	if err := keyFits(head, key); err != nil {
		return err
	}
	dst.Store(key)
	return nil
}
