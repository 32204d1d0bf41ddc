package siem_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem/siemtest"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// lab is a real SQLite store and an exporter following its audit chain.
type lab struct {
	t       *testing.T
	st      *store.SQLite
	e       *siem.Exporter
	reg     *prometheus.Registry
	mu      sync.Mutex
	notices []siem.Notice
	n       int
}

func newLab(t *testing.T) *lab {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "isolationd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &lab{t: t, st: st, reg: prometheus.NewRegistry()}
}

// append adds n audit events to the chain, in one transaction, and wakes
// the exporter as the store's commit subscription does.
func (l *lab) append(n int, outcome string) {
	l.t.Helper()
	var commit store.Commit
	err := l.st.Update(context.Background(), func(tx store.Tx) error {
		for range n {
			l.n++
			ev := apiv1.AuditEvent{ID: fmt.Sprintf("evt_%06d", l.n), Time: time.Now(), Actor: apiv1.Actor{Name: "admin", TokenID: "tok_1"},
				Action: "project.create", Resource: apiv1.ResourceRef{Type: "project", ID: fmt.Sprintf("prj_%d", l.n)}, Outcome: outcome, StatusCode: 201}
			if _, err := tx.AppendAudit(context.Background(), ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
	if l.e != nil {
		l.e.Committed(commit)
	}
}

// start starts an exporter to the sinks of urls.
func (l *lab) start(urls ...string) {
	l.t.Helper()
	sinks, err := siem.ParseSinks(urls, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	l.e, err = siem.New(siem.Options{
		Store: l.st, Sinks: sinks, Registry: l.reg,
		Sources: map[string]siem.Source{siem.SourceAudit: siem.AuditSource{Store: l.st}},
		Notice: func(_ context.Context, n siem.Notice) error {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.notices = append(l.notices, n)
			return nil
		},
	})
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.e.Start(context.Background()); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { l.stop() })
}

func (l *lab) stop() {
	if l.e == nil {
		return
	}
	if err := l.e.Stop(context.Background()); err != nil {
		l.t.Error(err)
	}
	l.e = nil
	l.reg = prometheus.NewRegistry() // a restart's
}

func (l *lab) notice(action string) (siem.Notice, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.notices {
		if n.Action == action {
			return n, true
		}
	}
	return siem.Notice{}, false
}

// eventually polls cond every few milliseconds for at most d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tcpSyslog receives syslog over TCP, octet counted, parsed with
// go-syslog's RFC 6587 and RFC 5424 parsers.
type tcpSyslog struct {
	l    net.Listener
	mu   sync.Mutex
	msgs []*rfc5424.SyslogMessage
	errs []error
}

func listenTCPSyslog(t *testing.T, addr string) *tcpSyslog {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpSyslog{l: l}
	t.Cleanup(func() { l.Close() })
	go serveConns(l, func(c net.Conn) {
		octetcounting.NewParser(syslog.WithListener(func(res *syslog.Result) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if res.Error != nil {
				r.errs = append(r.errs, res.Error)
				return
			}
			r.msgs = append(r.msgs, res.Message.(*rfc5424.SyslogMessage))
		})).Parse(c)
	})
	return r
}

// serveConns hands each connection l accepts to handle, on a goroutine
// of its own, and closes it after; it returns once l is closed.
func serveConns(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

func (r *tcpSyslog) received() ([]*rfc5424.SyslogMessage, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*rfc5424.SyslogMessage(nil), r.msgs...), append([]error(nil), r.errs...)
}

// syslog+tcp frames each message by octet counting, and each is RFC 5424
// with the event's actor, action, outcome, resource, seq and hash in its
// structured data, its body the event as the API shows it.
func TestExport_SyslogTCPIsOctetCountedRFC5424WithStructuredData(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rcv := listenTCPSyslog(t, "127.0.0.1:0")
	l.start("syslog+tcp://" + rcv.l.Addr().String() + "?from=oldest")
	l.append(3, apiv1.OutcomeSuccess)
	l.append(1, apiv1.OutcomeDenied)
	eventually(t, 10*time.Second, "4 messages", func() bool { m, _ := rcv.received(); return len(m) >= 4 })
	msgs, errs := rcv.received()
	if len(errs) > 0 {
		t.Fatalf("go-syslog could not parse what was sent: %v", errs)
	}
	for i, m := range msgs {
		seq := int64(i + 1)
		sd := (*m.StructuredData)["audit@"+siem.PEN]
		want := map[string]string{"id": fmt.Sprintf("evt_%06d", seq), "seq": strconv.FormatInt(seq, 10), "actor": "admin", "actor_token": "tok_1",
			"action": "project.create", "resource": fmt.Sprintf("project/prj_%d", seq), "outcome": apiv1.OutcomeSuccess}
		if seq == 4 {
			want["outcome"] = apiv1.OutcomeDenied
		}
		for k, v := range want {
			if sd[k] != v {
				t.Errorf("message %d: %s=%q, want %q", seq, k, sd[k], v)
			}
		}
		if sd["hash"] == "" || *m.Appname != "isolationd" || *m.MsgID != "project.create" || m.Version != 1 || *m.Facility != 13 {
			t.Errorf("message %d: header %+v, sd %v", seq, m, sd)
		}
		if wantSev := map[bool]uint8{true: 5, false: 4}[seq < 4]; *m.Severity != wantSev {
			t.Errorf("message %d: severity %d, want %d", seq, *m.Severity, wantSev)
		}
		var ev apiv1.AuditEvent
		if err := json.Unmarshal([]byte(*m.Message), &ev); err != nil || ev.Seq != seq {
			t.Errorf("message %d: body %q is not the event as JSON: %v", seq, *m.Message, err)
		}
	}
}

// syslog+udp sends each message in a datagram of its own, a whole RFC
// 5424 message; cef is the body a CEF line.
func TestExport_SyslogUDPOneRFC5424DatagramPerEvent(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	l.start("syslog+udp://" + pc.LocalAddr().String() + "?format=cef&from=oldest")
	l.append(3, apiv1.OutcomeSuccess)
	p := rfc5424.NewParser()
	buf := make([]byte, 65536)
	for i := 1; i <= 3; i++ {
		if err := pc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		m, err := p.Parse(buf[:n])
		if err != nil {
			t.Fatalf("datagram %d is not RFC 5424: %v\n%s", i, err, buf[:n])
		}
		body := *m.(*rfc5424.SyslogMessage).Message
		if !strings.HasPrefix(body, "CEF:0|isolationhq|isolationd|") || !strings.Contains(body, fmt.Sprintf("externalId=evt_%06d", i)) {
			t.Errorf("datagram %d: body %q", i, body)
		}
	}
}

// The file sink appends the JSON lines of today, one event a line.
func TestExport_FileSinkAppendsOneJSONLinePerEvent(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	path := filepath.Join(t.TempDir(), "siem.jsonl")
	l.append(2, apiv1.OutcomeSuccess) // before the first start: from=head skips them
	l.start("file://" + path)
	l.append(3, apiv1.OutcomeSuccess)
	var lines []string
	eventually(t, 10*time.Second, "3 lines", func() bool {
		b, _ := os.ReadFile(path)
		lines = strings.Fields(string(b))
		return len(lines) >= 3
	})
	for i, line := range lines {
		var ev apiv1.AuditEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Seq != int64(i+3) {
			t.Errorf("line %d: %s (%v): want seq %d", i, line, err, i+3)
		}
	}
}

// seqsOf are the OCSF records' metadata.sequence values.
func seqsOf(t *testing.T, recs []json.RawMessage) []int64 {
	t.Helper()
	var out []int64
	for _, raw := range recs {
		var ev struct {
			Metadata struct{ Sequence int64 } `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Metadata.Sequence)
	}
	return out
}

// A webhook that answers 500, then 429 with Retry-After, gets every event
// once it accepts, in order, in signed batches, after waiting as long as
// it asked.
func TestExport_WebhookRetriesThrough500And429AndSignsEachBatch(t *testing.T) {
	t.Parallel()
	pki := siemtest.NewPKI(t, t.TempDir())
	const secret = "webhook-secret-0123456789"
	w := siemtest.StartWebhook(t, pki, siemtest.WebhookOptions{Fails: 3, Throttles: 2, Secret: secret})
	l := newLab(t)
	l.start(fmt.Sprintf("%s/hook?format=ocsf&from=oldest&secret=%s&ca=%s&cert=%s&key=%s", w.URL, secret, pki.CA, pki.ClientCert, pki.ClientKey))
	l.append(5, apiv1.OutcomeSuccess)
	l.append(5, apiv1.OutcomeSuccess)
	eventually(t, 20*time.Second, "10 events accepted", func() bool { return len(w.Accepted()) >= 10 })
	for i, s := range seqsOf(t, w.Accepted()) {
		if s != int64(i+1) {
			t.Fatalf("accepted seqs %v: want 1 to 10 in order, once each", seqsOf(t, w.Accepted()))
		}
	}
	if n := w.BadSignatures(); n > 0 {
		t.Errorf("%d batches had a wrong %s", n, siem.SignatureHeader)
	}
	if wait := w.RetryWait(); wait < 900*time.Millisecond {
		t.Errorf("sent again %s after a 429 with Retry-After: 1", wait)
	}
	if b := w.Batches(); b[0] != "audit:1-5" && b[0] != "audit:1-10" {
		t.Errorf("batches %v", b)
	}
}

// A dead sink's lag is counted, shown in its status and as
// isolationd_siem_lag_events, and audited once it stays behind past
// lag_alert; once the receiver is back the sink catches up, says so, and
// its cursor survives a restart.
func TestExport_ADeadSinkLagsVisiblyThenCatchesUpFromItsCursor(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := hold.Addr().String()
	hold.Close() // nothing listens: connections are refused
	url := "syslog+tcp://" + addr + "?lag_alert=300ms&settle=100ms"
	l.start(url)
	l.append(7, apiv1.OutcomeSuccess)
	eventually(t, 10*time.Second, "the lagging notice", func() bool { _, ok := l.notice(siem.ActionLagging); return ok })
	st := l.e.Status(context.Background())
	if len(st) != 1 || st[0].Lag != 7 || !st[0].Lagging || st[0].Error == "" {
		t.Errorf("status %+v: want 7 behind, lagging, with the error", st)
	}
	if got := l.gauge("isolationd_siem_lag_events"); got != 7 {
		t.Errorf("isolationd_siem_lag_events = %v, want 7", got)
	}
	n, _ := l.notice(siem.ActionLagging)
	if n.Sink != "syslog+tcp://"+addr || !strings.Contains(n.Reason, "7 records behind") {
		t.Errorf("lagging notice %+v", n)
	}

	rcv := listenTCPSyslog(t, addr)
	eventually(t, 20*time.Second, "the caught_up notice", func() bool { _, ok := l.notice(siem.ActionCaughtUp); return ok })
	if msgs, _ := rcv.received(); len(msgs) != 7 {
		t.Errorf("received %d messages, want 7", len(msgs))
	}
	l.stop()
	if pos, _, err := l.st.GetSIEMCursor(context.Background(), "syslog+tcp://"+addr, siem.SourceAudit); err != nil || pos != 7 {
		t.Errorf("stored cursor %d, %v; want 7", pos, err)
	}
	// Restarted: from the cursor, not the head, not the oldest.
	l.append(2, apiv1.OutcomeSuccess)
	l.start(url)
	eventually(t, 10*time.Second, "9 messages", func() bool { m, _ := rcv.received(); return len(m) >= 9 })
	msgs, _ := rcv.received()
	if len(msgs) != 9 || (*msgs[7].StructuredData)["audit@"+siem.PEN]["seq"] != "8" {
		t.Errorf("after the restart: %d messages", len(msgs))
	}
}

// gauge is the value of the one series of name in the lab's registry.
func (l *lab) gauge(name string) float64 {
	l.t.Helper()
	mfs, err := l.reg.Gather()
	if err != nil {
		l.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	l.t.Fatalf("no single series %s", name)
	return 0
}

// A sink further behind than its retention skips the oldest and reports
// the gap, in a notice and a counter, never silently.
func TestExport_RetentionExceededSkipsTheOldestAndReportsTheGap(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	path := filepath.Join(t.TempDir(), "siem.jsonl")
	l.append(30, apiv1.OutcomeSuccess)
	l.start("file://" + path + "?from=oldest&retention=10")
	eventually(t, 10*time.Second, "the gap notice", func() bool { _, ok := l.notice(siem.ActionGap); return ok })
	n, _ := l.notice(siem.ActionGap)
	if !strings.Contains(n.Reason, "audit 1 to 20 (20 records) were not delivered") || !strings.Contains(n.Reason, "retention of 10") {
		t.Errorf("gap notice %+v", n)
	}
	var seqs []int64
	eventually(t, 10*time.Second, "10 lines", func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		seqs = seqs[:0]
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var ev apiv1.AuditEvent
			_ = json.Unmarshal(sc.Bytes(), &ev)
			seqs = append(seqs, ev.Seq)
		}
		return len(seqs) >= 10
	})
	if seqs[0] != 21 || seqs[len(seqs)-1] != 30 {
		t.Errorf("delivered %v, want 21 to 30", seqs)
	}
	if st := l.e.Status(context.Background()); st[0].Gaps != 20 {
		t.Errorf("status %+v: want 20 gap events", st)
	}
}

// events=denials sends only refusals; without a flows source it still
// follows the audit chain's.
func TestExport_DenialsOnlySendsRefusals(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	path := filepath.Join(t.TempDir(), "denials.jsonl")
	l.start("file://" + path + "?events=denials")
	l.append(2, apiv1.OutcomeSuccess)
	l.append(1, apiv1.OutcomeDenied)
	l.append(1, apiv1.OutcomeSuccess)
	l.append(1, apiv1.OutcomeDenied)
	var lines []string
	eventually(t, 10*time.Second, "2 refusals", func() bool {
		b, _ := os.ReadFile(path)
		lines = strings.Fields(string(b))
		return len(lines) >= 2
	})
	eventually(t, 10*time.Second, "no lag", func() bool { return l.e.Status(context.Background())[0].Lag == 0 })
	b, _ := os.ReadFile(path)
	lines = strings.Fields(string(b))
	for i, want := range []int64{3, 5} {
		var ev apiv1.AuditEvent
		if len(lines) != 2 || json.Unmarshal([]byte(lines[i]), &ev) != nil || ev.Seq != want || ev.Outcome != apiv1.OutcomeDenied {
			t.Fatalf("sent %v: want the refusals, seqs 3 and 5", lines)
		}
	}
}

// flowLog is flow records in memory, in id order: the shape of the flow
// log's store (its branch attaches the real one).
type flowLog struct {
	mu    sync.Mutex
	flows []siem.Flow
}

func (f *flowLog) FlowsAfter(_ context.Context, after int64, limit int) ([]siem.Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []siem.Flow
	for _, fl := range f.flows {
		if fl.ID > after && len(out) < limit {
			out = append(out, fl)
		}
	}
	return out, nil
}

func (f *flowLog) LastFlowID(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.flows) == 0 {
		return 0, nil
	}
	return f.flows[len(f.flows)-1].ID, nil
}

// A sink of events=audit,flows follows both sources, each from its own
// cursor: flow records arrive as Network Activity, audit events as API
// Activity, and pruned flows before delivery are a reported gap.
func TestExport_FlowsAndAuditEachFromTheirOwnCursor(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	flows := &flowLog{}
	for id := int64(3); id <= 5; id++ { // 1 and 2 were pruned
		flows.flows = append(flows.flows, siem.Flow{ID: id, Time: when, EnvironmentID: "env_1", Direction: "egress", Protocol: "tcp",
			SrcAddress: "198.18.0.2", DstAddress: "198.19.0.1", DstPort: 443, Verdict: siem.VerdictAllowed, Count: 1})
	}
	sinks, err := siem.ParseSinks([]string{"file://" + filepath.Join(t.TempDir(), "all.jsonl") + "?format=ocsf&events=audit,flows&from=oldest"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := sinks[0].Address
	e, err := siem.New(siem.Options{Store: l.st, Sinks: sinks, Notice: func(_ context.Context, n siem.Notice) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.notices = append(l.notices, n)
		return nil
	}, Sources: map[string]siem.Source{siem.SourceAudit: siem.AuditSource{Store: l.st}, siem.SourceFlows: siem.FlowSource{Log: flows}}})
	if err != nil {
		t.Fatal(err)
	}
	l.append(2, apiv1.OutcomeSuccess)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = e.Stop(context.Background())
		}
	}()
	classes := map[float64]int{}
	eventually(t, 10*time.Second, "2 audit events and 3 flows", func() bool {
		b, _ := os.ReadFile(path)
		clear(classes)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var o map[string]any
			if json.Unmarshal([]byte(line), &o) == nil {
				classes[o["class_uid"].(float64)]++
			}
		}
		return classes[6003] == 2 && classes[4001] == 3
	})
	if n, ok := l.notice(siem.ActionGap); !ok || !strings.Contains(n.Reason, "flows 1 to 2 (2 records)") {
		t.Errorf("gap notice %+v, %v: want flows 1 to 2 reported", n, ok)
	}
	stopped = true
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for source, want := range map[string]int64{siem.SourceAudit: 2, siem.SourceFlows: 5} {
		if pos, _, _ := l.st.GetSIEMCursor(context.Background(), sinks[0].Name, source); pos != want {
			t.Errorf("%s cursor %d, want %d", source, pos, want)
		}
	}
}

// A webhook's own query (its token) never shows in the sink's error,
// which /readyz and the logs repeat.
func TestExport_AWebhookErrorNamesTheSinkNotItsQuery(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := hold.Addr().String()
	hold.Close()
	l.start("https://" + addr + "/hook?token=receiver-token-xyz")
	l.append(1, apiv1.OutcomeSuccess)
	var st []siem.SinkStatus
	eventually(t, 10*time.Second, "an error", func() bool { st = l.e.Status(context.Background()); return st[0].Error != "" })
	if e := st[0].Error; strings.Contains(e, "receiver-token-xyz") || !strings.Contains(e, "POST https://"+addr+"/hook: ") {
		t.Errorf("error %q: want the sink's name, not its query", e)
	}
}

// The TLS client verifies: a receiver whose certificate another CA
// signed, or that speaks only TLS 1.1, gets nothing, and the sink's
// error says why.
func TestExport_SyslogTLSRefusesAnUnknownCAAndTLSBelow1_2(t *testing.T) {
	t.Parallel()
	theirs, ours := siemtest.NewPKI(t, t.TempDir()), siemtest.NewPKI(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(theirs.ServerCert, theirs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  *tls.Config
		ca   string
		want string
	}{
		{"unknown CA", &tls.Config{Certificates: []tls.Certificate{cert}}, ours.CA, "certificate signed by unknown authority"},
		{"TLS 1.1", &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS11}, theirs.CA, "protocol version"},
	} {
		l := newLab(t)
		ln, err := tls.Listen("tcp", "127.0.0.1:0", c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan int, 16)
		go serveConns(ln, func(conn net.Conn) {
			n, _ := io.Copy(io.Discard, conn)
			got <- int(n)
		})
		l.start("syslog+tls://" + ln.Addr().String() + "?from=oldest&ca=" + c.ca)
		l.append(1, apiv1.OutcomeSuccess)
		var st []siem.SinkStatus
		eventually(t, 10*time.Second, c.name+": an error", func() bool { st = l.e.Status(context.Background()); return st[0].Error != "" })
		if !strings.Contains(st[0].Error, c.want) || st[0].Lag != 1 {
			t.Errorf("%s: status %+v: want %q and the event undelivered", c.name, st[0], c.want)
		}
		l.stop()
		select {
		case n := <-got:
			if n > 0 {
				t.Errorf("%s: the receiver got %d bytes", c.name, n)
			}
		default:
		}
	}
}
