package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem/siemtest"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Rounds of each benchmark, alternating where there are two setups; the
// API's, short and noisy on a shared machine, has more.
const (
	benchRounds    = 5
	apiBenchRounds = 9
)

// lineCounter counts the lines of a growing file, reading only what is new.
type lineCounter struct {
	path  string
	off   int64
	lines int
}

func (c *lineCounter) count(tb testing.TB) int {
	f, err := os.Open(c.path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.ReadAt(buf, c.off)
		c.lines += bytes.Count(buf[:n], []byte{'\n'})
		c.off += int64(n)
		if err != nil || n == 0 {
			return c.lines
		}
	}
}

// awaitLines polls until path has want lines, for at most d, and returns
// when it saw them.
func awaitLines(tb testing.TB, c *lineCounter, want int, d time.Duration) time.Time {
	deadline := time.Now().Add(d)
	for c.count(tb) < want {
		if time.Now().After(deadline) {
			tb.Fatalf("%s has %d of %d lines after %s", c.path, c.lines, want, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now()
}

// fillAudit appends n audit events to the server's chain, 500 a
// transaction.
func fillAudit(tb testing.TB, st store.Store, n int) {
	ctx := context.Background()
	for done := 0; done < n; {
		k := min(500, n-done)
		err := st.Update(ctx, func(tx store.Tx) error {
			for i := range k {
				ev := apiv1.AuditEvent{ID: control.NewID("evt_"), Time: time.Now(), Actor: apiv1.Actor{Name: "bench", TokenID: "tok_bench"},
					Action: "project.create", Resource: apiv1.ResourceRef{Type: "project", ID: "prj_" + strconv.Itoa(done+i)}, Outcome: apiv1.OutcomeSuccess, StatusCode: 201}
				if _, err := tx.AppendAudit(ctx, ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		done += k
	}
}

// BenchmarkSIEMDelivery: a backlog of audit events delivered over TLS to
// a real rsyslog, from a sink's start to the last line written, beside
// the same number of messages written by a bare TLS client to the same
// rsyslog (what the receiver takes at most), in the same run.
func BenchmarkSIEMDelivery(b *testing.B) {
	if why := siemtest.RsyslogMissing(); why != "" {
		b.Skip(why)
	}
	const events = 20000
	pki := siemtest.NewPKI(b, b.TempDir())
	var exported, bare []float64
	for range b.N * benchRounds {
		// Bare: the same size of message, pre-framed, one connection.
		rs := siemtest.StartRsyslog(b, pki)
		msg := fmt.Sprintf(`<109>1 2026-12-02T10:00:00.000000Z host isolationd 1 project.create [audit@32473 id="evt_x" seq="1"] %0700d`, 0)
		frame := []byte(strconv.Itoa(len(msg)) + " " + msg)
		stream := bytes.Repeat(frame, events)
		c := &lineCounter{path: rs.Out}
		start := time.Now()
		conn := dialTLS(b, rs.Addr, pki)
		if _, err := conn.Write(stream); err != nil {
			b.Fatal(err)
		}
		end := awaitLines(b, c, events, time.Minute)
		conn.Close()
		bare = append(bare, events/end.Sub(start).Seconds())
		rs.Kill(b)

		// Exported: a backlog, then a sink started at the oldest.
		rs = siemtest.StartRsyslog(b, pki)
		cfg := labConfig(b, "simulate")
		l := startLab(b, cfg)
		fillAudit(b, l.srv.Store(), events)
		head := l.headSeq()
		l.shutdown()
		sinks, err := siem.ParseSinks([]string{fmt.Sprintf("syslog+tls://%s?format=ocsf&from=oldest&ca=%s&cert=%s&key=%s", rs.Addr, pki.CA, pki.ClientCert, pki.ClientKey)}, nil)
		if err != nil {
			b.Fatal(err)
		}
		cfg.SIEM = sinks
		c = &lineCounter{path: rs.Out}
		start = time.Now()
		l.cfg = cfg
		l.start()
		end = awaitLines(b, c, int(head), time.Minute)
		exported = append(exported, float64(head)/end.Sub(start).Seconds())
		l.shutdown()
		rs.Kill(b)
	}
	b.ReportMetric(median(exported), "exported-events/s")
	b.ReportMetric(median(bare), "bare-tls-events/s")
	b.ReportMetric(median(exported)/median(bare), "ratio")
	b.Logf("delivery to rsyslog over TLS, median of %d: exported %.0f events/s, bare TLS client %.0f events/s, ratio %.2f",
		len(exported), median(exported), median(bare), median(exported)/median(bare))
}

func dialTLS(tb testing.TB, addr string, pki siemtest.PKI) *tls.Conn {
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1"})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkSIEMAPIWrites: API writes (project creates, 8 at a time) per
// second with no SIEM sink, and with two attached (rsyslog over TLS and
// an HTTPS webhook), alternating in the same run; medians, and the median
// of each pair's ratio (a pair shares the machine's load of the moment).
func BenchmarkSIEMAPIWrites(b *testing.B) {
	if why := siemtest.RsyslogMissing(); why != "" {
		b.Skip(why)
	}
	const writes, workers = 600, 8
	pki := siemtest.NewPKI(b, b.TempDir())
	rs := siemtest.StartRsyslog(b, pki)
	w := siemtest.StartWebhook(b, pki, siemtest.WebhookOptions{})
	two := []string{
		fmt.Sprintf("syslog+tls://%s?format=ocsf&ca=%s&cert=%s&key=%s", rs.Addr, pki.CA, pki.ClientCert, pki.ClientKey),
		fmt.Sprintf("%s/hook?format=ocsf&ca=%s&cert=%s&key=%s", w.URL, pki.CA, pki.ClientCert, pki.ClientKey),
	}
	var none, with, ratios []float64
	for round := range b.N * apiBenchRounds {
		for _, urls := range [][]string{nil, two} {
			cfg := labConfig(b, "simulate")
			sinks, err := siem.ParseSinks(urls, nil)
			if err != nil {
				b.Fatal(err)
			}
			cfg.SIEM = sinks
			l := startLab(b, cfg)
			rate := apiWrites(b, l, fmt.Sprintf("r%d", round), writes, workers)
			l.shutdown()
			if urls == nil {
				none = append(none, rate)
			} else {
				with = append(with, rate)
				ratios = append(ratios, rate/none[len(none)-1])
			}
		}
	}
	b.ReportMetric(median(none), "writes/s-no-sink")
	b.ReportMetric(median(with), "writes/s-two-sinks")
	b.ReportMetric(median(ratios), "ratio")
	b.Logf("API writes, %d alternating rounds: no sink median %.0f/s (%.0f-%.0f), two sinks %.0f/s (%.0f-%.0f); ratio of each pair, median %.3f (%.3f-%.3f)",
		len(none), median(none), slices.Min(none), slices.Max(none), median(with), slices.Min(with), slices.Max(with), median(ratios), slices.Min(ratios), slices.Max(ratios))
}

// apiWrites creates n projects through the API, workers at a time, and
// returns how many a second.
func apiWrites(tb testing.TB, l *apiLab, prefix string, n, workers int) float64 {
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if _, err := l.c.Projects().Create(l.ctx, apiv1.ProjectCreate{Name: fmt.Sprintf("%s-%d", prefix, i)}); err != nil {
					tb.Error(err)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
