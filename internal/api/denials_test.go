package api_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/storetest"
)

// onVolume puts the harness's data directory on a fresh tmpfs of size bytes.
func onVolume(t *testing.T, size int64) (string, func(*server.Config)) {
	vol := storetest.SmallVolume(t, size)
	return vol, func(c *server.Config) { c.DataDir = vol }
}

// dataBytes is what the database takes on disk: the file and its WAL.
func dataBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, suffix := range []string{"", "-wal"} {
		fi, err := os.Stat(filepath.Join(dir, server.DatabaseFile+suffix))
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// allAudit is the whole audit trail, read from the store.
func (h *harness) allAudit() []apiv1.AuditEvent {
	h.t.Helper()
	var all []apiv1.AuditEvent
	var after int64
	for {
		evs, next, err := h.srv.Store().ListAudit(context.Background(), store.AuditQuery{AfterSeq: after, Limit: store.MaxLimit})
		must(h.t, err)
		all = append(all, evs...)
		if next == "" {
			return all
		}
		after = evs[len(evs)-1].Seq
	}
}

// flood sends n requests from workers goroutines and counts the statuses.
func flood(t *testing.T, h *harness, n, workers int, req func() *http.Request) map[int]int {
	t.Helper()
	var mu sync.Mutex
	statuses := map[int]int{}
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range jobs {
				res, err := h.client.Do(req())
				if err != nil {
					t.Error(err)
					continue
				}
				res.Body.Close()
				mu.Lock()
				statuses[res.StatusCode]++
				mu.Unlock()
			}
		})
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return statuses
}

func TestDenials_1000AnonymousRequestsWith60KBUserAgentsOnA16MBVolumeLeaveWritesWorkingAndTheTrailComplete(t *testing.T) {
	vol, mod := onVolume(t, 16<<20)
	h := newHarness(t, mod, embeddedStore, func(c *server.Config) {
		c.ReserveBytes = 4 << 20
		c.AnonRateLimit = api.RateLimit{PerSecond: 5, Burst: 20}
	})
	before := dataBytes(t, vol)
	ua := strings.Repeat("u", 60<<10)
	const anonymous = 1000
	floodStart := time.Now()
	got := flood(t, h, anonymous, 8, func() *http.Request {
		req, _ := http.NewRequest("GET", h.url+"/v1/projects", nil)
		req.Header.Set("User-Agent", ua)
		return req
	})
	floodTime := time.Since(floodStart)
	if got[401]+got[429] != anonymous || got[401] < 1 || got[429] < 1 {
		t.Fatalf("statuses %v, want %d answers of 401 then 429 once the address's budget is spent", got, anonymous)
	}
	// The admin's writes work through it all.
	for i := range 20 {
		h.project("after-" + string(rune('a'+i)))
	}

	h.flushDenials()
	evs := h.allAudit()
	byStatus := refusals(evs, "auth.denied")
	if byStatus[401]+byStatus[429] != anonymous || byStatus[401] != got[401] || byStatus[429] != got[429] {
		t.Fatalf("the trail stands for %v refusals, the server answered %v", byStatus, got)
	}
	for _, ev := range evs {
		if len(ev.Source.UserAgent) > api.MaxFieldBytes {
			t.Fatalf("event %d keeps a %d-byte user agent", ev.Seq, len(ev.Source.UserAgent))
		}
	}
	added := dataBytes(t, vol) - before
	free := storetest.Free(t, vol)
	if free < 4<<20 {
		t.Fatalf("%d bytes left on the volume after the flood", free)
	}
	t.Logf("1,000 anonymous requests in %v (%v): %d audit events in all, database +%d bytes (with 20 projects), %d bytes free of 16 MiB (4 MiB reserve held)",
		floodTime.Round(time.Millisecond), got, len(evs), added, free)
}

func TestDenials_AViewerHammeringUnderARateLimitAddsLittleToTheDatabase(t *testing.T) {
	h := newHarness(t, embeddedStore, func(c *server.Config) {
		c.RoleRateLimits = map[string]api.RateLimit{apiv1.RoleViewer: {PerSecond: 1, Burst: 1}}
	})
	p := h.project("payments")
	viewer := h.apiToken("v", apiv1.RoleViewer, p.ID)
	h.flushDenials()
	before, eventsBefore := dataBytes(t, h.dir), len(h.allAudit())
	ua := strings.Repeat("u", 60<<10)
	const requests = 3000
	start := time.Now()
	got := flood(t, h, requests, 8, func() *http.Request {
		req, _ := http.NewRequest("GET", h.url+"/v1/environments", nil)
		req.Header.Set("Authorization", "Bearer "+viewer.Secret)
		req.Header.Set("User-Agent", ua)
		return req
	})
	elapsed := time.Since(start)
	if got[429] < requests-100 {
		t.Fatalf("statuses %v: the limit did not bite", got)
	}
	h.flushDenials()
	evs := h.allAudit()[eventsBefore:]
	if n := refusals(evs, "auth.denied")[429]; n != got[429] {
		t.Fatalf("the trail stands for %d refused requests, the server refused %d", n, got[429])
	}
	added := dataBytes(t, h.dir) - before
	perDenial := float64(added) / float64(got[429])
	if perDenial > 64 {
		t.Fatalf("%d refusals added %d bytes (%.1f per refusal)", got[429], added, perDenial)
	}
	t.Logf("%d requests in %v (%v): %d audit events, database +%d bytes, %.2f bytes per refusal", requests, elapsed.Round(time.Millisecond), got, len(evs), added, perDenial)
}

