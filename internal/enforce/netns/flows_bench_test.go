package netns_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// BenchmarkFlowLogs_ConnectionRate opens TCP connections from an
// environment to the internet as fast as four clients can (each a
// handshake, the server's close and the client's), in rounds that
// alternate flow logs off and on, and reports the rates and their ratio:
// what flow logging costs a connection storm, the kernel's share
// (conntrack events, accounting, timestamps) and the driver's (reading
// the events, attributing each flow to its rule, aggregating the records)
// together, on the same cores.
//
// Both arms forget closed flows within a second (as the flow tests do),
// so that each flow's end, and its record, falls within the round that
// made it; every round warms up for a second before it is timed, so that
// the timed part is the steady state.
func BenchmarkFlowLogs_ConnectionRate(b *testing.B) {
	l := newLab(b)
	router := l.d.RouterNamespace()
	netnstest.ShortConntrackTimeouts(b, router)
	a, _ := l.env(b, "bench-flows", "198.18.0.2")
	l.apply(b, "bench-flows", apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("web", []apiv1.EffectivePeer{cidr("198.19.0.10/32")}, tcp(80))}})
	dst := netip.AddrPortFrom(netip.MustParseAddr("198.19.0.10"), 80)
	var recorded atomic.Int64
	sink := func(batch []apiv1.Flow) {
		for _, f := range batch {
			if f.Verdict == apiv1.VerdictAllowed {
				recorded.Add(f.Count)
			}
		}
	}
	// Short rounds in pairs, each pair's ratio on its own: the machine's
	// drift (other work on its cores) moves both rounds of a pair alike.
	const pairs, warm, timed = 6, 500 * time.Millisecond, time.Second
	for b.Loop() {
		var off, on, ratio []float64
		var conns, records int64
		for range pairs {
			conntrackAccounting(b, router, "0") // as a router that never had flow logs
			rOff := connectionRate(b, a, dst, warm, timed)

			recorded.Store(0)
			if err := l.d.StartFlowLogs(sink); err != nil {
				b.Fatal(err)
			}
			rOn := connectionRate(b, a, dst, warm, timed)
			// Every connection's record, before the next round: the
			// flow logs kept up. Those of the round before, which the
			// kernel forgets during this one, count too.
			waitRecorded(b, &recorded, rOn.total)
			netns.StopFlowLogs(l.d)
			conns, records = conns+rOn.total, records+recorded.Load()
			off, on, ratio = append(off, rOff.perSecond), append(on, rOn.perSecond), append(ratio, rOn.perSecond/rOff.perSecond)
		}
		b.ReportMetric(median(off), "conn/s-off")
		b.ReportMetric(median(on), "conn/s-on")
		b.ReportMetric(median(ratio), "on/off")
		b.ReportMetric(100*float64(records)/float64(conns), "recorded-%")
	}
}

// rate is what connectionRate measured.
type rate struct {
	perSecond float64 // connections completed in the timed part, per second
	total     int64   // connections made in the whole round, warm-up included
}

// connectionRate makes connections from to dst on four clients for warm
// then timed, and counts those completed within timed.
func connectionRate(b *testing.B, from netnstest.Endpoint, dst netip.AddrPort, warm, timed time.Duration) rate {
	b.Helper()
	start := time.Now().Add(warm)
	end := start.Add(timed)
	var counted, total, failed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			errs <- netnstest.Do(from.Namespace, func() error {
				d := net.Dialer{Timeout: time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from.Addr, 0))}
				buf := make([]byte, 1)
				for time.Now().Before(end) {
					c, err := d.Dial("tcp", dst.String())
					if err != nil {
						failed.Add(1)
						continue
					}
					// The server closes at once: read to its end, so
					// that the server, not the client, holds TIME_WAIT
					// and the client's ports are free again.
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					_, err = c.Read(buf)
					_ = c.Close()
					if !errors.Is(err, io.EOF) {
						failed.Add(1)
						continue
					}
					total.Add(1)
					if now := time.Now(); now.After(start) && now.Before(end) {
						counted.Add(1)
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	if f := failed.Load(); f*100 > total.Load() {
		b.Fatalf("%d of %d connections failed", f, f+total.Load())
	}
	return rate{perSecond: float64(counted.Load()) / timed.Seconds(), total: total.Load()}
}

// waitRecorded waits, for at most ten seconds, until the records count
// want connections.
func waitRecorded(b *testing.B, recorded *atomic.Int64, want int64) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for recorded.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("the flow records count %d of %d connections after ten seconds", recorded.Load(), want)
		}
		time.Sleep(50 * time.Millisecond) // polling for the records, with a deadline
	}
}

// conntrackAccounting sets conntrack's packet accounting and timestamps
// in namespace, which flow logs turn on and a router without them has
// off ("0" or "1").
func conntrackAccounting(b *testing.B, namespace, value string) {
	b.Helper()
	err := netnstest.Do(namespace, func() error {
		for _, key := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
			if err := os.WriteFile("/proc/sys/net/netfilter/"+key, []byte(value), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}
