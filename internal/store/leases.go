package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// soleFence is the fence of every lease of a SQLite store: one process
// owns the file, so it always holds every lease, which never changes hands.
const soleFence = 1

// Lease always holds name (see soleFence).
func (s *SQLite) Lease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	if err := checkLease(name, holder); err != nil {
		return 0, false, err
	}
	return soleFence, true, nil
}

// ReleaseLease does nothing: the process keeps its leases.
func (s *SQLite) ReleaseLease(ctx context.Context, name, holder string) error {
	return checkLease(name, holder)
}

// Lease takes or renews name for holder until ttl from now on the
// database's clock, in one statement: a lease held by holder or expired
// is (re)written, one held by another is left alone. The fence moves on
// when the holder changes.
func (p *Postgres) Lease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	if err := checkLease(name, holder); err != nil {
		return 0, false, err
	}
	if ttl <= 0 {
		return 0, false, fmt.Errorf("store: lease %s: ttl must be positive, got %v", name, ttl)
	}
	var fence int64
	found, err := queryOne(ctx, p.r.q, `INSERT INTO leases (name, holder, fence, expires_at)
		VALUES (?, ?, 1, now() + CAST(? AS bigint) * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET
			fence = CASE WHEN leases.holder = excluded.holder THEN leases.fence ELSE leases.fence + 1 END,
			holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= now()
		RETURNING fence`, []any{name, holder, ttl.Microseconds()}, &fence)
	if err != nil {
		return 0, false, pgUnavailable(fmt.Errorf("store: lease %s: %w", name, err))
	}
	if !found {
		return 0, false, nil
	}
	return fence, true, nil
}

// ReleaseLease expires holder's lease now, keeping its fence: the next
// holder's is one more.
func (p *Postgres) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := checkLease(name, holder); err != nil {
		return err
	}
	if _, err := p.r.q.ExecContext(ctx, "UPDATE leases SET expires_at = now() WHERE name = ? AND holder = ? AND expires_at > now()", name, holder); err != nil {
		return pgUnavailable(fmt.Errorf("store: release lease %s: %w", name, err))
	}
	return nil
}

func checkLease(name, holder string) error {
	if name == "" || holder == "" {
		return errors.New("store: a lease needs a name and a holder")
	}
	return nil
}

// CheckLease: in PostgreSQL it reads the lease FOR SHARE, so that Lease
// cannot hand it to another holder before this transaction ends; in
// SQLite the one process holds every lease with soleFence.
func (t *sqlTx) CheckLease(name, holder string, fence int64) error {
	if err := checkLease(name, holder); err != nil {
		return err
	}
	if t.d == sqliteDialect {
		if fence != soleFence {
			return fmt.Errorf("%w: lease %s has fence %d, not %d", ErrFenced, name, soleFence, fence)
		}
		return nil
	}
	// clock_timestamp, not now(): now() is when the transaction began,
	// before it waited for the write lock. The Update's own context is
	// the querier's (pgTxQuerier).
	found, err := queryOne(context.Background(), t.q, "SELECT 1 FROM leases WHERE name = ? AND holder = ? AND fence = ? AND expires_at > clock_timestamp() FOR SHARE",
		[]any{name, holder, fence}, new(int))
	if err != nil {
		return fmt.Errorf("store: check lease %s: %w", name, err)
	}
	if !found {
		return fmt.Errorf("%w: lease %s is no longer held by %s with fence %d", ErrFenced, name, holder, fence)
	}
	return nil
}
