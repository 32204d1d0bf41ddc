package server_test

// isolationd with the netns driver, proven through its API: a real server
// on loopback, a real SQLite file, environments and policies made over
// HTTP, and real packets between the namespaces the API reports.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/logbuf"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc/inittest"
)

// The address plan: environments in 198.18.0.0/16 and fd00:198:18::/96,
// the internet in 198.19.0.0/16 and fd00:198:19::/64. Every server has its
// own prefix, so its own router namespace: servers never see each other's
// addresses.
const (
	testPool  = "198.18.0.0/16"
	testPool6 = "fd00:198:18::/96"
)

var (
	inetNets  = []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16"), netip.MustParsePrefix("fd00:198:19::/64")}
	inetHosts = []netip.Addr{
		netip.MustParseAddr("198.19.0.10"),
		netip.MustParseAddr("198.19.0.200"),
		netip.MustParseAddr("198.19.1.10"),
		netip.MustParseAddr("198.19.1.77"),
		netip.MustParseAddr("198.19.200.9"),
		netip.MustParseAddr("fd00:198:19::10"),
		netip.MustParseAddr("fd00:198:19::8:1"),
	}
	probePorts = []int{22, 80, 443, 1000, 1005, 1010, 5432, 8080}
)

// denyTimeout is how long a probe waits before calling its packet dropped.
const denyTimeout = 250 * time.Millisecond

var (
	supportOnce sync.Once
	skipReason  string
)

// needNamespaces skips tb where the kernel refuses to create network
// namespaces (no root, or a sandbox without CAP_SYS_ADMIN).
func needNamespaces(tb testing.TB) {
	tb.Helper()
	supportOnce.Do(func() { skipReason = netnstest.Supported() })
	if skipReason != "" {
		tb.Skip(skipReason)
	}
}

// uniquePrefix is a netns prefix no other test run uses.
func uniquePrefix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "s" + string(b)
}

// apiLab is a running isolationd with a project, and a client for it.
type apiLab struct {
	tb      testing.TB
	ctx     context.Context
	cfg     server.Config
	srv     *server.Server
	c       *client.Client
	http    *http.Client // for the long polls and watches the client does not make
	project apiv1.Project
}

// labConfig is a server configuration for driver ("netns" or "simulate")
// in a fresh data directory; netns gets its own prefix and test pools.
func labConfig(tb testing.TB, driver string) server.Config {
	cfg := server.Config{
		Listen: "127.0.0.1:0", DataDir: tb.TempDir(), BootstrapToken: "isot_netns-api-test-token-0123456789",
		Driver: driver, AddressPool: testPool,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	if driver == netns.DriverName {
		needNamespaces(tb)
		cfg.NetnsPrefix, cfg.AddressPool6 = uniquePrefix(), testPool6
		cfg.InitBinary = inittest.Binary(tb)
		// The containers' mapped root reaches its root filesystem through
		// the data directory's parents: the test's directory must be
		// traversable for the user namespace to be used.
		if err := os.Chmod(filepath.Dir(cfg.DataDir), 0o711); err != nil {
			tb.Fatal(err)
		}
	}
	return cfg
}

// startLab starts a server with cfg and a project in it. When the test
// ends the server shuts down and, for netns, every kernel object with its
// prefix is purged.
func startLab(tb testing.TB, cfg server.Config) *apiLab {
	tb.Helper()
	// Enough idle connections for a hundred long polls at once.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 256
	l := &apiLab{tb: tb, ctx: context.Background(), cfg: cfg, http: &http.Client{Transport: transport}}
	if cfg.Driver == netns.DriverName {
		tb.Cleanup(func() { purgePrefix(tb, cfg) })
	}
	l.start()
	tb.Cleanup(func() { l.shutdown() })
	p, err := l.c.Projects().Create(l.ctx, apiv1.ProjectCreate{Name: "netns-api"})
	if err != nil {
		tb.Fatal(err)
	}
	l.project = *p
	return l
}

func (l *apiLab) start() {
	l.tb.Helper()
	srv, err := server.Start(l.ctx, l.cfg)
	if err != nil {
		l.tb.Fatal(err)
	}
	l.srv = srv
	if l.c, err = client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()}); err != nil {
		l.tb.Fatal(err)
	}
}

