// Package server assembles isolationd: the store, the application layer
// (control) over it, the enforcement driver, the API and the reconciler
// that call control, and the HTTP server, started and stopped in the
// right order. It subscribes, once, everything that learns of changes to
// the store's commit announcements: the JSON-lines audit trail, the API
// (its wait/watch hub and token cache) and the reconciler's queue. It is
// the only package that imports reconcile.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/simulate"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/ipam"
	"github.com/isolationhq/terraform-provider-isolation/internal/reconcile"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/ui"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// Defaults.
const (
	DatabaseFile   = "isolationd.db"
	AdminTokenFile = "admin.token"
	// ImagesDir is the image store's directory in the data directory.
	ImagesDir = "images"
	// BootstrapTokenName names the admin token the server keeps for the
	// bootstrap secret.
	BootstrapTokenName = "bootstrap-admin"
)

// Config configures a server.
type Config struct {
	Listen  string // "127.0.0.1:0" allowed; the real address is in URL()
	DataDir string // SQLite file and admin.token live here
	// Store is where the state is kept (--store, ISOLATION_STORE):
	// "sqlite" or "" (the file in DataDir), "sqlite:PATH", or a
	// postgres:// URL shared by several replicas (store.ParseLocation).
	Store          string
	BootstrapToken string // ISOLATIOND_BOOTSTRAP_TOKEN; "" => generate on first start, write DataDir/admin.token (0600)
	Driver         string // "simulate" (default) or "netns"
	AddressPool    string // CIDR; default apiv1.DefaultAddressPool
	// AddressPool6, with the netns driver, gives every environment an IPv6
	// address too: this prefix (at most /96) with the environment's IPv4
	// address in its low 32 bits. "" means IPv4 only.
	AddressPool6 string
	// NetnsPrefix starts the name of every kernel object the netns driver
	// makes (1-6 lowercase letters or digits, starting with a letter;
	// default "iso"): two servers on one host need different prefixes.
	NetnsPrefix string
	// NetnsUplink connects the netns driver's router namespace to the
	// host's network ("host") or a named namespace ("netns:NAME"); ""
	// leaves the host untouched (netns.Config.Uplink).
	NetnsUplink string
	// NetnsUplinkNet is the uplink's link network (CIDR, at most /30);
	// "" means netns.DefaultUplinkNet.
	NetnsUplinkNet string
	// DNSUpstreams are the resolvers the netns driver's DNS proxy
	// forwards environments' queries to (--dns-upstream ADDR[:PORT],
	// repeatable, tried in order); none: the proxy answers SERVFAIL.
	DNSUpstreams []string
	// DNSMinTTL and DNSMaxTTL bound how long an answer's addresses stay
	// allowed for an fqdn rule (--dns-min-ttl, --dns-max-ttl); 0 means
	// netns.DefaultDNSMinTTL and netns.DefaultDNSMaxTTL.
	DNSMinTTL, DNSMaxTTL time.Duration
	AuditLog             io.Writer
	RateLimit            float64 // requests/s per token; 0 = off
	RateBurst            int
	// RoleRateLimits replace RateLimit and RateBurst for tokens of a role
	// (isolationd's --rate-limit-role flag).
	RoleRateLimits map[string]api.RateLimit
	// AnonRateLimit limits requests without a token the server knows, per
	// client address (IPv6: per /64); zero is no limit.
	AnonRateLimit api.RateLimit
	// ReserveBytes is disk space held back beside the database and
	// released when the disk fills, so that refused requests are still
	// audited; the server then refuses changes (507) until space is back.
	// 0 holds none.
	ReserveBytes int64
	TLSCert      string
	TLSKey       string
	// InsecureListen allows plain HTTP on an address that is not loopback,
	// where bearer tokens would cross the network in clear text.
	InsecureListen bool
	Logger         *slog.Logger // nil => discard
	// EnforceDriver, when set, is used instead of the driver Driver names
	// (for embedding, and for tests that need to hold a driver step).
	EnforceDriver enforce.Driver
	// WorkloadLogs, when set, is where the API finds the environments'
	// workload output instead of the runtime (for tests that write logs
	// without one).
	WorkloadLogs api.WorkloadLogs
	// AuditKey, when set, keys the audit chain: events are sealed with
	// HMAC-SHA256 under it. A keyed chain only starts with its key.
	AuditKey *audit.Key
	// AuditSink, when set, is the JSON-lines audit log instead of AuditLog
	// (audit.OpenSink, which lets the log resume after its last line).
	AuditSink *audit.Sink
	// AddressQuarantine is how long a freed environment address is kept
	// from new environments (--address-quarantine); 0 means
	// ipam.DefaultQuarantine (24 h).
	AddressQuarantine time.Duration
	// Clock is the one clock of everything that depends on time (TTLs,
	// token expiry, rate limits, idempotency retention, address
	// quarantine, audit timestamps); nil means the real one. Tests move a
	// fake one.
	Clock clockwork.Clock
	// DefaultEnvironmentQuota is the environment quota of projects created
	// without one (0: no limit); it is stored on each project, so changing
	// it later leaves existing projects as they are.
	DefaultEnvironmentQuota int64
	// Runtime runs workloads (--runtime): "runc" (the default with the
	// netns driver), "none" (network-only environments, workloads
	// refused) or "simulate" (the only one, and the default, with the
	// simulate driver: specs are recorded, nothing runs).
	Runtime string
	// InitBinary is the static init every runc container runs as PID 1
	// (--init-binary); "" finds isolation-init beside the executable,
	// then on PATH.
	InitBinary string
	// RuncBinary is runc (--runc); default: runc beside isolationd's
	// executable, then on PATH.
	RuncBinary string
	// Userns is "auto" (the default: containers get a user namespace when
	// the kernel allows it) or "off".
	Userns string
	// WorkloadRuntime, when set, is used instead of the runtime Runtime
	// names (for tests that hold a runtime step).
	WorkloadRuntime workload.Runtime
	// ExecSessionsPerToken bounds the exec sessions one token has open at
	// once (--exec-sessions-per-token); 0 means
	// api.DefaultExecSessionsPerToken.
	ExecSessionsPerToken int
	// SIEM are the SIEM sinks (--siem, --siem-config), parsed by
	// siem.ParseSinks; each follows the audit chain from its cursor.
	SIEM []siem.Sink
	// FlowLogsOff turns the netns driver's flow logs off (--flow-logs=false).
	FlowLogsOff bool
	// FlowRetention and FlowMaxRecords bound the flow records kept
	// (--flow-retention, --flow-max-records); 0 means
	// DefaultFlowRetention and DefaultFlowMaxRecords.
	FlowRetention  time.Duration
	FlowMaxRecords int
	// Host names the machine whose kernel objects and workloads this
	// server manages: of the replicas sharing a store, the one holding
	// the lease "reconcile/<Host>" reconciles and enforces for it. ""
	// means os.Hostname.
	Host string
	// LeaseTTL is how long that lease outlives its last renewal (renewed
	// every third of it); 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// ReplicaID names this replica in the leases and the metrics; ""
	// draws a random one.
	ReplicaID string
}

