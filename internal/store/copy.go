package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
)

// copyTable is a table that store copy moves row by row, unchanged: its
// columns, the same in every store's schema, and its primary key, by
// which both sides list it in the same order (text sorts by bytes in
// both).
type copyTable struct {
	name string
	cols []string
	key  string
}

// copyTables are every table of the state, parents before children.
// Leases are not state: they belong to the servers running.
var copyTables = []copyTable{
	{"projects", []string{"id", "name", "data"}, "id"},
	{"project_labels", []string{"object_id", "key", "value"}, "object_id, key"},
	{"environments", []string{"id", "project_id", "name", "state", "expires_at", "data"}, "id"},
	{"environment_labels", []string{"object_id", "key", "value"}, "object_id, key"},
	{"policies", []string{"id", "project_id", "name", "owner", "data"}, "id"},
	{"assertions", []string{"id", "project_id", "name", "data"}, "id"},
	{"tokens", []string{"id", "hash", "project_id", "parent_id", "environment_id", "data"}, "id"},
	{"ui_sessions", []string{"id", "hash", "token_id", "data"}, "id"},
	{"idempotency", []string{"scope", "key", "expires_at", "data"}, "scope, key"},
	{"audit_events", []string{"seq", "id", "time", "request_id", "actor_token_id", "actor_name", "source_ip", "source_user_agent",
		"project_id", "action", "resource_type", "resource_id", "outcome", "status_code", "reason", "changes", "prev_hash", "hash", "key_id"}, "seq"},
	{"addresses", []string{"key", "address", "environment_id", "project_id", "allocated_at", "freed_at"}, "key"},
	{"address_cursors", []string{"pool", "next"}, "pool"},
	{"siem_cursors", []string{"sink", "source", "position"}, "sink, source"},
	{"flows", []string{"id", "time", "environment_id", "project_id", "direction", "protocol", "src_address", "src_port", "dst_address", "dst_port",
		"fqdn", "verdict", "policy_id", "rule", "packets", "bytes", "count", "first_seen", "last_seen"}, "id"},
}

// Copyable is a store whose tables store copy reads and writes whole:
// SQLite (sqlite_copy.go) and Postgres (postgres_copy.go).
type Copyable interface {
	// copyDB is where to read the tables from and write them to, and
	// how the database numbers a statement's parameters.
	copyDB() (read, write txBeginner, number func(query string) string)
	// flowSeq is the id the next flow record would get, at least the
	// highest plus one (pruning leaves the counter where it was);
	// setFlowSeq makes it next.
	flowSeq(ctx context.Context, q *sql.Tx) (int64, error)
	setFlowSeq(ctx context.Context, q *sql.Tx, next int64) error
}

// TableDigest is one table's row count and SHA-256 over its rows in key
// order, each value with its kind (text and bytes alike: SQLite and
// PostgreSQL type the same column differently).
type TableDigest struct {
	Table  string
	Rows   int64
	Digest string
}

// CopyReport is what Copy moved.
type CopyReport struct {
	Tables []TableDigest
	// FlowSeq is the id the next flow record gets, on both sides.
	FlowSeq int64
}

// Copy moves every row of from to to, unchanged (ids, token hashes,
// idempotency records, addresses, cursors, flows, console sessions and
// the audit chain with its seq, hashes and key ids), in one transaction
// of to, from one read transaction of from. It refuses a target that
// holds any row. Then it compares every table's digest on both sides.
func Copy(ctx context.Context, from, to Copyable) (CopyReport, error) {
	var rep CopyReport
	src, _, _ := from.copyDB()
	rtx, err := src.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return rep, fmt.Errorf("store copy: read the source: %w", err)
	}
	defer func() { _ = rtx.Rollback() }()
	_, dst, number := to.copyDB()
	wtx, err := dst.BeginTx(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("store copy: write the target: %w", err)
	}
	defer func() { _ = wtx.Rollback() }()
	for _, t := range copyTables {
		var n int64
		if err := wtx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t.name).Scan(&n); err != nil {
			return rep, fmt.Errorf("store copy: count the target's %s: %w", t.name, err)
		}
		if n > 0 {
			return rep, fmt.Errorf("store copy: the target is not empty: its table %s holds %d rows; copy into a new database", t.name, n)
		}
	}
	for _, t := range copyTables {
		d, err := copyRows(ctx, t, rtx, wtx, number)
		if err != nil {
			return rep, err
		}
		rep.Tables = append(rep.Tables, d)
	}
	if rep.FlowSeq, err = from.flowSeq(ctx, rtx); err != nil {
		return rep, fmt.Errorf("store copy: the source's flow ids: %w", err)
	}
	if err := to.setFlowSeq(ctx, wtx, rep.FlowSeq); err != nil {
		return rep, fmt.Errorf("store copy: the target's flow ids: %w", err)
	}
	if err := wtx.Commit(); err != nil {
		return rep, fmt.Errorf("store copy: commit the target: %w", err)
	}
	got, err := Digests(ctx, to)
	if err != nil {
		return rep, err
	}
	for i, d := range got {
		if d != rep.Tables[i] {
			return rep, fmt.Errorf("store copy: table %s differs after the copy: %d rows, digest %s on the source; %d rows, digest %s on the target",
				d.Table, rep.Tables[i].Rows, rep.Tables[i].Digest, d.Rows, d.Digest)
		}
	}
	next, err := readFlowSeq(ctx, to)
	if err != nil {
		return rep, err
	}
	if next != rep.FlowSeq {
		return rep, fmt.Errorf("store copy: the target's next flow id is %d, the source's %d", next, rep.FlowSeq)
	}
	return rep, nil
}

