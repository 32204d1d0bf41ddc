package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// addressKey is the column form of an address: its family (4 or 6), then
// its bytes, so that SQLite's byte order of keys is the order of
// addresses, a range of addresses is a range of keys, and the families
// never interleave.
func addressKey(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return append([]byte{4}, b[:]...)
	}
	b := a.As16()
	return append([]byte{6}, b[:]...)
}

// addressFromKey is addressKey's inverse.
func addressFromKey(k []byte) (netip.Addr, bool) {
	if len(k) == 0 || (k[0] == 4) != (len(k) == 5) || (k[0] == 6) != (len(k) == 17) {
		return netip.Addr{}, false
	}
	return netip.AddrFromSlice(k[1:])
}

const addressCols = "address, environment_id, project_id, allocated_at, freed_at"

func scanAddress(sc interface{ Scan(...any) error }) (Address, error) {
	var a Address
	var text string
	var allocated int64
	var freed sql.NullInt64
	if err := sc.Scan(&text, &a.EnvironmentID, &a.ProjectID, &allocated, &freed); err != nil {
		return a, err
	}
	addr, err := netip.ParseAddr(text)
	if err != nil {
		return a, fmt.Errorf("stored address %q: %w", text, err)
	}
	a.Addr, a.AllocatedAt = addr, time.Unix(0, allocated).UTC()
	if freed.Valid {
		a.FreedAt = time.Unix(0, freed.Int64).UTC()
	}
	return a, nil
}

func checkRange(first, last netip.Addr) error {
	if !first.IsValid() || !last.IsValid() || first.Is4() != last.Is4() {
		return fmt.Errorf("store: address range %s to %s: both ends must be addresses of one family", first, last)
	}
	return nil
}

func (r reader) GetAddress(ctx context.Context, addr netip.Addr) (Address, error) {
	rows, err := r.q.QueryContext(ctx, "SELECT "+addressCols+" FROM addresses WHERE key = ?", addressKey(addr))
	if err != nil {
		return Address{}, fmt.Errorf("store: get address %s: %w", addr, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Address{}, fmt.Errorf("store: get address %s: %w", addr, err)
		}
		return Address{}, fmt.Errorf("address %s: %w", addr, ErrNotFound)
	}
	a, err := scanAddress(rows)
	if err != nil {
		return Address{}, fmt.Errorf("store: get address %s: %w", addr, err)
	}
	return a, rows.Close()
}

func (r reader) ListAddresses(ctx context.Context, q AddressQuery) ([]Address, error) {
	if err := checkRange(q.First, q.Last); err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	query := "SELECT " + addressCols + " FROM addresses WHERE key BETWEEN ? AND ?"
	args := []any{addressKey(q.First), addressKey(q.Last)}
	if q.HeldOnly {
		query += " AND environment_id <> ''"
	}
	if q.NotProject != "" {
		query += " AND project_id <> ?"
		args = append(args, q.NotProject)
	}
	if q.EnvironmentID != "" {
		query += " AND environment_id = ?"
		args = append(args, q.EnvironmentID)
	}
	query += " ORDER BY key LIMIT ?"
	args = append(args, min(limit, MaxLimit))
	rows, err := r.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list addresses: %w", err)
	}
	defer rows.Close()
	var out []Address
	for rows.Next() {
		a, err := scanAddress(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list addresses: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list addresses: %w", err)
	}
	return out, nil
}

