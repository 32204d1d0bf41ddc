package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isolationhq/terraform-provider-isolation/internal/reconcile"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// DefaultLeaseTTL is how long the reconcile lease outlives its last
// renewal: a dead leader is replaced within it.
const DefaultLeaseTTL = 5 * time.Second

// fencedStore is the store as the leader writes it: every transaction
// first checks that the lease of its term is still its own, so that a
// leader that lost the lease (paused, partitioned) changes nothing.
type fencedStore struct {
	store.Store
	name, holder string
	fence        int64
}

func (f fencedStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	return f.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.CheckLease(f.name, f.holder, f.fence); err != nil {
			return err
		}
		return fn(tx)
	})
}

// newReplicaID is a replica's random id, new at every start.
func newReplicaID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return "rep_" + hex.EncodeToString(b)
}

// acting is what only the leader of this host does, because it acts
// rather than answers: the reconciler (with the driver's and the
// runtime's adoption, the TTL reaper and the idempotency purge) and the
// SIEM export. It starts them when the replica gains the lease, as on a
// restart, and stops them when it loses it.
type acting struct {
	s        *Server
	leaseKey string // "reconcile/<host>"
	ttl      time.Duration
	leader   prometheus.Gauge

	mu     sync.Mutex
	term   *term // nil while following
	stop   chan struct{}
	done   chan struct{}
	decide atomic.Bool  // the first election is decided (and, leading, started)
	live   atomic.Int64 // replicas counted at the last election
}

// term is one stretch of leadership.
type term struct {
	fence      int64
	reconciler *reconcile.Reconciler
	siem       *siem.Exporter
}

func newActing(s *Server, reg prometheus.Registerer) *acting {
	a := &acting{s: s, leaseKey: "reconcile/" + s.cfg.Host, ttl: s.cfg.LeaseTTL}
	a.leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "isolationd_leader", Help: "1 while this replica reconciles and enforces for its host (holds the reconcile lease), else 0.",
		ConstLabels: prometheus.Labels{"replica": s.replicaID},
	})
	reg.MustRegister(a.leader)
	return a
}

// Committed hands a commit to the current term's reconciler and SIEM
// export; a follower has neither: the leader hears of the commit itself.
func (a *acting) Committed(c store.Commit) {
	a.mu.Lock()
	t := a.term
	a.mu.Unlock()
	if t == nil {
		return
	}
	t.reconciler.Committed(c)
	if t.siem != nil {
		t.siem.Committed(c)
	}
}

// Started reports whether the replica has decided its first election
// and, leading, started reconciling (for /readyz).
func (a *acting) Started() bool {
	if !a.decide.Load() {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.term == nil || a.term.reconciler.Started()
}

// Leading reports whether this replica leads now.
func (a *acting) Leading() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.term != nil
}

// Status is the SIEM sinks' status on the leader; a follower exports
// nothing.
func (a *acting) Status(ctx context.Context) []siem.SinkStatus {
	a.mu.Lock()
	t := a.term
	a.mu.Unlock()
	if t == nil || t.siem == nil {
		return nil
	}
	return t.siem.Status(ctx)
}

// start decides the first election and, on a store that elects, keeps
// renewing the lease every TTL/3 in the background.
func (a *acting) start(ctx context.Context) error {
	if !a.s.loc.Shared() {
		// One server on its own file: it always leads, unfenced.
		if err := a.lead(ctx, 0); err != nil {
			return err
		}
		a.decide.Store(true)
		return nil
	}
	a.s.log.Info("replica", "replica_id", a.s.replicaID, "lease", a.leaseKey, "lease_ttl", a.ttl.String())
	if err := a.elect(ctx); err != nil {
		return err
	}
	a.decide.Store(true)
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go a.renew(context.WithoutCancel(ctx))
	return nil
}

// renew runs one election every TTL/3 until close.
func (a *acting) renew(ctx context.Context) {
	defer close(a.done)
	tick := a.s.cfg.Clock.NewTicker(a.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.Chan():
			if err := a.elect(ctx); err != nil {
				a.s.log.Error("starting to reconcile as the new leader failed; following, the next election retries", "replica_id", a.s.replicaID, "error", err.Error())
			}
		}
	}
}

