package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
)

// resolverEventInterval is how often one upstream's failures reach the
// audit trail: a dead upstream fails every query, and the trail records
// that it does, not each query.
const resolverEventInterval = time.Minute

// Audit action of an upstream resolver's failure.
const actionResolverFailure = "dns.upstream_failure"

// resolverEvents turns the DNS proxy's upstream failures into a
// Prometheus counter (every one) and audit events (the first of each
// upstream per resolverEventInterval, counting the ones it stood for).
// The driver starts before the application layer: events wait for
// attach.
type resolverEvents struct {
	clock    clockwork.Clock
	log      *slog.Logger
	failures *prometheus.CounterVec

	mu     sync.Mutex
	ctl    *control.Service
	last   map[string]time.Time
	unsaid map[string]int // failures since the last event, by upstream
	closed bool
}

func newResolverEvents(clock clockwork.Clock, log *slog.Logger) *resolverEvents {
	return &resolverEvents{
		clock: clock, log: log, last: map[string]time.Time{}, unsaid: map[string]int{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "isolationd_dns_upstream_failures_total",
			Help: "Queries an upstream resolver of the DNS proxy failed or timed out on, by upstream.",
		}, []string{"upstream"}),
	}
}

// attach starts recording events through ctl, and registers the counter.
func (r *resolverEvents) attach(ctl *control.Service, reg *prometheus.Registry) {
	reg.MustRegister(r.failures)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctl = ctl
}

// report is netns.Config.OnResolverFailure. The query that raises an
// event waits for it to be stored (once per upstream per interval), so
// the trail holds it before the environment has its SERVFAIL.
func (r *resolverEvents) report(f netns.ResolverFailure) {
	r.failures.WithLabelValues(f.Upstream).Inc()
	r.mu.Lock()
	r.unsaid[f.Upstream]++
	now := r.clock.Now()
	if r.closed || r.ctl == nil || now.Sub(r.last[f.Upstream]) < resolverEventInterval {
		r.mu.Unlock()
		return
	}
	n := r.unsaid[f.Upstream]
	r.last[f.Upstream], r.unsaid[f.Upstream] = now, 0
	ctl := r.ctl
	r.mu.Unlock()
	ev := ctl.Event(control.Call{RequestID: control.NewID("dns_"), Actor: control.ServerActor}, actionResolverFailure,
		apiv1.ResourceRef{Type: "dns_upstream", ID: f.Upstream}, "", apiv1.OutcomeFailure)
	ev.Reason = fmt.Sprintf("upstream resolver %s failed on %s for environment %s: %v; the environment got SERVFAIL (%d failures since the last event)", f.Upstream, f.Name, f.EnvID, f.Err, n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ctl.AppendRefusals(ctx, []apiv1.AuditEvent{ev}); err != nil {
		r.log.Warn("record an upstream resolver's failure", "upstream", f.Upstream, "error", err.Error())
	}
}

// close stops the events: the driver, whose proxy reports, is closed
// before the store; later failures are counted only.
func (r *resolverEvents) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
}