func (r reader) OldestFreedAddress(ctx context.Context, first, last netip.Addr, notAfter time.Time) (Address, error) {
	if err := checkRange(first, last); err != nil {
		return Address{}, err
	}
	rows, err := r.q.QueryContext(ctx, "SELECT "+addressCols+" FROM addresses WHERE freed_at IS NOT NULL AND freed_at <= ? "+
		"AND key BETWEEN ? AND ? ORDER BY freed_at, key LIMIT 1", notAfter.UnixNano(), addressKey(first), addressKey(last))
	if err != nil {
		return Address{}, fmt.Errorf("store: oldest freed address: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Address{}, fmt.Errorf("store: oldest freed address: %w", err)
		}
		return Address{}, fmt.Errorf("freed address from %s to %s: %w", first, last, ErrNotFound)
	}
	a, err := scanAddress(rows)
	if err != nil {
		return Address{}, fmt.Errorf("store: oldest freed address: %w", err)
	}
	return a, rows.Close()
}

func (r reader) AddressUsage(ctx context.Context, first, last netip.Addr) (AddressUsage, error) {
	if err := checkRange(first, last); err != nil {
		return AddressUsage{}, err
	}
	var u AddressUsage
	var lo, hi sql.NullInt64
	_, err := queryOne(ctx, r.q, "SELECT COUNT(*) - COUNT(freed_at), COUNT(freed_at), MIN(freed_at), MAX(freed_at) "+
		"FROM addresses WHERE key BETWEEN ? AND ?", []any{addressKey(first), addressKey(last)}, &u.Held, &u.Freed, &lo, &hi)
	if err != nil {
		return AddressUsage{}, fmt.Errorf("store: address usage: %w", err)
	}
	if lo.Valid {
		u.FirstFreed, u.LastFreed = time.Unix(0, lo.Int64).UTC(), time.Unix(0, hi.Int64).UTC()
	}
	return u, nil
}

func (r reader) GetAddressCursor(ctx context.Context, pool netip.Prefix) (netip.Addr, error) {
	var b []byte
	found, err := queryOne(ctx, r.q, "SELECT next FROM address_cursors WHERE pool = ?", []any{pool.String()}, &b)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("store: address cursor of %s: %w", pool, err)
	}
	if !found {
		return netip.Addr{}, fmt.Errorf("address cursor of %s: %w", pool, ErrNotFound)
	}
	a, ok := addressFromKey(b)
	if !ok {
		return netip.Addr{}, fmt.Errorf("store: address cursor of %s: %x is not a stored address", pool, b)
	}
	return a, nil
}

func (t *sqlTx) PutAddress(ctx context.Context, a Address) error {
	if !a.Addr.IsValid() {
		return errors.New("store: an address record needs an address")
	}
	var freed any
	if !a.FreedAt.IsZero() {
		freed = a.FreedAt.UnixNano()
	}
	_, err := t.q.ExecContext(ctx, "INSERT INTO addresses (key, "+addressCols+") VALUES (?, ?, ?, ?, ?, ?) "+
		"ON CONFLICT (key) DO UPDATE SET address = excluded.address, environment_id = excluded.environment_id, "+
		"project_id = excluded.project_id, allocated_at = excluded.allocated_at, freed_at = excluded.freed_at",
		addressKey(a.Addr), a.Addr.String(), a.EnvironmentID, a.ProjectID, a.AllocatedAt.UnixNano(), freed)
	if constraint(err) == conUnique {
		return fmt.Errorf("%w: environment %s already holds another address", ErrConflict, a.EnvironmentID)
	}
	if err != nil {
		return fmt.Errorf("store: put address %s: %w", a.Addr, err)
	}
	return nil
}

func (t *sqlTx) PutAddressCursor(ctx context.Context, pool netip.Prefix, next netip.Addr) error {
	if !next.IsValid() || next.Is4() != pool.Addr().Is4() {
		return fmt.Errorf("store: address cursor of %s: %s is not an address of the pool's family", pool, next)
	}
	_, err := t.q.ExecContext(ctx, "INSERT INTO address_cursors (pool, next) VALUES (?, ?) ON CONFLICT (pool) DO UPDATE SET next = excluded.next",
		pool.String(), addressKey(next))
	if err != nil {
		return fmt.Errorf("store: put address cursor of %s: %w", pool, err)
	}
	return nil
}