// elect takes or renews the lease, and the replica's presence
// ("replica/<id>"), and starts or stops acting to match. A renewal that
// fails or is late stops acting at once: the lease may be about to pass
// to another, and waiting for certainty would let two act.
func (a *acting) elect(ctx context.Context) error {
	l := a.s.store
	// The renewal has a third of the TTL; starting a term (adopting every
	// environment) takes what it takes, under ctx.
	lctx, cancel := context.WithTimeout(ctx, a.ttl/3)
	defer cancel()
	fence, held, err := l.Lease(lctx, a.leaseKey, a.s.replicaID, a.ttl)
	if err == nil {
		if _, _, perr := l.Lease(lctx, presencePrefix+a.s.replicaID, a.s.replicaID, a.ttl); perr != nil {
			a.s.log.Warn("renewing this replica's presence failed", "replica_id", a.s.replicaID, "error", perr.Error())
		}
		a.countLive(lctx)
	}
	a.mu.Lock()
	cur := a.term
	a.mu.Unlock()
	switch {
	case err != nil || !held:
		if cur != nil {
			reason := "another replica holds the lease"
			if err != nil {
				reason = store.RedactDSN(err.Error())
			}
			a.s.log.Warn("lost the reconcile lease: stopping reconciling and enforcing", "replica_id", a.s.replicaID, "reason", reason)
			a.follow()
		}
		return nil // the store's unavailability is /readyz's to report
	case cur != nil && cur.fence == fence:
		return nil
	case cur != nil:
		// The lease passed to another and back between two renewals: what
		// this term did may have been undone; start over.
		a.follow()
	}
	a.s.log.Info("gained the reconcile lease: reconciling and enforcing for this host", "replica_id", a.s.replicaID, "fence", fence)
	return a.lead(ctx, fence)
}

// lead starts a term: a reconciler whose writes are fenced by the
// lease, adopting what exists as on a restart, and the SIEM export.
func (a *acting) lead(ctx context.Context, fence int64) (err error) {
	t := &term{fence: fence}
	ctl := a.s.control
	if a.s.loc.Shared() {
		ctl = a.s.newControl(fencedStore{Store: a.s.store, name: a.leaseKey, holder: a.s.replicaID, fence: fence})
	}
	t.reconciler = a.s.newReconciler(ctl)
	if t.siem, err = a.s.openSIEM(ctx); err != nil {
		return err
	}
	// The term is visible before its reconciler starts, so that a commit
	// announced meanwhile is queued; Start queues everything anyway.
	a.mu.Lock()
	a.term = t
	a.mu.Unlock()
	if err := t.reconciler.Start(ctx); err != nil {
		a.follow()
		return fmt.Errorf("server: %w", err)
	}
	a.leader.Set(1)
	return nil
}

// follow ends the term, if any: the reconciler stops after at most a
// third of the lease's TTL (then its passes are cancelled), the SIEM
// export stores its cursors.
func (a *acting) follow() {
	a.mu.Lock()
	t := a.term
	a.term = nil
	a.mu.Unlock()
	a.leader.Set(0)
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.ttl/3)
	defer cancel()
	if err := t.reconciler.Stop(ctx); err != nil {
		a.s.log.Warn("stopping the reconciler", "error", err.Error())
	}
	if t.siem != nil {
		if err := t.siem.Stop(ctx); err != nil {
			a.s.log.Warn("stopping the SIEM export", "error", err.Error())
		}
	}
}

// close stops electing, ends the term and gives the leases back, so that
// another replica takes over at once instead of after the TTL.
func (a *acting) close(ctx context.Context) {
	if a.stop != nil {
		close(a.stop)
		<-a.done
		a.stop = nil
	}
	leading := a.Leading()
	a.follow()
	if l := a.s.store; a.s.loc.Shared() {
		if leading {
			if err := l.ReleaseLease(ctx, a.leaseKey, a.s.replicaID); err != nil {
				a.s.log.Warn("releasing the reconcile lease", "error", err.Error())
			}
		}
		if err := l.ReleaseLease(ctx, presencePrefix+a.s.replicaID, a.s.replicaID); err != nil {
			a.s.log.Warn("releasing this replica's presence", "error", err.Error())
		}
	}
}

// presencePrefix starts the name of the lease each replica holds while
// it runs, so that the replicas can be counted (per-token rate limits).
const presencePrefix = "replica/"

// reRegisterer lets a collector be registered again under the same
// name, replacing the one before: each term's reconciler and SIEM export
// register their metrics anew.
type reRegisterer struct{ *prometheus.Registry }

func (r reRegisterer) Register(c prometheus.Collector) error {
	r.Registry.Unregister(c)
	return r.Registry.Register(c)
}

func (r reRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}