// shutdown stops the server; kernel objects stay, as they do for a
// restart. Shutting down twice does nothing.
func (l *apiLab) shutdown() {
	if l.srv == nil {
		return
	}
	if err := l.srv.Shutdown(l.ctx); err != nil {
		l.tb.Errorf("shutdown: %v", err)
	}
	l.srv = nil
}

// purgePrefix removes every kernel object cfg's netns prefix names, with
// a driver of its own (the server's is closed by then).
func purgePrefix(tb testing.TB, cfg server.Config) {
	if err := server.Cleanup(context.Background(), cfg); err != nil {
		tb.Errorf("purge %s: %v", cfg.NetnsPrefix, err)
	}
}

// driver is the server's netns driver, for what only the host can see:
// the router namespace, IPv6 companions, rendered rulesets.
func (l *apiLab) driver() *netns.Driver {
	l.tb.Helper()
	d, ok := l.srv.Driver().(*netns.Driver)
	if !ok {
		l.tb.Fatalf("the server runs driver %s, not netns", l.srv.Driver().Name())
	}
	return d
}

// createEnv creates an environment and returns it once it is ready.
func (l *apiLab) createEnv(name string, labels map[string]string) apiv1.Environment {
	l.tb.Helper()
	e, err := l.create(name, labels)
	if err != nil {
		l.tb.Fatal(err)
	}
	return e
}

// create creates an environment and waits (wait_for=ready) until it is ready.
func (l *apiLab) create(name string, labels map[string]string) (apiv1.Environment, error) {
	return l.createReady(apiv1.EnvironmentCreate{Name: name, Labels: labels})
}

// createReady creates the environment c describes in the lab's project
// and waits (wait_for=ready) until it is ready.
func (l *apiLab) createReady(c apiv1.EnvironmentCreate) (apiv1.Environment, error) {
	c.ProjectID = l.project.ID
	e, err := l.c.Environments().Create(l.ctx, c)
	if err != nil {
		return apiv1.Environment{}, err
	}
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	if e, err = l.c.Environments().WaitFor(ctx, e.ID, apiv1.StateReady); err != nil {
		return apiv1.Environment{}, err
	}
	return *e, nil
}

// createMany creates n environments, eight at a time, labelled by labels,
// and returns them once ready.
func (l *apiLab) createMany(n int, labels func(i int) map[string]string) []apiv1.Environment {
	l.tb.Helper()
	out := make([]apiv1.Environment, n)
	eightAtATime(l.tb, n, func(i int) (err error) {
		out[i], err = l.create(fmt.Sprintf("env-%d", i), labels(i))
		return err
	})
	return out
}

// deleteAll deletes envs, eight at a time, and returns once they are gone.
func (l *apiLab) deleteAll(envs []apiv1.Environment) {
	l.tb.Helper()
	eightAtATime(l.tb, len(envs), func(i int) error {
		if err := l.c.Environments().Delete(l.ctx, envs[i].ID, ""); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
		defer cancel()
		return l.c.Environments().WaitDeleted(ctx, envs[i].ID)
	})
}

// createPolicy creates a policy in the lab's project.
func (l *apiLab) createPolicy(spec apiv1.PolicySpec) apiv1.Policy {
	l.tb.Helper()
	p, err := l.c.Policies().Create(l.ctx, apiv1.PolicyCreate{ProjectID: l.project.ID, PolicySpec: spec})
	if err != nil {
		l.tb.Fatalf("create policy %s: %v", js(spec), err)
	}
	return *p
}

