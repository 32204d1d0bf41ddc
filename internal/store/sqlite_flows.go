package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

const flowCols = `id, time, environment_id, project_id, direction, protocol, src_address, src_port,
	dst_address, dst_port, fqdn, verdict, policy_id, rule, packets, bytes, count, first_seen, last_seen`

// AppendFlows stores flows in one statement per record of a prepared
// insert, and sets their ids, which grow with every record and are never
// reused (AUTOINCREMENT), so that a cursor over them never skips one.
func (t *sqlTx) AppendFlows(ctx context.Context, flows []apiv1.Flow) error {
	for i := range flows {
		f := &flows[i]
		if f.EnvironmentID == "" || f.Time.IsZero() {
			return errors.New("store: a flow record needs an environment and a time")
		}
		var rule sql.NullInt64
		if f.Rule != nil {
			rule = sql.NullInt64{Int64: int64(*f.Rule), Valid: true}
		}
		// RETURNING, not LastInsertId, which PostgreSQL does not have.
		_, err := queryOne(ctx, t.q, "INSERT INTO flows ("+flowCols[len("id, "):]+") VALUES (?"+strings.Repeat(", ?", 17)+") RETURNING id",
			[]any{f.Time.UTC().Format(timeText), f.EnvironmentID, f.ProjectID, f.Direction, f.Protocol, f.SrcAddress, f.SrcPort,
				f.DstAddress, f.DstPort, f.FQDN, f.Verdict, f.PolicyID, rule, f.Packets, f.Bytes, f.Count,
				f.FirstSeen.UTC().Format(timeText), f.LastSeen.UTC().Format(timeText)}, &f.ID)
		if err != nil {
			return fmt.Errorf("store: append flow records: %w", err)
		}
		f.Time = f.Time.UTC()
	}
	return nil
}

// PruneFlows deletes the records older than before, then the oldest
// beyond the newest keep (keep 0: no bound), and says how many went.
func (t *sqlTx) PruneFlows(ctx context.Context, before time.Time, keep int) (int, error) {
	res, err := t.q.ExecContext(ctx, "DELETE FROM flows WHERE time < ?", before.UTC().Format(timeText))
	if err != nil {
		return 0, fmt.Errorf("store: prune flow records: %w", err)
	}
	n, _ := res.RowsAffected()
	if keep > 0 {
		res, err := t.q.ExecContext(ctx, t.d.pruneKeep, keep)
		if err != nil {
			return 0, fmt.Errorf("store: prune flow records: %w", err)
		}
		m, _ := res.RowsAffected()
		n += m
	}
	return int(n), nil
}

// LastFlowID is the id of the newest flow record, 0 when there is none.
func (r reader) LastFlowID(ctx context.Context) (int64, error) {
	rows, err := r.q.QueryContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM flows")
	if err != nil {
		return 0, fmt.Errorf("store: last flow: %w", err)
	}
	defer rows.Close()
	var id int64
	if rows.Next() {
		err = rows.Scan(&id)
	}
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("store: last flow: %w", err)
	}
	return id, nil
}

// ListFlows pages flow records oldest first; the cursor it returns is the
// id of the page's last record, for FlowQuery.AfterID.
func (r reader) ListFlows(ctx context.Context, q FlowQuery) ([]apiv1.Flow, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	where := []string{"id > ?"}
	args := []any{q.AfterID}
	for _, f := range []struct{ col, value string }{
		{"environment_id", q.EnvironmentID},
		{"verdict", q.Verdict},
		{"direction", q.Direction},
	} {
		if f.value != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.value)
		}
	}
	if q.ProjectIDs != nil {
		if len(q.ProjectIDs) == 0 {
			return nil, "", nil
		}
		where = append(where, "project_id IN (?"+strings.Repeat(", ?", len(q.ProjectIDs)-1)+")")
		for _, p := range q.ProjectIDs {
			args = append(args, p)
		}
	}
	if q.Peer != "" {
		where = append(where, "(src_address = ? OR dst_address = ?)")
		args = append(args, q.Peer, q.Peer)
	}
	if !q.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, q.Since.UTC().Format(timeText))
	}
	if !q.Until.IsZero() {
		where = append(where, "time < ?")
		args = append(args, q.Until.UTC().Format(timeText))
	}
	args = append(args, limit+1)
	rows, err := r.q.QueryContext(ctx, "SELECT "+flowCols+" FROM flows WHERE "+strings.Join(where, " AND ")+" ORDER BY id LIMIT ?", args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list flow records: %w", err)
	}
	defer rows.Close()
	var out []apiv1.Flow
	for rows.Next() {
		var f apiv1.Flow
		var at, first, last string
		var rule sql.NullInt64
		if err := rows.Scan(&f.ID, &at, &f.EnvironmentID, &f.ProjectID, &f.Direction, &f.Protocol, &f.SrcAddress, &f.SrcPort,
			&f.DstAddress, &f.DstPort, &f.FQDN, &f.Verdict, &f.PolicyID, &rule, &f.Packets, &f.Bytes, &f.Count, &first, &last); err != nil {
			return nil, "", fmt.Errorf("store: list flow records: %w", err)
		}
		f.Time, _ = time.Parse(timeText, at)
		f.FirstSeen, _ = time.Parse(timeText, first)
		f.LastSeen, _ = time.Parse(timeText, last)
		if rule.Valid {
			n := int(rule.Int64)
			f.Rule = &n
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: list flow records: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = strconv.FormatInt(out[limit-1].ID, 10)
	}
	return out, next, nil
}
