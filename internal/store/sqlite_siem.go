package store

import (
	"context"
	"fmt"
)

// GetSIEMCursor returns where sink's delivery of source stopped: the last
// position (an audit seq, a flow id) the sink has received. A sink that
// never delivered anything of source is at 0, found false.
func (r reader) GetSIEMCursor(ctx context.Context, sink, source string) (pos int64, found bool, err error) {
	found, err = queryOne(ctx, r.q, "SELECT position FROM siem_cursors WHERE sink = ? AND source = ?",
		[]any{sink, source}, &pos)
	if err != nil {
		return 0, false, fmt.Errorf("store: get SIEM cursor of %s: %w", sink, err)
	}
	return pos, found, nil
}

// PutSIEMCursor records that sink has received source up to pos. A cursor
// never moves back: a pos at or before the stored one changes nothing, so
// that a delivery loop restarted beside a slower one cannot undo its
// progress.
func (t *sqlTx) PutSIEMCursor(ctx context.Context, sink, source string, pos int64) error {
	if sink == "" || source == "" || pos < 0 {
		return fmt.Errorf("store: a SIEM cursor needs a sink, a source and a position of 0 or more")
	}
	if _, err := t.q.ExecContext(ctx, `INSERT INTO siem_cursors (sink, source, position) VALUES (?, ?, ?)
		ON CONFLICT (sink, source) DO UPDATE SET position = excluded.position WHERE excluded.position > siem_cursors.position`,
		sink, source, pos); err != nil {
		return fmt.Errorf("store: put SIEM cursor of %s: %w", sink, err)
	}
	return nil
}