// waitEnforced long-polls (wait_for=enforced) until environment id has
// applied its current rules, and returns it.
func (l *apiLab) waitEnforced(ctx context.Context, id string) (apiv1.Environment, error) {
	q := url.Values{"wait_for": {"enforced"}, "timeout": {"30s"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.srv.URL()+"/v1/environments/"+url.PathEscape(id)+"?"+q.Encode(), nil)
	if err != nil {
		return apiv1.Environment{}, err
	}
	req.Header.Set("Authorization", "Bearer "+l.srv.AdminToken())
	resp, err := l.http.Do(req)
	if err != nil {
		return apiv1.Environment{}, err
	}
	defer resp.Body.Close()
	var e apiv1.Environment
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return e, fmt.Errorf("wait for %s to be enforced: %s: %s", id, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		return e, err
	}
	if !e.Enforcement.Enforced || e.Enforcement.ObservedGeneration != e.Enforcement.Generation {
		return e, fmt.Errorf("environment %s not enforced after the wait: state %s, enforcement %+v", id, e.State, e.Enforcement)
	}
	return e, nil
}

// waitAllEnforced waits, with one long poll each at once, until every
// environment in ids has applied its current rules; it returns them in
// the order of ids.
func (l *apiLab) waitAllEnforced(ctx context.Context, ids []string) ([]apiv1.Environment, error) {
	out := make([]apiv1.Environment, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { out[i], errs[i] = l.waitEnforced(ctx, id) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// mustEnforce is waitAllEnforced failing the test, also checking every
// environment is ready.
func (l *apiLab) mustEnforce(envs []apiv1.Environment) []apiv1.Environment {
	l.tb.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	got, err := l.waitAllEnforced(ctx, ids(envs))
	if err != nil {
		l.tb.Fatal(err)
	}
	for _, e := range got {
		if e.State != apiv1.StateReady {
			l.tb.Fatalf("environment %s is enforced but %s", e.ID, e.State)
		}
	}
	return got
}

func ids(envs []apiv1.Environment) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

// oracle is the check endpoint, POST /v1/environments/{id}/check.
func (l *apiLab) oracle(envID string, req apiv1.CheckRequest) (bool, error) {
	res, err := l.c.Environments().Check(l.ctx, envID, req)
	if err != nil {
		return false, err
	}
	return res.Allowed, nil
}

// ends are the probe endpoints of an environment as the API reports it:
// its namespace, its address, and the IPv6 companion the driver gives it.
func (l *apiLab) ends(e apiv1.Environment) []netnstest.Endpoint {
	l.tb.Helper()
	if e.Enforcement.Namespace == "" || e.Enforcement.Address == "" {
		l.tb.Fatalf("environment %s reports no namespace or address: %+v", e.ID, e.Enforcement)
	}
	var out []netnstest.Endpoint
	for _, a := range l.driver().Addresses(netip.MustParseAddr(e.Enforcement.Address)) {
		out = append(out, netnstest.Endpoint{Env: e.ID, Namespace: e.Enforcement.Namespace, Addr: a})
	}
	return out
}

// internet joins a namespace answering on inetHosts to the server's
// router namespace.
func (l *apiLab) internet() *netnstest.Internet {
	l.tb.Helper()
	inet := netnstest.NewInternet(l.tb, netnstest.InternetConfig{
		Namespace: l.cfg.NetnsPrefix + "-internet",
		Router:    l.driver().RouterNamespace(),
		Uplink:    l.cfg.NetnsPrefix + "up",
		Nets:      inetNets,
		Hosts:     inetHosts,
	})
	netnstest.Serve(l.tb, inet.Namespace, probePorts)
	return inet
}

// watchUntil follows GET /v1/environments/{id}/watch until cond holds for
// the environment it streams, and returns that environment.
func (l *apiLab) watchUntil(id, what string, cond func(apiv1.Environment) bool) apiv1.Environment {
	l.tb.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	var last apiv1.Environment
	for e := range l.watchAll(ctx, id) {
		if last = e; cond(e) {
			return e
		}
	}
	l.tb.Fatalf("environment %s: not %s within 30s; last seen: state %s, enforcement %+v", id, what, last.State, last.Enforcement)
	return last
}

func js(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func tcpPort(p int) apiv1.Port { return apiv1.Port{Protocol: apiv1.ProtocolTCP, Port: &p} }

func selector(labels map[string]string) apiv1.Selector { return apiv1.Selector{MatchLabels: labels} }

// A policy made through the API opens a real TCP connection between two
// environments, and deleting it closes it again.
func TestNetnsAPI_PolicyOpensAndClosesARealConnection(t *testing.T) {
	l := startLab(t, labConfig(t, netns.DriverName))
	api := l.createEnv("api", map[string]string{"app": "api"})
	db := l.createEnv("db", map[string]string{"app": "db"})
	netnstest.Serve(t, db.Enforcement.Namespace, []int{5432})
	conn := netnstest.Probe{From: l.ends(api)[0], To: l.ends(db)[0], Protocol: apiv1.ProtocolTCP, Port: 5432}
	// A denied connection is given denyTimeout, an allowed one patience.
	connect := func(timeout time.Duration) bool {
		t.Helper()
		ok, err := netnstest.Send(l.ctx, conn, timeout)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if connect(denyTimeout) {
		t.Fatalf("%s connected with no policy: environments must be isolated by default", conn)
	}

	pol := l.createPolicy(apiv1.PolicySpec{
		Name: "api-to-db", EnvironmentSelector: selector(map[string]string{}), PolicyTypes: []string{apiv1.Ingress, apiv1.Egress},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"app": "api"}}}}, Ports: []apiv1.Port{tcpPort(5432)}}},
		Egress:  []apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"app": "db"}}}}, Ports: []apiv1.Port{tcpPort(5432)}}},
	})
	l.mustEnforce([]apiv1.Environment{api, db})
	if !connect(2 * time.Second) {
		t.Fatalf("%s did not connect with policy %s enforced", conn, pol.ID)
	}
	back := netnstest.Probe{From: l.ends(db)[0], To: l.ends(api)[0], Protocol: apiv1.ProtocolTCP, Port: 5432}
	netnstest.Serve(t, api.Enforcement.Namespace, []int{5432})
	if ok, err := netnstest.Send(l.ctx, back, denyTimeout); err != nil || ok {
		t.Fatalf("%s: connected=%v err=%v; the policy allows api to db only", back, ok, err)
	}

	if err := l.c.Policies().Delete(l.ctx, pol.ID, ""); err != nil {
		t.Fatal(err)
	}
	l.mustEnforce([]apiv1.Environment{api, db})
	if connect(denyTimeout) {
		t.Fatalf("%s still connects after policy %s was deleted and the deletion enforced", conn, pol.ID)
	}
}