// Digests reads every table of c in one read transaction.
func Digests(ctx context.Context, c Copyable) ([]TableDigest, error) {
	db, _, _ := c.copyDB()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: digest tables: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	out := make([]TableDigest, 0, len(copyTables))
	for _, t := range copyTables {
		d, err := copyRows(ctx, t, tx, nil, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func readFlowSeq(ctx context.Context, c Copyable) (int64, error) {
	db, _, _ := c.copyDB()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("store: flow ids: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	return c.flowSeq(ctx, tx)
}

// txBeginner is a database or one of its connections.
type txBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// copyBatch is how many rows one INSERT carries: well within both
// databases' bound on a statement's parameters.
const copyBatch = 100

// copyRows reads table t from r in key order, digesting it, and inserts
// every row into w when w is not nil.
func copyRows(ctx context.Context, t copyTable, r, w *sql.Tx, number func(string) string) (TableDigest, error) {
	d := TableDigest{Table: t.name}
	// Names from copyTables, never from input.
	rows, err := r.QueryContext(ctx, "SELECT "+strings.Join(t.cols, ", ")+" FROM "+t.name+" ORDER BY "+t.key) //nolint:gosec // G202: see above
	if err != nil {
		return d, fmt.Errorf("store: read %s: %w", t.name, err)
	}
	defer rows.Close()
	h := sha256.New()
	var batch []any
	flush := func() error {
		if w == nil || len(batch) == 0 {
			return nil
		}
		n := len(batch) / len(t.cols)
		row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
		q := "INSERT INTO " + t.name + " (" + strings.Join(t.cols, ", ") + ") VALUES " + strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
		if _, err := w.ExecContext(ctx, number(q), batch...); err != nil {
			return fmt.Errorf("store: write %s: %w", t.name, err)
		}
		batch = batch[:0]
		return nil
	}
	vals := make([]any, len(t.cols))
	ptrs := make([]any, len(t.cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return d, fmt.Errorf("store: read %s: %w", t.name, err)
		}
		d.Rows++
		for _, v := range vals {
			if err := digestValue(h, v); err != nil {
				return d, fmt.Errorf("store: read %s: %w", t.name, err)
			}
			batch = append(batch, cloneValue(v))
		}
		if len(batch) >= copyBatch*len(t.cols) {
			if err := flush(); err != nil {
				return d, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("store: read %s: %w", t.name, err)
	}
	if err := flush(); err != nil {
		return d, err
	}
	d.Digest = hex.EncodeToString(h.Sum(nil))
	return d, nil
}

// digestValue writes v with its kind and length, so that no two rows
// digest alike unless their values are equal.
func digestValue(h interface{ Write([]byte) (int, error) }, v any) error {
	var n [8]byte
	put := func(kind byte, b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		_, _ = h.Write([]byte{kind})
		_, _ = h.Write(n[:])
		_, _ = h.Write(b)
	}
	switch v := v.(type) {
	case nil:
		put('n', nil)
	case int64:
		binary.BigEndian.PutUint64(n[:], uint64(v)) //nolint:gosec // G115: the bits, not a quantity
		put('i', n[:])
	case float64:
		binary.BigEndian.PutUint64(n[:], math.Float64bits(v))
		put('f', n[:])
	case string:
		put('b', []byte(v))
	case []byte:
		put('b', v)
	default:
		return fmt.Errorf("a value of type %T, which store copy does not know", v)
	}
	return nil
}

// cloneValue copies the bytes a driver may reuse on the next row.
func cloneValue(v any) any {
	if b, ok := v.([]byte); ok {
		return append([]byte{}, b...)
	}
	return v
}
