package store

import (
	"context"
	"database/sql"
	"errors"
)

var (
	_ Copyable = (*SQLite)(nil)
	_ Copyable = (*SQLiteReader)(nil)
)

// copyDB writes on the writer's connection: nothing else writes during
// a copy.
func (s *SQLite) copyDB() (read, write txBeginner, number func(string) string) {
	return s.rdb, s.wconn, sqliteNumbered
}

func (s *SQLite) flowSeq(ctx context.Context, q *sql.Tx) (int64, error) { return sqliteFlowSeq(ctx, q) }

// setFlowSeq sets AUTOINCREMENT's counter, which the inserted ids raised
// to the highest of them.
func (s *SQLite) setFlowSeq(ctx context.Context, q *sql.Tx, next int64) error {
	res, err := q.ExecContext(ctx, "UPDATE sqlite_sequence SET seq = ? WHERE name = 'flows'", next-1)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 || next <= 1 {
		return err
	}
	_, err = q.ExecContext(ctx, "INSERT INTO sqlite_sequence (name, seq) VALUES ('flows', ?)", next-1)
	return err
}

// copyDB is the read-only view's: a copy's source, never its target.
func (r *SQLiteReader) copyDB() (read, write txBeginner, number func(string) string) {
	return r.db, r.db, sqliteNumbered
}

func (r *SQLiteReader) flowSeq(ctx context.Context, q *sql.Tx) (int64, error) {
	return sqliteFlowSeq(ctx, q)
}

func (r *SQLiteReader) setFlowSeq(context.Context, *sql.Tx, int64) error {
	return errors.New("store: a read-only SQLite database cannot be a copy's target")
}

// sqliteNumbered leaves SQLite's ? parameters as they are.
func sqliteNumbered(q string) string { return q }

// sqliteFlowSeq is the next flow id: AUTOINCREMENT's counter (absent
// before the first flow) plus one.
func sqliteFlowSeq(ctx context.Context, q *sql.Tx) (int64, error) {
	var seq, top int64
	err := q.QueryRowContext(ctx, "SELECT seq FROM sqlite_sequence WHERE name = 'flows'").Scan(&seq)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if err := q.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM flows").Scan(&top); err != nil {
		return 0, err
	}
	return max(seq, top) + 1, nil
}
