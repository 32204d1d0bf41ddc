package server

import (
	"context"
	"fmt"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
)

// leaseReader is a store that tells who holds a lease and how many hold
// the leases of a prefix (store.Postgres, postgres_replicas.go).
type leaseReader interface {
	// LeaseHolder is the unexpired holder of name, "" for none.
	LeaseHolder(ctx context.Context, name string) (string, error)
	// CountLeases counts the unexpired leases whose name starts with
	// prefix.
	CountLeases(ctx context.Context, prefix string) (int, error)
}

// schemaVersioner is a store that tells its migration.
type schemaVersioner interface {
	SchemaVersion(ctx context.Context) (int64, error)
}

// Replica is /readyz's replica detail (api.Replicas).
func (a *acting) Replica(ctx context.Context) api.ReplicaInfo {
	info := api.ReplicaInfo{ID: a.s.replicaID, Leading: a.Leading(), Replicas: a.Live(), Store: a.s.loc.Kind}
	if info.Leading {
		info.Leader = a.s.replicaID
	} else if lr, ok := a.s.store.(leaseReader); ok {
		if holder, err := lr.LeaseHolder(ctx, a.leaseKey); err == nil {
			info.Leader = holder
		}
	}
	info.SchemaVersion = int(a.s.schema)
	return info
}

// Live counts the replicas whose presence lease ran at the last
// election, at least this one.
func (a *acting) Live() int { return max(1, int(a.live.Load())) }

// Ready is nil while the store's schema is the one this replica
// migrated it to at start: a newer one is another build's, whose rows
// this one could misread.
func (a *acting) Ready(ctx context.Context) error {
	sv, ok := a.s.store.(schemaVersioner)
	if !ok {
		return nil
	}
	v, err := sv.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("the store's schema version cannot be read: %w", err)
	}
	if v != a.s.schema {
		return fmt.Errorf("the store's schema is at version %d, this replica runs version %d: another build migrated it; upgrade this replica", v, a.s.schema)
	}
	return nil
}

// countLive counts the live replicas through their presence leases.
func (a *acting) countLive(ctx context.Context) {
	lr, ok := a.s.store.(leaseReader)
	if !ok {
		return
	}
	if n, err := lr.CountLeases(ctx, presencePrefix); err == nil {
		a.live.Store(int64(n))
	}
}
