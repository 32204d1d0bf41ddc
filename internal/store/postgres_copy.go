package store

import (
	"context"
	"database/sql"
)

var _ Copyable = (*Postgres)(nil)

func (p *Postgres) copyDB() (read, write txBeginner, number func(string) string) {
	return p.db, p.db, numbered
}

// flowSeq is the identity's next value: one past the last it handed out
// (NULL before the first), or past the highest id if rows were written
// with their ids.
func (p *Postgres) flowSeq(ctx context.Context, q *sql.Tx) (int64, error) {
	var last sql.NullInt64
	var top int64
	if err := q.QueryRowContext(ctx, "SELECT pg_sequence_last_value(pg_get_serial_sequence('flows', 'id'))").Scan(&last); err != nil {
		return 0, err
	}
	if err := q.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM flows").Scan(&top); err != nil {
		return 0, err
	}
	return max(last.Int64, top) + 1, nil
}

// setFlowSeq marks next-1 handed out, so that flowSeq reads it back
// (a sequence not yet called reads NULL).
func (p *Postgres) setFlowSeq(ctx context.Context, q *sql.Tx, next int64) error {
	if next <= 1 {
		_, err := q.ExecContext(ctx, "SELECT setval(pg_get_serial_sequence('flows', 'id'), 1, false)")
		return err
	}
	_, err := q.ExecContext(ctx, "SELECT setval(pg_get_serial_sequence('flows', 'id'), $1, true)", next-1)
	return err
}
