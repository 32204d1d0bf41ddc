// Package replicatest runs isolationd as several replicas on one store, the
// way an operator scales it out: each replica its own `isolationd serve`
// process (built from this tree) with its own data directory, all on one
// PostgreSQL database and one admin token, behind a round-robin TCP front
// end (FrontEnd). Tests kill replicas with SIGKILL and talk to each one
// directly or through the front end.
package replicatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
)

const module = "github.com/isolationhq/terraform-provider-isolation"

// readyTimeout bounds a replica's start: migrations included, on loopback.
const readyTimeout = 60 * time.Second

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds isolationd and the provider from this tree, once per
// test binary, and returns the directory holding both (named as `make
// build` names them, so devrun.WriteCLIConfig can install the provider).
// RemoveBinaries removes it.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "replicatest-bin-"); buildErr != nil {
			return
		}
		for name, pkg := range map[string]string{devrun.ServerBinary: module + "/cmd/isolationd", devrun.ProviderBinary: module} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// RemoveBinaries removes what Binaries built; TestMain calls it.
func RemoveBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// Options say how to start a cluster.
type Options struct {
	Replicas int      // how many processes; at least 1
	Store    string   // --store of every replica: a postgres:// DSN; "": each its own SQLite store
	Args     []string // more `isolationd serve` flags for every replica
}

// Cluster is the replicas and the front end before them.
type Cluster struct {
	Replicas []*Replica
	Front    *FrontEnd
	Token    string // the admin token every replica bootstrapped
	Store    string // Options.Store
}

// Replica is one isolationd process of a cluster.
type Replica struct {
	*devrun.Server
	Index int
	Log   string // its stdout and stderr
	t     testing.TB
}

// Start starts o.Replicas replicas, one after the other (the first runs
// the migrations and bootstraps the admin token, the others find both),
// and the front end; all are stopped when the test ends, and a failed
// test logs the end of every replica's output.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Replicas < 1 {
		t.Fatalf("replicatest: %d replicas: want at least 1", o.Replicas)
	}
	bin := filepath.Join(Binaries(t), devrun.ServerBinary)
	token, err := devrun.RandomToken()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Token: token, Store: o.Store}
	var addrs []string
	for i := range o.Replicas {
		dir := t.TempDir()
		logPath := filepath.Join(dir, "isolationd.log")
		logs, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logs.Close() })
		dataDir := filepath.Join(dir, "data")
		if err := os.Mkdir(dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"--log-level", "warn"}, o.Args...)
		if o.Store != "" {
			args = append(args, "--store", o.Store)
		}
		srv, err := devrun.Start(t.Context(), devrun.Options{Binary: bin, DataDir: dataDir, Logs: logs,
			ReadyTimeout: readyTimeout, Args: args, Token: token})
		if err != nil {
			t.Fatalf("replica %d: %v\n%s", i, err, tail(logPath))
		}
		r := &Replica{Server: srv, Index: i, Log: logPath, t: t}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("replica %d's output (%s):\n%s", i, logPath, tail(logPath))
			}
			select {
			case <-srv.Exited():
				return // killed by the test
			default:
			}
			if err := srv.Stop(30 * time.Second); err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		})
		c.Replicas = append(c.Replicas, r)
		u, _ := url.Parse(srv.URL)
		addrs = append(addrs, u.Host)
	}
	if c.Front, err = NewFrontEnd(addrs...); err != nil {
		t.Fatal(err)
	}
	// Registered last, so it runs first: connections end before replicas stop.
	t.Cleanup(func() { c.Front.Close() })
	return c
}

// Isolationd runs the isolationd binary of the cluster with args (a
// command beside serve, such as audit verify) and returns its exit status
// and output.
func Isolationd(t testing.TB, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(Binaries(t), devrun.ServerBinary), args...)
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Fatalf("isolationd %s: %v", args[0], err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// Kill kills the replica with SIGKILL, as a crash would, and reaps it.
func (r *Replica) Kill() {
	r.t.Helper()
	if err := r.Server.Kill(); err != nil {
		r.t.Fatalf("replica %d: %v", r.Index, err)
	}
}

// Client is an API client of the replica as the admin, retrying as the
// provider does.
func (r *Replica) Client() *client.Client {
	return NewClient(r.t, r.URL, r.Token)
}

// NewClient is an API client of base (a replica, or the front end) as token.
func NewClient(t testing.TB, base, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoint: base, Token: token, UserAgent: "replicatest"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Leads reports whether the replica holds the reconcile lease, from its
// isolationd_leader gauge.
func (r *Replica) Leads(ctx context.Context) (bool, error) {
	res, err := r.Do(ctx, Request{Method: http.MethodGet, Path: "/metrics"})
	if err != nil {
		return false, err
	}
	if res.Status != http.StatusOK {
		return false, fmt.Errorf("replica %d: GET /metrics: %d %s", r.Index, res.Status, res.Body)
	}
	for line := range strings.SplitSeq(string(res.Body), "\n") {
		if strings.HasPrefix(line, "isolationd_leader{") {
			return strings.HasSuffix(line, " 1"), nil
		}
	}
	return false, fmt.Errorf("replica %d: /metrics has no isolationd_leader", r.Index)
}

// leaderWait bounds how long an election may take: a lease's TTL and a
// renewal, with room to spare on a loaded machine.
const leaderWait = 30 * time.Second

// Leader waits until exactly one live replica leads, and returns it.
func (c *Cluster) Leader(t testing.TB) *Replica {
	t.Helper()
	deadline := time.Now().Add(leaderWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var leaders []*Replica
		var lastErr error
		for _, r := range c.Replicas {
			select {
			case <-r.Exited():
				continue
			default:
			}
			leads, err := r.Leads(t.Context())
			if err != nil {
				lastErr = err
			}
			if leads && !slices.Contains(leaders, r) {
				leaders = append(leaders, r)
			}
		}
		if len(leaders) == 1 {
			return leaders[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single leader within %s: %d lead (last error: %v)", leaderWait, len(leaders), lastErr)
		}
		<-tick.C
	}
}

// Request is one API call, for tests that look at statuses and headers
// the client package hides.
type Request struct {
	Method, Path string
	Body         any               // JSON-encoded when not nil
	Header       map[string]string // Authorization defaults to the admin token
}

// Response is what a Request got.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Decode unmarshals the body into v, failing the test when it cannot.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %d %s: %v", r.Status, r.Body, err)
	}
}

// requestTimeout bounds one Do: a long poll included.
const requestTimeout = 60 * time.Second

// Do sends req to the replica as the admin (unless req says otherwise)
// and reads the whole answer.
func (r *Replica) Do(ctx context.Context, req Request) (Response, error) {
	return Do(ctx, r.URL, r.Token, req)
}

// Do sends req to the API at base with token (unless req's headers set
// Authorization) and reads the whole answer.
func Do(ctx context.Context, base, token string, req Request) (Response, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var body io.Reader
	if req.Body != nil {
		b, err := json.Marshal(req.Body)
		if err != nil {
			return Response{}, err
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, base+req.Path, body)
	if err != nil {
		return Response{}, err
	}
	hr.Header.Set("Authorization", "Bearer "+token)
	if req.Body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range req.Header {
		hr.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		return Response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return Response{Status: res.StatusCode, Header: res.Header, Body: b}, err
}

// tail is the last lines of a log file, for a failed test's report.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}
