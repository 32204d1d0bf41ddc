package server

import (
	"context"
	"fmt"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
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

// Replica is /readyz's replica detail (api.Replicas).
func (a *acting) Replica(ctx context.Context) api.ReplicaInfo {
	info := api.ReplicaInfo{ID: a.s.replicaID, Leading: a.Leading(), Replicas: a.Live(), Store: a.s.loc.Kind, Leader: a.Leader(ctx)}
	if v, _, err := a.s.store.SchemaVersion(ctx); err == nil {
		info.SchemaVersion = int(v)
	}
	return info
}

// Leader is the replica that leads this host now, "" when none does.
func (a *acting) Leader(ctx context.Context) string {
	if a.Leading() {
		return a.s.replicaID
	}
	lr, ok := a.s.store.(leaseReader)
	if !ok {
		return ""
	}
	holder, err := lr.LeaseHolder(ctx, a.leaseKey)
	if err != nil {
		return ""
	}
	return holder
}

// Live counts the replicas whose presence lease ran at the last
// election, at least this one.
func (a *acting) Live() int { return max(1, int(a.live.Load())) }

// Ready is nil while the database answers and its schema is the one
// this build migrates to: another build's could hold rows this one
// misreads.
func (a *acting) Ready(ctx context.Context) error {
	if err := a.s.store.Ping(ctx); err != nil {
		return fmt.Errorf("the database is not reachable: %s", store.RedactDSN(err.Error()))
	}
	v, want, err := a.s.store.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("the database's schema version cannot be read: %s", store.RedactDSN(err.Error()))
	}
	if v != want {
		return fmt.Errorf("the database's schema is at version %d, this replica's at %d: another build migrated it; run the same build on every replica", v, want)
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
