// Package api is isolationd's HTTP API: one route table, one middleware
// chain (request id, logging, recovery, metrics), one authorize step, one
// problem writer, and handlers that decode a request, ask the application
// layer (control) for the change, and write its answer. It learns what
// changed from the store's commit announcements (Committed), which wake
// the waiters of wait_for and watch and keep the token cache honest.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/ipam"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Starter is what /readyz asks of the reconciler.
type Starter interface{ Started() bool }

// Options configure the API.
type Options struct {
	Store store.Store
	// Control is the application layer every change goes through; its
	// clock is the API's (idempotency retention, token expiry, denials).
	Control *control.Service
	Driver  enforce.Driver
	// RuntimeName names the workload runtime (apiv1.Runtime*), as
	// GET /v1/whoami reports it; "" leaves it out.
	RuntimeName string
	// Reconciler is ready once it has started (/readyz).
	Reconciler Starter
	Logger     *slog.Logger
	// RateLimit is requests per second per token; 0 turns it off.
	RateLimit float64
	RateBurst int
	// RoleRateLimits replace RateLimit and RateBurst for tokens of a role.
	RoleRateLimits map[string]RateLimit
	// AnonRateLimit limits unauthenticated requests per client address
	// (see anonLimiter); a zero PerSecond turns it off.
	AnonRateLimit RateLimit
	// Registry receives the API's metrics; /metrics serves it.
	Registry *prometheus.Registry
	// MaxWait bounds wait_for's timeout.
	MaxWait time.Duration
	// IPAM, when set, lets the effective policy and check flag CIDR
	// peers that cover other projects' environments.
	IPAM *ipam.Allocator
	// WorkloadLogs finds the environments' workload output (the runtime);
	// nil when the server runs no workloads, whose logs are then 404.
	WorkloadLogs WorkloadLogs
	// Exec starts commands in the environments' containers (the
	// runtime); nil when the server runs no workloads.
	Exec Execer
	// AuditKey is the HMAC key that seals the audit chain, nil for none:
	// GET /v1/audit-events/verify checks keyed events with it.
	AuditKey *audit.Key
	// ExecSessionsPerToken bounds the exec sessions one token has open at
	// once; 0 means DefaultExecSessionsPerToken.
	ExecSessionsPerToken int
	// SIEM, when set, reports the SIEM sinks on /readyz.
	SIEM SIEMStatus
	// Replicas, when set, reports the replicas on /readyz and divides
	// the per-token rate limits among them.
	Replicas Replicas
	// SharedStore says that other servers write the store (PostgreSQL):
	// a token is read from it on every request, so that a revocation
	// committed elsewhere holds at once.
	SharedStore bool
}

// SIEMStatus is what /readyz shows of the SIEM sinks (siem.Exporter).
type SIEMStatus interface {
	Status(ctx context.Context) []siem.SinkStatus
}

// API serves isolationd's HTTP API.
type API struct {
	store      store.Store
	control    *control.Service
	driver     enforce.Driver
	runtime    string
	reconciler Starter
	hub        *hub
	log        *slog.Logger
	maxWait    time.Duration
	ipam       *ipam.Allocator
	auditKey   *audit.Key

	// workloadLogs and execer are nil when the server runs no workloads.
	workloadLogs WorkloadLogs
	execer       Execer
	sessions     *execSessions
	siem         SIEMStatus
	replicas     Replicas
	sharedStore  bool

	tokens   *tokenCache
	limiter  *limiter
	anon     *anonLimiter
	denials  *denials
	health   storeHealth
	inflight inflight
	metrics  *metrics
	handler  http.Handler

	closing   chan struct{}
	closeOnce sync.Once
}

// New builds the API.
func New(opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 10 * time.Minute
	}
	a := &API{
		store:       opts.Store,
		control:     opts.Control,
		driver:      opts.Driver,
		runtime:     opts.RuntimeName,
		reconciler:  opts.Reconciler,
		replicas:    opts.Replicas,
		sharedStore: opts.SharedStore,
		hub:         newHub(),
		log:         opts.Logger,
		maxWait:     opts.MaxWait,
		ipam:        opts.IPAM,
		auditKey:    opts.AuditKey,
		tokens:      newTokenCache(),
		limiter:     newLimiter(opts.Control.Clock(), RateLimit{PerSecond: opts.RateLimit, Burst: opts.RateBurst}, opts.RoleRateLimits),
		anon:        newAnonLimiter(opts.Control.Clock(), opts.AnonRateLimit),
		denials:     newDenials(opts.Control, opts.Logger),
		inflight:    inflight{keys: map[string]bool{}},
		closing:     make(chan struct{}),
	}
	a.health.store, _ = opts.Store.(writeProber)
	a.workloadLogs = opts.WorkloadLogs
	a.execer = opts.Exec
	a.siem = opts.SIEM
	if opts.Replicas != nil {
		a.limiter.live = opts.Replicas.Live
	}
	a.sessions = newExecSessions(opts.ExecSessionsPerToken)
	a.metrics = newMetrics(opts.Registry, opts.Store)
	opts.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "isolationd_store_writable", Help: "1 while the store's writes succeed; 0 after a full or unwritable disk, until a probe write succeeds (changes answer 507/503 meanwhile).",
		}, func() float64 {
			if a.health.store != nil && a.health.store.WriteErr() != nil {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "isolationd_audit_refusals_pending", Help: "Audit events of refused requests waiting to be appended to the chain.",
		}, a.denials.backlog),
	)
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.Method+" "+rt.Pattern, a.route(rt))
	}
	a.handler = a.middleware(mux)
	return a
}