func TestStore_AFullDiskAnswers507AndNotReadyUntilSpaceIsFreed(t *testing.T) {
	vol, mod := onVolume(t, 16<<20)
	h := newHarness(t, mod, embeddedStore, func(c *server.Config) { c.ReserveBytes = 2 << 20 })
	h.do("GET", "/readyz", nil).json(t, 200, nil)
	filler := storetest.Fill(t, vol)

	var full resp
	created := 0
	for ; created < 2000; created++ {
		full = h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "p" + strings.Repeat("x", 10) + strconv.Itoa(created), Description: strings.Repeat("d", 1000)})
		if full.status != 201 {
			break
		}
	}
	full.problem(t, 507, "insufficient-storage", "")
	if full.header.Get("Retry-After") == "" {
		t.Fatal("507 without Retry-After")
	}
	h.do("GET", "/readyz", nil).problem(t, 503, "unavailable", "")
	if m := h.do("GET", "/metrics", nil); !strings.Contains(string(m.body), "\nisolationd_store_writable 0\n") {
		t.Fatal("/metrics does not say the store cannot write")
	}
	// Reads go on, changes are refused at once, and refusals are still
	// audited in the space the reserve gave back.
	h.do("GET", "/v1/projects", nil).json(t, 200, nil)
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "refused"}).problem(t, 507, "insufficient-storage", "")
	r := h.do("GET", "/v1/projects", nil, "Authorization", "")
	r.problem(t, 401, "unauthorized", "")
	h.flushDenials()
	if h.refusalOf(r) == nil {
		t.Fatal("a denial on the full disk was not audited")
	}

	must(t, os.Remove(filler))
	h.do("GET", "/readyz", nil).json(t, 200, nil)
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "after"}).json(t, 201, nil)
	if m := h.do("GET", "/metrics", nil); !strings.Contains(string(m.body), "\nisolationd_store_writable 1\n") {
		t.Fatal("/metrics does not say the store writes again")
	}
	t.Logf("%d projects filled the disk; then 507 (Retry-After %s) and /readyz 503 until the filler was removed", created, full.header.Get("Retry-After"))
}

// An out-of-scope 404 and a missing-object 404 are the same answer, and
// both are audited through the same (aggregating, asynchronous) path, so
// that neither content nor time tells them apart.
func TestNotFound_OutOfScopeAndMissingAnswerAlikeAndAreBothAudited(t *testing.T) {
	h := newHarness(t)
	a, b := h.project("this"), h.project("other")
	env := h.environment(a.ID, "api", nil)
	outsider := h.apiToken("outsider", apiv1.RoleEditor, b.ID)
	// Of the same length, so that even Content-Length cannot differ.
	last := "a"
	if strings.HasSuffix(env.ID, "a") {
		last = "b"
	}
	missingID := env.ID[:len(env.ID)-1] + last

	get := func(id string) resp {
		return h.do("GET", "/v1/environments/"+id, nil, bearer(outsider.Secret)...)
	}
	outOfScope, missing := get(env.ID), get(missingID)
	shape := func(r resp, id string) (apiv1.Problem, http.Header) {
		p := r.problem(t, 404, "not-found", "")
		p.RequestID, p.Detail, p.Instance = "", strings.ReplaceAll(p.Detail, id, "ID"), strings.ReplaceAll(p.Instance, id, "ID")
		hdr := r.header.Clone()
		hdr.Del("Date")
		hdr.Del(apiv1.HeaderRequestID)
		return p, hdr
	}
	p1, h1 := shape(outOfScope, env.ID)
	p2, h2 := shape(missing, missingID)
	if p1.Detail != p2.Detail || p1.Type != p2.Type || p1.Title != p2.Title || p1.Instance != p2.Instance || len(p1.Errors) != len(p2.Errors) {
		t.Fatalf("the answers differ:\nout of scope %+v\nmissing      %+v", p1, p2)
	}
	if !equalHeaders(h1, h2) {
		t.Fatalf("the headers differ:\nout of scope %v\nmissing      %v", h1, h2)
	}
	if len(outOfScope.body) != len(missing.body) {
		t.Fatalf("bodies of %d and %d bytes", len(outOfScope.body), len(missing.body))
	}

	// Latency of each, alternating, for the report: both do one store read
	// and hand an event to the aggregator.
	const rounds = 200
	var tOut, tMissing []time.Duration
	for range rounds {
		start := time.Now()
		get(env.ID)
		tOut = append(tOut, time.Since(start))
		start = time.Now()
		get(missingID)
		tMissing = append(tMissing, time.Since(start))
	}

	h.flushDenials()
	if ev := h.refusalOf(outOfScope); ev == nil || ev.Action != "auth.denied" || ev.StatusCode != 404 || ev.Actor.TokenID != outsider.ID {
		t.Fatalf("the out-of-scope 404 is audited as %+v", ev)
	}
	if ev := h.refusalOf(missing); ev == nil || ev.Action != "request.not_found" || ev.StatusCode != 404 || ev.Actor.TokenID != outsider.ID {
		t.Fatalf("the missing-object 404 is audited as %+v", ev)
	}
	evs := h.allAudit()
	if n, m := refusals(evs, "auth.denied")[404], refusals(evs, "request.not_found")[404]; n != rounds+1 || m != rounds+1 {
		t.Fatalf("the trail stands for %d out-of-scope and %d missing-object 404s, want %d each", n, m, rounds+1)
	}
	t.Logf("median latency over %d each: out of scope %v, missing %v", rounds, median(tOut), median(tMissing))
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