// Server is a running isolationd.
type Server struct {
	cfg       Config
	log       *slog.Logger
	store     store.Backend
	control   *control.Service
	resolver  *resolverEvents
	driver    enforce.Driver
	runtime   workload.Runtime
	loc       store.Location
	replicaID string
	acting    *acting // the reconciler and the SIEM export, while this replica leads
	ctlOpts   control.Options
	recOpts   reconcile.Options
	registry  reRegisterer
	flows     *flowLogs // nil: no flow logs
	api       *api.API
	http      *http.Server
	listener  net.Listener
	url       string
	token     string
	tokenPath string
	generated bool
	serveErr  chan error
}

// Start opens the store, makes sure the admin token exists, recovers the
// reconciler's work, and starts serving. It returns once the listener is
// open.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.Driver == "" {
		cfg.Driver = simulate.Name
	}
	if cfg.AddressPool == "" {
		cfg.AddressPool = apiv1.DefaultAddressPool
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.DataDir == "" {
		return nil, errors.New("server: a data directory is required")
	}
	if cfg.Host == "" {
		if cfg.Host, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("server: host name: %w", err)
		}
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < 30*time.Millisecond {
		return nil, fmt.Errorf("server: the lease TTL %s is below 30ms", cfg.LeaseTTL)
	}
	if cfg.ReplicaID == "" {
		cfg.ReplicaID = newReplicaID()
	}
	if cfg.FlowRetention < 0 || cfg.FlowMaxRecords < 0 {
		return nil, errors.New("server: the flow retention and the flow record bound must not be negative")
	}
	if fe := apiv1.ValidateEnvironmentQuota("default environment quota", cfg.DefaultEnvironmentQuota); fe != nil {
		return nil, fmt.Errorf("server: %s %s", fe[0].Field, fe[0].Message)
	}
	loc, err := cfg.storeLocation()
	if err != nil {
		return nil, err
	}
	tlsConfig, err := cfg.transportSecurity()
	if err != nil {
		return nil, err
	}
	pool6, err := cfg.netnsOnly()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data directory: %w", err)
	}
	// s is not the named result: `return nil, err` must not clear it before
	// the deferred cleanup closes what it opened.
	s := &Server{cfg: cfg, log: cfg.Logger, serveErr: make(chan error, 1), replicaID: cfg.ReplicaID, loc: loc}
	// What a failed start undoes, in reverse. The start's own error is the
	// answer; an error undoing it can only be logged.
	var cleanup []func() error
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				if cerr := cleanup[i](); cerr != nil {
					s.log.Warn("undoing a failed start", "error", cerr.Error())
				}
			}
		}
	}()

	if cfg.AddressQuarantine == 0 {
		cfg.AddressQuarantine = ipam.DefaultQuarantine
	}
	ipam, err := ipam.New(cfg.AddressPool, cfg.AddressQuarantine)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	runtimeName, err := cfg.runtimeName()
	if err != nil {
		return nil, err
	}
	s.resolver = newResolverEvents(cfg.Clock, cfg.Logger)
	if s.driver, err = newDriver(cfg, ipam, pool6, s.resolver.report); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, s.driver.Close)
	userns, err := cfg.usernsBase(runtimeName)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if d, ok := s.driver.(*netns.Driver); ok {
		prefix = d.Prefix()
	}
	if s.runtime, err = newRuntime(cfg, runtimeName, prefix, userns); err != nil {
		return nil, err
	}
	if s.runtime != nil {
		cleanup = append(cleanup, s.runtime.Close)
	}

	if s.store, err = openStore(ctx, loc); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	cleanup = append(cleanup, s.store.Close)
	s.store.UseClock(cfg.Clock)
	if err := s.useDisk(); err != nil {
		return nil, err
	}
	if err := s.store.UseAuditKey(ctx, cfg.AuditKey); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.AuditKey != nil {
		s.log.Info("audit chain keyed: events are sealed with HMAC-SHA256", "key_id", cfg.AuditKey.ID())
	}
	trail, err := s.openAuditTrail(ctx)
	if err != nil {
		return nil, err
	}

	images, err := image.Open(filepath.Join(cfg.DataDir, ImagesDir), image.Options{
		Logger: cfg.Logger, Clock: cfg.Clock, UIDShift: userns, GIDShift: userns,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.ctlOpts = control.Options{
		Store: s.store, Clock: cfg.Clock, Driver: s.driver.Name(), Runtime: runtimeName, IPAM: ipam, DefaultEnvironmentQuota: cfg.DefaultEnvironmentQuota,
		Images: images,
	}
	s.control = s.newControl(s.store)
	registry := prometheus.NewRegistry()
	s.registry = reRegisterer{registry}
	s.resolver.attach(s.control, registry)
	cleanup = append(cleanup, func() error { s.resolver.close(); return nil })
	s.recOpts = reconcile.Options{Store: s.store, Driver: s.driver, Runtime: s.runtime, Logger: cfg.Logger, Registry: s.registry}
	if runtimeName == apiv1.RuntimeRunc {
		// A pass that starts a command watches it for its start window,
		// waiting, not computing: more workers keep a burst of creates
		// from queueing behind those waits.
		s.recOpts.Workers = 16
	}
	s.acting = newActing(s, registry)
	workloadLogs := cfg.WorkloadLogs
	if workloadLogs == nil && s.runtime != nil {
		workloadLogs = s.runtime
	}
	s.api = api.New(api.Options{
		Store: s.store, Control: s.control, Driver: s.driver, RuntimeName: runtimeName, Reconciler: s.acting, Logger: cfg.Logger, IPAM: ipam,
		RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst, RoleRateLimits: cfg.RoleRateLimits, AnonRateLimit: cfg.AnonRateLimit,
		Registry: registry, WorkloadLogs: workloadLogs, Exec: s.runtime, ExecSessionsPerToken: cfg.ExecSessionsPerToken,
		AuditKey: cfg.AuditKey,
		SIEM:     s.siemStatus(),
		Replicas: s.acting, SharedStore: loc.Shared(),
	})
	cleanup = append(cleanup, func() error { return s.api.Drain(context.Background()) })
	s.subscribe(trail)
	// The SIEM export starts before the first change of this start, so
	// that a sink met for the first time starts at the head and misses
	// nothing after it.
	if err := s.acting.start(ctx); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() error { s.acting.close(context.Background()); return nil })
	if err := s.startFlowLogs(registry); err != nil {
		return nil, err
	}
	if s.flows != nil {
		cleanup = append(cleanup, func() error { s.flows.close(); return nil })
	}

	if err := s.ensureAdminToken(ctx); err != nil {
		return nil, err
	}

	if s.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("server: listen: %w", err)
	}
	s.http = &http.Server{
		Handler:           withConsole(s.api),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if tlsConfig != nil {
		s.http.TLSConfig = tlsConfig
		s.listener = tls.NewListener(s.listener, tlsConfig)
		scheme = "https"
	}
	s.url = scheme + "://" + s.listener.Addr().String()
	go func() { s.serveErr <- s.http.Serve(s.listener) }()
	s.log.Info("isolationd serving", "url", s.url, "driver", s.driver.Name(), "runtime", runtimeName, "address_pool", cfg.AddressPool, "address_pool6", cfg.AddressPool6, "address_quarantine", cfg.AddressQuarantine.String(), "data_dir", cfg.DataDir, "store", loc.String())
	return s, nil
}

