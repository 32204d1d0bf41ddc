package siem

import (
	"context"
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	lagDesc = prometheus.NewDesc("isolationd_siem_lag_events",
		"Records (audit events, flow records) a SIEM sink has not received yet.", []string{"sink"}, nil)
	deliveredDesc = prometheus.NewDesc("isolationd_siem_delivered_events_total",
		"Records a SIEM sink received since the server started; its rate is the catch-up rate.", []string{"sink"}, nil)
	failuresDesc = prometheus.NewDesc("isolationd_siem_send_failures_total",
		"Failed sends to a SIEM sink (each is retried from its cursor).", []string{"sink"}, nil)
	gapDesc = prometheus.NewDesc("isolationd_siem_gap_events_total",
		"Records a SIEM sink will never receive: its retention was exceeded, or they were pruned first.", []string{"sink"}, nil)
	laggingDesc = prometheus.NewDesc("isolationd_siem_lagging",
		"1 while a SIEM sink has stayed behind past its lag_alert threshold.", []string{"sink"}, nil)
)

// collector reads the sinks' figures when scraped.
type collector struct{ e *Exporter }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lagDesc, deliveredDesc, failuresDesc, gapDesc, laggingDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.e.runners {
		name := r.sink.Name
		if lag, err := r.lag(context.Background()); err != nil {
			ch <- prometheus.NewInvalidMetric(lagDesc, err)
		} else {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), name)
		}
		ch <- prometheus.MustNewConstMetric(deliveredDesc, prometheus.CounterValue, float64(r.delivered.Load()), name)
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(r.failures.Load()), name)
		ch <- prometheus.MustNewConstMetric(gapDesc, prometheus.CounterValue, float64(r.gaps.Load()), name)
		lagging := 0.0
		if r.lagging.Load() {
			lagging = 1
		}
		ch <- prometheus.MustNewConstMetric(laggingDesc, prometheus.GaugeValue, lagging, name)
	}
}

func floatBits(v float64) uint64 { return math.Float64bits(v) }
func floatFrom(b uint64) float64 { return math.Float64frombits(b) }
