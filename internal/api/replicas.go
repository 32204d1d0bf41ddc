package api

import (
	"context"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// Replicas is what the API knows of the replicas sharing its store: the
// server's election (internal/server).
type Replicas interface {
	// Replica describes this replica and its host's leader, for /readyz.
	Replica(ctx context.Context) ReplicaInfo
	// Live counts the replicas serving now, this one included (at least
	// 1): each enforces 1/Live of a per-token rate limit.
	Live() int
	// Ready is nil while this replica can serve: its store's schema is
	// the one this build migrated to.
	Ready(ctx context.Context) error
	// Leading reports whether this replica's driver enforces (holds the
	// rules check answers from).
	Leading() bool
	// Leader names the replica that does, "" when none.
	Leader(ctx context.Context) string
}

// notEnforcedHere is the answer of a replica whose driver holds no rules
// (a follower) to what only the enforcing one can answer: 503, to be
// retried, so that a balancer's next pick may reach the leader. Never a
// guess.
func (a *API) notEnforcedHere(ctx context.Context) error {
	if a.replicas == nil || a.replicas.Leading() {
		return nil
	}
	leader := a.replicas.Leader(ctx)
	if leader == "" {
		leader = "none now"
	}
	e := problem.New(problem.Unavailable, "this replica does not enforce the rules; the replica that does (leader: %s) answers check: retry after the Retry-After delay", leader)
	e.RetryAfter = time.Second
	return e
}

// ReplicaInfo is /readyz's replica detail.
type ReplicaInfo struct {
	// ID is this replica's (random at every start).
	ID string `json:"replica_id"`
	// Leader is the replica that reconciles and enforces for this host,
	// "" while none holds the lease.
	Leader string `json:"leader,omitempty"`
	// Leading says that this replica is the leader.
	Leading bool `json:"leading"`
	// Replicas counts the live replicas, as the rate limits divide by.
	Replicas int `json:"replicas"`
	// Store is the kind of store (sqlite or postgres), and SchemaVersion
	// its migration, which this build's matches or /readyz is not ready.
	Store         string `json:"store,omitempty"`
	SchemaVersion int    `json:"schema_version,omitempty"`
}
