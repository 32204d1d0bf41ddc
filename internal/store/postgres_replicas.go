package store

import (
	"context"
	"fmt"
	"strings"
)

// LeaseHolder is the holder of lease name while it runs, "" when none
// holds it (for /readyz: which replica leads).
func (p *Postgres) LeaseHolder(ctx context.Context, name string) (string, error) {
	var holder string
	if _, err := queryOne(ctx, p.r.q, "SELECT holder FROM leases WHERE name = ? AND expires_at > now()", []any{name}, &holder); err != nil {
		return "", pgUnavailable(fmt.Errorf("store: lease %s: %w", name, err))
	}
	return holder, nil
}

// CountLeases counts the running leases whose name starts with prefix
// (the replicas' presence leases, for the per-token rate limits).
func (p *Postgres) CountLeases(ctx context.Context, prefix string) (int, error) {
	like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
	var n int
	if _, err := queryOne(ctx, p.r.q, `SELECT COUNT(*) FROM leases WHERE name LIKE ? ESCAPE '\' AND expires_at > now()`, []any{like}, &n); err != nil {
		return 0, pgUnavailable(fmt.Errorf("store: count leases %s*: %w", prefix, err))
	}
	return n, nil
}