// Handler is the API's root handler.
func (a *API) Handler() http.Handler { return a.handler }

// Close makes long-running requests (wait_for, watch) answer now, so that
// a graceful shutdown does not wait for their timeouts, and ends every
// exec session (reason server_stops).
func (a *API) Close() {
	a.closeOnce.Do(func() { close(a.closing) })
}

// Drain waits until every exec session has ended with its end on the
// audit trail (a WebSocket's outlives the HTTP server's shutdown), then
// audits every refused request still counted in memory (closing the open
// minute's windows) and stops the goroutine that appends them: call it
// after Close, once no request is in flight any more, before the store
// closes.
func (a *API) Drain(ctx context.Context) error {
	var err error
	if err = a.sessions.drain(ctx); err != nil {
		err = fmt.Errorf("exec sessions still open: %w", err)
	}
	return errors.Join(err, a.denials.stop(ctx))
}

// FlushDenials appends every refused request counted so far, closing the
// open windows as Drain does but carrying on (for tests that read the
// trail right after refused requests).
func (a *API) FlushDenials(ctx context.Context) error { return a.denials.flush(ctx) }

// now is the time of the application layer's clock.
func (a *API) now() time.Time { return a.control.Clock().Now() }

// route wraps a handler with the per-route steps: authentication, rate
// limit, reading the body, authorization and idempotency.
func (a *API) route(rt Route) http.Handler {
	label := rt.Method + " " + rt.Pattern
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := requestInfoFrom(r.Context())
		info.route = label
		replayed, err := a.guard(rt, w, r)
		if info.idem != nil && info.idem.flight != "" {
			defer a.inflight.end(info.idem.flight)
		}
		if replayed {
			return
		}
		if err == nil {
			// Every route, so that none reads a query string that
			// does not parse, whether or not it takes parameters.
			_, err = query(r)
		}
		if err == nil {
			err = rt.handle(a, w, r)
		}
		if err != nil {
			writeProblem(w, r, err)
		}
	})
}

// guard runs the steps before the handler; replayed says that it answered
// the request itself, with a stored idempotent response.
func (a *API) guard(rt Route, w http.ResponseWriter, r *http.Request) (replayed bool, err error) {
	if rt.Perm.Public {
		return false, nil
	}
	if err := a.authenticate(r); err != nil {
		return false, err
	}
	if err := a.rateLimit(r); err != nil {
		return false, err
	}
	if err := a.consoleGuard(r, rt); err != nil {
		return false, err
	}
	if rt.Idempotent {
		a.idempotencyMark(r)
	}
	// A route that documents a request body takes one: it is read once,
	// here, and only for a caller known and within its rate.
	if rt.Doc.Request != nil {
		if err := readBody(r); err != nil {
			return false, err
		}
	}
	if err := a.authorize(r, rt.Perm); err != nil {
		return false, err
	}
	if rt.Perm.Verb == auth.VerbWrite || rt.Perm.Verb == auth.VerbSession {
		if err := a.health.writable(r.Context()); err != nil {
			return false, err
		}
	}
	if rt.Idempotent {
		return a.idempotencyBegin(w, r)
	}
	return false, nil
}

// ctxKey keys the request info in a context.
type ctxKey struct{}

// requestInfo is what the middleware and the guard learn about a request.
type requestInfo struct {
	requestID string
	logger    *slog.Logger
	route     string
	source    apiv1.Source
	principal *auth.Principal
	// uiSession is the console session the request was authenticated
	// by (its cookie), "" for a bearer token.
	uiSession string
	perm      Perm
	target    target
	body      []byte // read by readBody, for the routes that take one
	idem      *idemRequest
}

func requestInfoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(ctxKey{}).(*requestInfo)
	return info
}

// target is the object a path-scoped route names, loaded by authorize:
// the field of the route's scope is set.
type target struct {
	project     apiv1.Project
	environment store.EnvironmentJSON // encoded: GET serves it as it is
	policy      apiv1.Policy
	token       apiv1.Token
}

// The object authorize loaded for the path's {id}, by the route's scope.
func targetProject(r *http.Request) apiv1.Project { return requestInfoFrom(r.Context()).target.project }
func targetEnvironmentJSON(r *http.Request) store.EnvironmentJSON {
	return requestInfoFrom(r.Context()).target.environment
}
func targetPolicy(r *http.Request) apiv1.Policy { return requestInfoFrom(r.Context()).target.policy }
func targetToken(r *http.Request) apiv1.Token   { return requestInfoFrom(r.Context()).target.token }
