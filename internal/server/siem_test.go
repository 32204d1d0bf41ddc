package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem/siemtest"
)

// siemLab is a server exporting to the sinks of urls.
func siemLab(t *testing.T, urls ...string) *apiLab {
	t.Helper()
	cfg := labConfig(t, "simulate")
	sinks, err := siem.ParseSinks(urls, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SIEM = sinks
	return startLab(t, cfg)
}

// writeProjects makes n audit events through the API, one project each.
func (l *apiLab) writeProjects(prefix string, n int) {
	l.tb.Helper()
	for i := range n {
		if _, err := l.c.Projects().Create(l.ctx, apiv1.ProjectCreate{Name: fmt.Sprintf("%s-%d", prefix, i)}); err != nil {
			l.tb.Fatal(err)
		}
	}
}

// headSeq is the audit chain's newest seq.
func (l *apiLab) headSeq() int64 {
	l.tb.Helper()
	ev, err := l.srv.Store().LastAudit(l.ctx)
	if err != nil {
		l.tb.Fatal(err)
	}
	return ev.Seq
}

// awaitSeqs polls got until it has every seq up to head, for at most d,
// and returns what it had last.
func awaitSeqs(t *testing.T, d time.Duration, head int64, got func() map[int64][]string) map[int64][]string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		seen := got()
		missing := int64(0)
		for s := int64(1); s <= head; s++ {
			if len(seen[s]) == 0 {
				missing++
			}
		}
		if missing == 0 {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d of audit seqs 1 to %d have not arrived", d, missing, head)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var syslogSeq = regexp.MustCompile(` seq="(\d+)"`)

// rsyslogSeqs parses every line rsyslog wrote as RFC 5424, by seq, each
// seq with the ids of its copies; it fails the test on a line that does
// not parse or a seq that arrives before one it follows.
func rsyslogSeqs(t *testing.T, r *siemtest.Rsyslog) map[int64][]string {
	t.Helper()
	p := rfc5424.NewParser()
	seen := map[int64][]string{}
	for _, line := range r.Lines(t) {
		m, err := p.Parse([]byte(line))
		if err != nil {
			t.Fatalf("rsyslog received a message that is not RFC 5424: %v\n%s", err, line)
		}
		sd := *m.(*rfc5424.SyslogMessage).StructuredData
		params := sd["audit@"+siem.PEN]
		seq, err := strconv.ParseInt(params["seq"], 10, 64)
		if err != nil {
			t.Fatalf("a message without a seq: %s", line)
		}
		seen[seq] = append(seen[seq], params["id"])
	}
	return seen
}

// checkOnceOrMore checks that each seq arrived with one id whatever its
// copies, and that the copies came in order: every message's seq is at
// most one past the highest seen before it (a resend starts over, never
// skips).
func checkOnceOrMore(t *testing.T, seen map[int64][]string) (dups int) {
	t.Helper()
	for seq, ids := range seen {
		for _, id := range ids {
			if id != ids[0] || id == "" {
				t.Errorf("seq %d arrived with ids %v", seq, ids)
			}
		}
		dups += len(ids) - 1
	}
	return dups
}

func checkInOrder(t *testing.T, r *siemtest.Rsyslog, from int64) {
	t.Helper()
	high := from - 1
	for _, line := range r.Lines(t) {
		m := syslogSeq.FindStringSubmatch(line)
		seq, _ := strconv.ParseInt(m[1], 10, 64)
		if seq > high+1 {
			t.Fatalf("seq %d arrived before seq %d", seq, high+1)
		}
		high = max(high, seq)
	}
}

// A real rsyslog, over TLS with a client certificate and a CA made here,
// killed mid-stream while the API keeps writing and then started again:
// every audit event arrives, in order, and each duplicate carries the id
// of the first copy.
func TestSIEM_RsyslogOverTLSKilledMidStreamGetsEveryEventInOrder(t *testing.T) {
	if why := siemtest.RsyslogMissing(); why != "" {
		t.Skip(why)
	}
	pki := siemtest.NewPKI(t, t.TempDir())
	rs := siemtest.StartRsyslog(t, pki)
	l := siemLab(t, fmt.Sprintf("syslog+tls://%s?format=ocsf&ca=%s&cert=%s&key=%s&settle=1s&from=oldest",
		rs.Addr, pki.CA, pki.ClientCert, pki.ClientKey))
	l.writeProjects("before", 40)
	awaitSeqs(t, 20*time.Second, l.headSeq(), func() map[int64][]string { return rsyslogSeqs(t, rs) })

	// Killed while writes go on: what it had not written is lost with it.
	l.writeProjects("burst", 30)
	rs.Kill(t)
	l.writeProjects("down", 40)
	rs.Start(t)
	l.writeProjects("after", 20)
	head := l.headSeq()
	seen := awaitSeqs(t, 30*time.Second, head, func() map[int64][]string { return rsyslogSeqs(t, rs) })
	dups := checkOnceOrMore(t, seen)
	checkInOrder(t, rs, 1)
	t.Logf("%d events, %d duplicates after the kill", head, dups)
}

// webhookSeqs are w's records by seq, and their order; see BySeq.
func webhookSeqs(t *testing.T, w *siemtest.Webhook) (map[int64][]string, []int64) {
	t.Helper()
	ids, order, err := w.BySeq()
	if err != nil {
		t.Fatal(err)
	}
	return ids, order
}

// A webhook answering 500, then 429, for a while, while the API keeps
// writing: the sink lags, /readyz and isolationd_siem_lag_events show it,
// and once the webhook accepts, every event arrives in order with its id.
func TestSIEM_WebhookAnswering500Then429GetsEveryEventInOrder(t *testing.T) {
	pki := siemtest.NewPKI(t, t.TempDir())
	const secret = "webhook-secret-0123456789"
	w := siemtest.StartWebhook(t, pki, siemtest.WebhookOptions{Fails: 4, Throttles: 2, Secret: secret})
	l := siemLab(t, fmt.Sprintf("%s/hook?format=ocsf&from=oldest&secret=%s&ca=%s&cert=%s&key=%s&lag_alert=200ms",
		w.URL, secret, pki.CA, pki.ClientCert, pki.ClientKey))
	l.writeProjects("refused", 30)

	// While refused: behind, on /readyz and as a metric.
	ready := l.readySIEM()
	if len(ready) != 1 || ready[0].Name != w.URL+"/hook" || ready[0].Lag == 0 {
		t.Errorf("/readyz siem %+v: want the sink, behind", ready)
	}
	if strings.Contains(fmt.Sprint(ready), secret) {
		t.Error("/readyz shows the webhook secret")
	}
	req, _ := http.NewRequest("GET", l.srv.URL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+l.srv.AdminToken())
	res, err := l.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !regexp.MustCompile(`isolationd_siem_lag_events\{sink="` + regexp.QuoteMeta(w.URL) + `/hook"\} [1-9]`).Match(metrics) {
		t.Errorf("/metrics has no lag for the sink:\n%s", grepLines(string(metrics), "isolationd_siem"))
	}

	l.writeProjects("accepted", 20)
	head := l.headSeq()
	seen := awaitSeqs(t, 30*time.Second, head, func() map[int64][]string { s, _ := webhookSeqs(t, w); return s })
	checkOnceOrMore(t, seen)
	_, order := webhookSeqs(t, w)
	for i := 1; i < len(order); i++ {
		if order[i] > order[i-1]+1 || order[i] < order[i-1] && order[i] != 1 {
			t.Fatalf("accepted out of order: %v", order)
		}
	}
	if n := w.BadSignatures(); n > 0 {
		t.Errorf("%d batches badly signed", n)
	}
	if wait := w.RetryWait(); wait < 900*time.Millisecond {
		t.Errorf("retried %s after a 429 asking for 1s", wait)
	}
	// It lagged past lag_alert: audited, and it is an event the sink got.
	events, err := l.c.Audit().List(l.ctx, client.ListOptions{Filters: url.Values{"action": {siem.ActionLagging}}})
	if err != nil || len(events) == 0 {
		t.Errorf("no %s audit event: %v", siem.ActionLagging, err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// A webhook that takes its time over every batch holds up no API write:
// the writes complete as fast as without it while the sink falls behind.
func TestSIEM_AHangingWebhookHoldsUpNoAPIWrite(t *testing.T) {
	pki := siemtest.NewPKI(t, t.TempDir())
	w := siemtest.StartWebhook(t, pki, siemtest.WebhookOptions{Delay: 20 * time.Second})
	l := siemLab(t, fmt.Sprintf("%s/hook?ca=%s&cert=%s&key=%s", w.URL, pki.CA, pki.ClientCert, pki.ClientKey))
	start := time.Now()
	l.writeProjects("hung", 100)
	took := time.Since(start)
	if took > 10*time.Second {
		t.Fatalf("100 writes took %s beside a webhook that answers after 20s", took)
	}
	st := l.readySIEM()
	if len(st) != 1 || st[0].Lag < 100 {
		t.Errorf("status %+v: want the sink 100 or more behind", st)
	}
	t.Logf("100 writes in %s; sink %d behind", took, st[0].Lag)
}

// readySIEM is the siem detail of /readyz.
func (l *apiLab) readySIEM() []siem.SinkStatus {
	l.tb.Helper()
	var ready struct {
		SIEM []siem.SinkStatus `json:"siem"`
	}
	res, err := l.http.Get(l.srv.URL() + "/readyz")
	if err != nil {
		l.tb.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&ready); err != nil {
		l.tb.Fatal(err)
	}
	return ready.SIEM
}