// transportSecurity checks how the server is to be reached before anything
// is opened: it loads the TLS key pair (nil without one), and refuses
// plain HTTP beyond loopback unless InsecureListen says so.
func (cfg Config) transportSecurity() (*tls.Config, error) {
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("server: --tls-cert and --tls-key go together")
	}
	if cfg.TLSCert == "" {
		if !cfg.InsecureListen && !isLoopback(cfg.Listen) {
			return nil, fmt.Errorf("server: refusing plain HTTP on %s, which is not a loopback address: "+
				"bearer tokens would cross the network in clear text; serve HTTPS with --tls-cert and --tls-key, "+
				"or give --insecure-listen if something else encrypts the traffic (a TLS-terminating proxy)", cfg.Listen)
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("server: TLS key pair (--tls-cert, --tls-key): %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// isLoopback reports whether a listen address (host:port) only accepts
// connections from this machine: a loopback IP or "localhost". An empty
// host means every interface, and any other name could resolve elsewhere.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// netnsOnly checks the settings only the netns driver takes, before
// anything is opened, and parses the IPv6 pool (invalid when unset).
func (cfg Config) netnsOnly() (netip.Prefix, error) {
	var pool6 netip.Prefix
	if cfg.Driver != netns.DriverName || cfg.EnforceDriver != nil {
		ttl := func(d time.Duration) string {
			if d == 0 {
				return ""
			}
			return d.String()
		}
		for _, set := range []struct{ flag, value string }{{"--address-pool6", cfg.AddressPool6}, {"--netns-prefix", cfg.NetnsPrefix}, {"--uplink", cfg.NetnsUplink}, {"--uplink-net", cfg.NetnsUplinkNet},
			{"--dns-upstream", strings.Join(cfg.DNSUpstreams, ",")}, {"--dns-min-ttl", ttl(cfg.DNSMinTTL)}, {"--dns-max-ttl", ttl(cfg.DNSMaxTTL)}} {
			if set.value != "" {
				return pool6, fmt.Errorf("server: %s only applies to the netns driver (--driver netns)", set.flag)
			}
		}
		return pool6, nil
	}
	if err := netns.ParseUplink(cfg.NetnsUplink); err != nil {
		return pool6, fmt.Errorf("server: --uplink: %w", err)
	}
	for _, up := range cfg.DNSUpstreams {
		if _, err := netns.ParseDNSUpstream(up); err != nil {
			return pool6, fmt.Errorf("server: --dns-upstream: %w", err)
		}
	}
	switch {
	case cfg.DNSMinTTL < 0:
		return pool6, fmt.Errorf("server: --dns-min-ttl %v must not be negative", cfg.DNSMinTTL)
	case cfg.DNSMaxTTL < 0:
		return pool6, fmt.Errorf("server: --dns-max-ttl %v must not be negative", cfg.DNSMaxTTL)
	case cmp.Or(cfg.DNSMinTTL, netns.DefaultDNSMinTTL) > cmp.Or(cfg.DNSMaxTTL, netns.DefaultDNSMaxTTL):
		return pool6, fmt.Errorf("server: --dns-min-ttl (%v) is above --dns-max-ttl (%v)", cmp.Or(cfg.DNSMinTTL, netns.DefaultDNSMinTTL), cmp.Or(cfg.DNSMaxTTL, netns.DefaultDNSMaxTTL))
	}
	if cfg.AddressPool6 == "" {
		return pool6, nil
	}
	pool6, err := netip.ParsePrefix(cfg.AddressPool6)
	if err != nil {
		return pool6, fmt.Errorf("server: --address-pool6 %q: %w", cfg.AddressPool6, err)
	}
	if pool6 != pool6.Masked() {
		return pool6, fmt.Errorf("server: --address-pool6 %q: host bits set (did you mean %s?)", cfg.AddressPool6, pool6.Masked())
	}
	return pool6, nil
}

func newDriver(cfg Config, ipam *ipam.Allocator, pool6 netip.Prefix, onResolverFailure func(netns.ResolverFailure)) (enforce.Driver, error) {
	if cfg.EnforceDriver != nil {
		return cfg.EnforceDriver, nil
	}
	switch cfg.Driver {
	case simulate.Name:
		return simulate.New(), nil
	case netns.DriverName:
		pool := ipam.Pool()
		if !pool.Addr().Is4() {
			return nil, fmt.Errorf("server: the netns driver needs an IPv4 address pool, not %s", pool)
		}
		// The first host address is the gateway on the driver's bridge.
		ipam.Exclude(pool.Addr().Next())
		if pool6.IsValid() {
			ipam.SetCompanionPool(pool6)
		}
		var link netip.Prefix
		if cfg.NetnsUplinkNet != "" {
			var err error
			if link, err = netip.ParsePrefix(cfg.NetnsUplinkNet); err != nil {
				return nil, fmt.Errorf("server: --uplink-net %q: %w", cfg.NetnsUplinkNet, err)
			}
		}
		d, err := netns.New(netns.Config{Prefix: cfg.NetnsPrefix, Pool: pool, Pool6: pool6, Uplink: cfg.NetnsUplink, UplinkNet: link, Logger: cfg.Logger,
			DNSUpstreams: slices.Clone(cfg.DNSUpstreams), DNSMinTTL: cfg.DNSMinTTL, DNSMaxTTL: cfg.DNSMaxTTL, OnResolverFailure: onResolverFailure})
		if err != nil {
			return nil, fmt.Errorf("server: netns driver: %w", err)
		}
		return d, nil
	}
	return nil, fmt.Errorf("server: unknown driver %q: use simulate or netns", cfg.Driver)
}

// newControl is the application layer over st: the store itself for the
// API, the store fenced by the lease for the leader's reconciler.
func (s *Server) newControl(st store.Store) *control.Service {
	opts := s.ctlOpts
	opts.Store = st
	return control.New(opts)
}

// newReconciler is a reconciler writing through ctl, for one term.
func (s *Server) newReconciler(ctl *control.Service) *reconcile.Reconciler {
	opts := s.recOpts
	opts.Control = ctl
	if s.ctlOpts.Runtime == apiv1.RuntimeRunc {
		opts.Images = ctl.ImageResolver() // audits its pulls; the simulate runtime resolves nothing: it runs nothing
	}
	return reconcile.New(opts)
}

// ReplicaID is this replica's id in the leases and the metrics.
func (s *Server) ReplicaID() string { return s.replicaID }

// Leading reports whether this replica reconciles and enforces for its
// host now.
func (s *Server) Leading() bool { return s.acting.Leading() }

// startFlowLogs turns the netns driver's flow logs on, unless
// FlowLogsOff, with their sink, metrics and pruning.
func (s *Server) startFlowLogs(reg *prometheus.Registry) error {
	d, ok := s.driver.(*netns.Driver)
	if !ok || s.cfg.FlowLogsOff {
		return nil
	}
	f := newFlowLogs(s.cfg, s.control, d, reg)
	if err := d.StartFlowLogs(f.record); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	f.start()
	s.flows = f
	return nil
}

// URL is where the server listens, such as http://127.0.0.1:41234.
func (s *Server) URL() string { return s.url }

// AdminToken is the bootstrap admin secret.
func (s *Server) AdminToken() string { return s.token }

// AdminTokenPath is the file holding the admin secret, "" when it came
// from the environment.
func (s *Server) AdminTokenPath() string { return s.tokenPath }

// GeneratedToken reports whether this start generated the admin secret.
func (s *Server) GeneratedToken() bool { return s.generated }

// Store is the server's store (for tests and benchmarks in this module).
func (s *Server) Store() store.Store { return s.store }

// FlushDenials appends the audit of every refused request counted so far
// (for tests that read the trail right after refused requests).
func (s *Server) FlushDenials(ctx context.Context) error { return s.api.FlushDenials(ctx) }

// Driver is the server's enforcement driver (for tests and benchmarks in
// this module that look at what it made, such as the netns driver's
// router namespace).
func (s *Server) Driver() enforce.Driver { return s.driver }

// Runtime is the server's workload runtime, nil with --runtime none (for
// tests in this module that look at what it runs).
func (s *Server) Runtime() workload.Runtime { return s.runtime }

// Done receives the error that stopped serving (http.ErrServerClosed
// after Shutdown).
func (s *Server) Done() <-chan error { return s.serveErr }

// Shutdown stops accepting requests, lets in-flight ones finish (waits
// and watches answer at once, exec sessions end with reason
// server_stops), stops the reconciler after the environment in hand, and
// closes the driver and the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.api.Close()
	errs := []error{}
	if err := s.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	// No request is in flight: the ends of the exec sessions (WebSockets,
	// which the HTTP server does not wait for) and what the denial audit
	// still counts go on the chain before the store closes, even when
	// draining the requests used up ctx.
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.api.Drain(drainCtx); err != nil {
		errs = append(errs, fmt.Errorf("audit of exec sessions and refused requests: %w", err))
	}
	// The reconciler and the SIEM export stop (what the sinks have not
	// received yet they get after the next start, from their cursors),
	// and the lease goes to another replica at once.
	s.acting.close(drainCtx)
	if s.runtime != nil {
		if err := s.runtime.Close(); err != nil {
			errs = append(errs, fmt.Errorf("runtime: %w", err))
		}
	}
	if err := s.driver.Close(); err != nil { // its last flow records go to the store first
		errs = append(errs, fmt.Errorf("driver: %w", err))
	}
	s.resolver.close()
	if s.flows != nil {
		s.flows.close()
	}
	if err := s.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("store: %w", err))
	}
	s.log.Info("isolationd stopped")
	return errors.Join(errs...)
}

