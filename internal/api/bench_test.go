package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/ipam"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// benchServer starts isolationd for a benchmark (no OpenAPI validation on
// the hot path: the benchmark client is a plain http.Client).
func benchServer(b *testing.B, dir string) *server.Server {
	b.Helper()
	srv, err := server.Start(context.Background(), server.Config{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			b.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
}

// hammer sends n GETs of url from `workers` goroutines and returns how
// long they took.
func hammer(b *testing.B, c *http.Client, url, token string, n, workers int) time.Duration {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", url, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			for next.Add(1) <= int64(n) {
				if !roundTrip(b, c, req, 200) {
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// roundTrip sends req and drains the answer, reporting on b (and
// returning false) when it fails or its status is not want.
func roundTrip(b *testing.B, c *http.Client, req *http.Request, want int) bool {
	res, err := c.Do(req)
	if err != nil {
		b.Error(err)
		return false
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil {
		b.Error(err)
		return false
	}
	if res.StatusCode != want {
		b.Errorf("status %d", res.StatusCode)
		return false
	}
	return true
}

// BenchmarkGetEnvironment compares GET /v1/environments/{id} (auth,
// middleware, authorization, store read) with a bare net/http handler
// serving the same JSON bytes on another loopback listener. Both are
// measured by the same client in the same run, in alternating rounds (the
// order swapping each round), so that load from elsewhere on the machine
// falls on both alike. b.N is the number of GETs of each server; use a
// fixed count such as -benchtime 20000x. Target: ratio >= 0.5.
func BenchmarkGetEnvironment(b *testing.B) {
	srv := benchServer(b, b.TempDir())
	c := benchClient()
	post := func(path, body string) []byte {
		req, _ := http.NewRequest("POST", srv.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		req.Header.Set("Content-Type", "application/json")
		res, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return out
	}
	prj := jsonField(post("/v1/projects", `{"name":"bench"}`), "id")
	env := jsonField(post("/v1/environments", `{"project_id":"`+prj+`","name":"api","labels":{"app":"api"}}`), "id")
	body := get(b, c, srv.URL()+"/v1/environments/"+env+"?wait_for=ready&timeout=10s", srv.AdminToken())
	url := srv.URL() + "/v1/environments/" + env
	if again := get(b, c, url, srv.AdminToken()); string(again) != string(body) {
		b.Fatalf("GET changed between reads:\n%s\n%s", body, again)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		// A failed write is the client's failure, which it reports.
		_, _ = w.Write(body)
	})}
	go func() {
		if err := bare.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			b.Errorf("bare server: %v", err)
		}
	}()
	defer bare.Close()
	bareURL := "http://" + ln.Addr().String() + "/v1/environments/" + env

	const workers, rounds = 8, 10
	per := max(b.N/rounds, 1)
	// Warm both: connections, caches, the scheduler.
	hammer(b, c, url, srv.AdminToken(), min(per, 500), workers)
	hammer(b, c, bareURL, "", min(per, 500), workers)
	b.ResetTimer()
	var apiTime, bareTime time.Duration
	for i := range rounds {
		if i%2 == 0 {
			apiTime += hammer(b, c, url, srv.AdminToken(), per, workers)
			bareTime += hammer(b, c, bareURL, "", per, workers)
		} else {
			bareTime += hammer(b, c, bareURL, "", per, workers)
			apiTime += hammer(b, c, url, srv.AdminToken(), per, workers)
		}
	}
	b.StopTimer()
	apiRate := float64(per*rounds) / apiTime.Seconds()
	bareRate := float64(per*rounds) / bareTime.Seconds()
	b.ReportMetric(apiRate, "api_req/s")
	b.ReportMetric(bareRate, "bare_req/s")
	b.ReportMetric(apiRate/bareRate, "ratio")
}

// BenchmarkDurableCreate measures POST /v1/environments: each create is
// its own transaction with its audit event and idempotency record, durable
// (synchronous=FULL, group commit), while the reconciler provisions them
// (its own audited writes compete for the same writer). b.N is the number
// of creates; a figure is meaningful from a few thousand, so use
// -benchtime 6000x. Target: >= 2,000 creates/s. The ceiling, raw SQLite
// inserts with the same durability, is internal/store's BenchmarkRawInsert,
// run beside this one by make bench-api; commits/s and updates/commit show
// how much group commit shared.
func BenchmarkDurableCreate(b *testing.B) {
	srv := benchServer(b, b.TempDir())
	c := benchClient()
	prjReq, _ := http.NewRequest("POST", srv.URL()+"/v1/projects", strings.NewReader(`{"name":"bench"}`))
	prjReq.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	prjReq.Header.Set("Content-Type", "application/json")
	res, err := c.Do(prjReq)
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	prj := jsonField(out, "id")

	const workers = 32
	st := srv.Store().(*store.SQLite)
	before := st.WriteStats()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				body := fmt.Sprintf(`{"project_id":%q,"name":"e%d"}`, prj, i)
				req, _ := http.NewRequest("POST", srv.URL()+"/v1/environments", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", "k"+strconv.FormatInt(i, 10))
				if !roundTrip(b, c, req, 202) {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	after := st.WriteStats()
	commits := after.Commits - before.Commits
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "creates/s")
	b.ReportMetric(float64(commits)/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(after.Updates-before.Updates)/float64(max(commits, 1)), "updates/commit")
}

// BenchmarkList10k measures a list page with 10,000 environments in the
// store, and the RSS of the process serving them (server and benchmark
// client together, so an upper bound). Targets: < 10 ms a page, < 150 MB.
func BenchmarkList10k(b *testing.B) {
	const total = 10000
	dir := b.TempDir()
	seed(b, dir, total)
	srv := benchServer(b, dir)
	c := benchClient()
	base := srv.URL() + "/v1/environments?limit=100"
	// The last page needs every cursor before it; measure a page deep in
	// the list too.
	mid := get(b, c, srv.URL()+"/v1/environments?limit=1000", srv.AdminToken())
	cursor := jsonField(mid, "next_cursor")
	urls := []string{base, base + "&cursor=" + cursor, base + "&label=tier=dev"}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		get(b, c, urls[i%len(urls)], srv.AdminToken())
	}
	per := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/page")
	b.ReportMetric(rssMB(b), "rss_MB")
}

// seed writes n ready environments straight into the store, in batches.
func seed(b *testing.B, dir string, n int) {
	b.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, dir+"/"+server.DatabaseFile)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	prj := apiv1.Project{ID: control.NewID("prj_"), Name: "bench", Labels: map[string]string{}, Generation: 1, ETag: `"1"`, CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	must2(b, st.Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, prj) }))
	ipam, _ := ipam.New(apiv1.DefaultAddressPool, ipam.DefaultQuarantine)
	for i := 0; i < n; i += 1000 {
		must2(b, st.Update(ctx, func(tx store.Tx) error {
			for j := i; j < min(i+1000, n); j++ {
				id := control.NewID("env_")
				tier := []string{"dev", "prod"}[j%2]
				now := time.Now().UTC()
				a, err := ipam.Allocate(ctx, tx, apiv1.Environment{ID: id, ProjectID: prj.ID}, now)
				if err != nil {
					return err
				}
				addr := a.String()
				e := apiv1.Environment{
					ID: id, ProjectID: prj.ID, Name: fmt.Sprintf("env-%05d", j), Labels: map[string]string{"tier": tier, "team": "payments"},
					Resources: apiv1.Resources{CPUMillis: 1000, MemoryMB: 1024, DiskGB: 10}, State: apiv1.StateReady,
					Generation: 1, ETag: `"1"`, CreatedAt: now, UpdatedAt: now,
					Enforcement: apiv1.Enforcement{Driver: "simulate", Generation: 1, ObservedGeneration: 1, Enforced: true, Address: addr},
				}
				if err := tx.CreateEnvironment(ctx, e); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

func must2(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

func get(b *testing.B, c *http.Client, url, token string) []byte {
	b.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		b.Fatalf("GET %s: %d %s", url, res.StatusCode, out)
	}
	return out
}

func jsonField(body []byte, field string) string {
	s := string(body)
	i := strings.Index(s, `"`+field+`":"`)
	if i < 0 {
		return ""
	}
	s = s[i+len(field)+4:]
	return s[:strings.IndexByte(s, '"')]
}

// rssMB reads this process's resident set size.
func rssMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