// An environment whose address lies outside the pool after a restart with
// another pool does not keep isolationd from starting: it reports itself
// not enforced, with the reason, while new environments are provisioned
// from the new pool.
func TestNetnsAPI_RestartWithAnotherPoolServesAndReportsTheStrandedEnvironment(t *testing.T) {
	cfg := labConfig(t, netns.DriverName)
	cfg.AddressPool, cfg.AddressPool6 = "198.18.0.0/24", ""
	l := startLab(t, cfg)
	stranded := l.createEnv("stranded", nil)
	l.shutdown()

	var logs logbuf.Buffer
	l.cfg.AddressPool = "198.18.4.0/24"
	l.cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l.start() // fails the test if the server refuses to start

	got := l.watchUntil(stranded.ID, "reported not enforced", func(e apiv1.Environment) bool {
		return !e.Enforcement.Enforced && e.Enforcement.Message != ""
	})
	if got.State != apiv1.StateReady || !strings.Contains(got.Enforcement.Message, "outside the address pool 198.18.4.0/24") {
		t.Fatalf("stranded environment: state %s, enforcement %+v; want ready, not enforced, saying its address is outside the pool", got.State, got.Enforcement)
	}
	fresh := l.createEnv("fresh", nil)
	if a := netip.MustParseAddr(fresh.Enforcement.Address); !netip.MustParsePrefix("198.18.4.0/24").Contains(a) || !fresh.Enforcement.Enforced {
		t.Fatalf("new environment after the restart: %+v; want enforced with an address from the new pool", fresh.Enforcement)
	}
	if !strings.Contains(logs.String(), "driver sync failed") || !strings.Contains(logs.String(), stranded.ID) {
		t.Fatalf("the start did not log the sync failure with the environment's id:\n%s", logs.String())
	}
}

// eightAtATime runs fn for 0..n-1, eight at a time, and fails the test on
// the first error.
func eightAtATime(t testing.TB, n int, fn func(i int) error) {
	t.Helper()
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
}
