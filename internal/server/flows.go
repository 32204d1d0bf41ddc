package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Flow log defaults (--flow-retention, --flow-max-records).
const (
	DefaultFlowRetention  = 7 * 24 * time.Hour
	DefaultFlowMaxRecords = 1_000_000
)

// flowPruneEvery is how often flow records past the retention go.
const flowPruneEvery = 10 * time.Second

// flowLogs carries the netns driver's flow records to the store, counts
// them for Prometheus, and prunes the store to the retention.
type flowLogs struct {
	control    *control.Service
	log        *slog.Logger
	clock      clockwork.Clock
	retention  time.Duration
	maxRecords int

	flows   *prometheus.CounterVec
	denied  *prometheus.CounterVec
	dropped prometheus.Counter // records the store refused

	stop chan struct{}
	wg   sync.WaitGroup
}

func newFlowLogs(cfg Config, c *control.Service, d *netns.Driver, reg *prometheus.Registry) *flowLogs {
	f := &flowLogs{
		control: c, log: cfg.Logger, clock: cfg.Clock, retention: cfg.FlowRetention, maxRecords: cfg.FlowMaxRecords,
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "isolationd_flows_total", Help: "Flows by environment and verdict: connections (allowed) or packets (denied), as the flow records count them.",
		}, []string{"environment", "verdict"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "isolationd_flow_denied_packets_total", Help: "Packets the rules denied, by environment.",
		}, []string{"environment"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "isolationd_flow_records_store_failed_total", Help: "Flow records lost because the store refused their batch.",
		}),
		stop: make(chan struct{}),
	}
	if f.retention == 0 {
		f.retention = DefaultFlowRetention
	}
	if f.maxRecords == 0 {
		f.maxRecords = DefaultFlowMaxRecords
	}
	reg.MustRegister(f.flows, f.denied, f.dropped,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "isolationd_flow_records_dropped_total", Help: "Flow records dropped because the queue to the store was full.",
		}, func() float64 { return float64(d.FlowStats().Dropped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "isolationd_flow_event_overflows_total", Help: "Times the kernel's conntrack events overflowed the flow log's socket (each loses allowed flows' records).",
		}, func() float64 { return float64(d.FlowStats().Overflows) }))
	return f
}

// record is the driver's sink: it runs in the driver's delivery
// goroutine, so a slow store backs up the driver's bounded queue, never
// the packet path or the API.
func (f *flowLogs) record(batch []apiv1.Flow) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.control.RecordFlows(ctx, batch); err != nil {
		f.dropped.Add(float64(len(batch)))
		f.log.Warn("flow records not stored", "records", len(batch), "error", err.Error())
		return
	}
	for _, r := range batch {
		f.flows.WithLabelValues(r.EnvironmentID, r.Verdict).Add(float64(r.Count))
		if r.Verdict == apiv1.VerdictDenied {
			f.denied.WithLabelValues(r.EnvironmentID).Add(float64(r.Packets))
		}
	}
}

// start prunes now and every flowPruneEvery until close.
func (f *flowLogs) start() {
	f.wg.Go(func() {
		tick := f.clock.NewTicker(flowPruneEvery)
		defer tick.Stop()
		for {
			f.prune()
			select {
			case <-f.stop:
				return
			case <-tick.Chan():
			}
		}
	})
}

func (f *flowLogs) prune() {
	n, err := f.control.PruneFlows(context.Background(), f.retention, f.maxRecords)
	switch {
	case err != nil:
		f.log.Warn("prune flow records", "error", err.Error())
	case n > 0:
		f.log.Debug("pruned flow records", "records", n)
	}
}

func (f *flowLogs) close() {
	close(f.stop)
	f.wg.Wait()
}

// storeFlowLog is the store's flow records as the SIEM's flows source
// reads them: by id, oldest first.
type storeFlowLog struct{ store store.Store }

func (l storeFlowLog) FlowsAfter(ctx context.Context, after int64, limit int) ([]apiv1.Flow, error) {
	flows, _, err := l.store.ListFlows(ctx, store.FlowQuery{AfterID: after, Limit: limit})
	return flows, err
}

func (l storeFlowLog) LastFlowID(ctx context.Context) (int64, error) { return l.store.LastFlowID(ctx) }
