package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// querier is what the SQL helpers need: the read pool, the writer
// connection, or a transaction's view of it.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// conn is *sql.DB or *sql.Conn.
type conn interface {
	querier
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// maxCachedStmts bounds the statement cache; list queries with many label
// filters each have their own SQL text.
const maxCachedStmts = 512

// cachedQuerier prepares each SQL text once: compiling a statement costs
// more than running the short ones the store uses.
type cachedQuerier struct {
	c conn
	// detach: run statements without the caller's cancellation. The writer
	// connection needs this, because SQLite answers an interrupted write
	// inside a transaction by rolling back the whole transaction, which
	// would take the other Updates of the batch with it.
	detach bool

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func newCachedQuerier(c conn, detach bool) *cachedQuerier {
	return &cachedQuerier{c: c, detach: detach, stmts: map[string]*sql.Stmt{}}
}

func (q *cachedQuerier) ctx(ctx context.Context) context.Context {
	if q.detach {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// stmt returns the prepared statement for query, or nil when it should run
// unprepared (cache full, or preparing failed: running it reports why).
func (q *cachedQuerier) stmt(ctx context.Context, query string) *sql.Stmt {
	q.mu.Lock()
	defer q.mu.Unlock()
	if st, ok := q.stmts[query]; ok {
		return st
	}
	if len(q.stmts) >= maxCachedStmts {
		return nil
	}
	st, err := q.c.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	q.stmts[query] = st
	return st
}

func (q *cachedQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = q.ctx(ctx)
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return q.c.QueryContext(ctx, query, args...)
}

func (q *cachedQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = q.ctx(ctx)
	if st := q.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return q.c.ExecContext(ctx, query, args...)
}

func (q *cachedQuerier) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, st := range q.stmts {
		st.Close()
		delete(q.stmts, k)
	}
}

// txQuerier refuses statements once the fn that owns the Tx has returned:
// a Tx kept past its fn would otherwise write into another Update's part
// of the batch.
type txQuerier struct {
	q    querier
	done interface{ Load() bool }
}

var errTxDone = errors.New("store: transaction used after its function returned")

func (t txQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if t.done.Load() {
		return nil, errTxDone
	}
	return t.q.QueryContext(ctx, query, args...)
}

func (t txQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if t.done.Load() {
		return nil, errTxDone
	}
	return t.q.ExecContext(ctx, query, args...)
}

// queryOne runs query and scans its first row into dest; it reports
// whether there was a row.
func queryOne(ctx context.Context, q querier, query string, args []any, dest ...any) (bool, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, rows.Err()
	}
	if err := rows.Scan(dest...); err != nil {
		return false, err
	}
	return true, rows.Close()
}