// subscribe tells, of every commit, the audit trail (its events, in chain
// order), the API (its wait/watch hub and its token cache) and the
// reconciler's queue (what the commit asks to reconcile).
func (s *Server) subscribe(trail *audit.InOrder) {
	if trail != nil {
		s.store.Subscribe(func(c store.Commit) {
			for _, ev := range c.Events {
				if err := trail.Write(context.Background(), ev); err != nil {
					s.log.Error("audit sink write failed", "error", err.Error(), "audit_seq", ev.Seq)
				}
			}
		})
	}
	s.store.Subscribe(s.api.Committed)
	s.store.Subscribe(s.acting.Committed)
}

// openAuditTrail puts the JSON-lines sink (AuditSink, or AuditLog) in
// step with the store's chain, nil when there is none. A file sink goes
// on after its last line, catching up with the events a crash kept from
// it; a new file, or stdout, starts at the chain's head. A file whose last
// line is not the store's event of that seq belongs to another database.
func (s *Server) openAuditTrail(ctx context.Context) (*audit.InOrder, error) {
	sink := s.cfg.AuditSink
	if sink == nil && s.cfg.AuditLog != nil {
		sink = audit.NewSink(s.cfg.AuditLog)
	}
	if sink == nil {
		return nil, nil
	}
	var head int64
	if last, err := s.store.LastAudit(ctx); err == nil {
		head = last.Seq
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("server: audit log: %w", err)
	}
	after := head
	if seq, hash, ok := sink.Last(); ok {
		evs, _, err := s.store.ListAudit(ctx, store.AuditQuery{AfterSeq: seq - 1, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("server: audit log: %w", err)
		}
		if len(evs) == 0 || evs[0].Seq != seq || evs[0].Hash != hash {
			return nil, fmt.Errorf("server: the audit log ends at seq %d, which the database's audit chain (ending at seq %d) does not hold: "+
				"the log belongs to another database; give a new --audit-log file", seq, head)
		}
		after = seq
	}
	trail := audit.NewInOrder(sink, store.AuditPager(s.store), after)
	if err := trail.CatchUp(ctx); err != nil {
		return nil, fmt.Errorf("server: audit log: %w", err)
	}
	return trail, nil
}

// openSIEM starts the SIEM sinks' delivery (nil without sinks) before the
// first change of this start, so that a sink met for the first time
// starts at the head and misses nothing after it.
func (s *Server) openSIEM(ctx context.Context) (*siem.Exporter, error) {
	if len(s.cfg.SIEM) == 0 {
		return nil, nil
	}
	e, err := siem.New(siem.Options{
		Store: s.store, Sinks: s.cfg.SIEM, Logger: s.log, Registry: s.registry,
		Sources: map[string]siem.Source{
			siem.SourceAudit: siem.AuditSource{Store: s.store},
			siem.SourceFlows: siem.FlowSource{Log: storeFlowLog{s.store}},
		},
		Notice: func(ctx context.Context, n siem.Notice) error {
			return s.control.SIEMNotice(ctx, n.Action, n.Sink, n.Outcome, n.Reason)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := e.Start(ctx); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	for _, sink := range s.cfg.SIEM {
		s.log.Info("SIEM sink", "siem_sink", sink.Name, "format", sink.Format, "audit", sink.Audit, "flows", sink.Flows)
	}
	return e, nil
}

// siemStatus is what /readyz shows of the sinks: nil without any.
func (s *Server) siemStatus() api.SIEMStatus {
	if len(s.cfg.SIEM) == 0 {
		return nil
	}
	return s.acting
}

// ensureAdminToken makes the bootstrap secret (from the config, the token
// file, or freshly generated) an admin token in the store, revoking a
// previous bootstrap secret that differs (control.BootstrapToken). Only
// its hash is stored.
func (s *Server) ensureAdminToken(ctx context.Context) error {
	secret := s.cfg.BootstrapToken
	if secret == "" {
		s.tokenPath = filepath.Join(s.cfg.DataDir, AdminTokenFile)
		b, err := os.ReadFile(s.tokenPath)
		switch {
		case err == nil:
			secret = strings.TrimSpace(string(b))
		case errors.Is(err, os.ErrNotExist):
			if secret, err = auth.NewSecret(); err != nil {
				return fmt.Errorf("server: generate admin token: %w", err)
			}
			if err := writeSecret(s.tokenPath, secret); err != nil {
				return err
			}
			s.generated = true
		default:
			return fmt.Errorf("server: read admin token: %w", err)
		}
	}
	if len(secret) < 16 {
		return errors.New("server: the bootstrap token must be at least 16 characters")
	}
	if !auth.ValidSecret(secret) {
		// A bearer token is taken exactly, so this one could never be sent.
		return errors.New("server: the bootstrap token must be visible ASCII characters, without spaces")
	}
	s.token = secret
	if _, err := s.control.BootstrapToken(ctx, auth.HashSecret(secret), BootstrapTokenName); err != nil {
		return fmt.Errorf("server: store admin token: %w", err)
	}
	return nil
}

// writeSecret creates path with mode 0600, failing if it exists.
func writeSecret(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("server: write admin token: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("server: write admin token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("server: write admin token: %w", err)
	}
	return f.Close()
}

// withConsole serves the web console at /ui beside the API; the console's
// pages answer only a signed-in browser, and its data comes from the API.
func withConsole(a *api.API) http.Handler {
	mux := http.NewServeMux()
	flows := slices.ContainsFunc(api.Routes(), func(rt api.Route) bool { return rt.Pattern == "/v1/flows" })
	console := ui.Handler(ui.Options{SignedIn: a.ConsoleSignedIn, Flows: flows})
	mux.Handle("/ui", console)
	mux.Handle("/ui/", console)
	mux.Handle("/", a.Handler())
	return mux
}
