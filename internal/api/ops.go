package api

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/version"
)

// OpenAPI is the API's OpenAPI 3.1 document, kept in the repository.
//
//go:embed openapi.json
var OpenAPI []byte

func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, health{Status: "ok", Version: version.String()})
	return nil
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := a.store.ListProjects(r.Context(), store.ListQuery{Limit: 1}); err != nil {
		requestInfoFrom(r.Context()).logger.Error("readiness: store unreachable", "error", err.Error())
		e := problem.New(problem.Unavailable, "the store is not reachable (its database cannot be reached, or its disk read)")
		e.RetryAfter = retryAfterUnavailable
		return e
	}
	if err := a.health.ready(r.Context(), a.now()); err != nil {
		requestInfoFrom(r.Context()).logger.Warn("readiness: the store cannot write", "error", err.Error())
		detail := "the store cannot write"
		if errors.Is(err, store.ErrFull) {
			detail = "the store's disk is full"
		}
		e := problem.New(problem.Unavailable, "%s", detail)
		e.RetryAfter = retryAfterUnavailable
		return e
	}
	if a.replicas != nil {
		if err := a.replicas.Ready(r.Context()); err != nil {
			e := problem.New(problem.Unavailable, "%s", err.Error())
			e.RetryAfter = retryAfterUnavailable
			return e
		}
	}
	if !a.reconciler.Started() {
		return problem.New(problem.Unavailable, "the reconciler has not started")
	}
	select {
	case <-a.closing:
		return problem.New(problem.Unavailable, "the server is shutting down")
	default:
	}
	h := health{Status: "ready"}
	if a.siem != nil {
		h.SIEM = a.siem.Status(r.Context())
	}
	if a.replicas != nil {
		info := a.replicas.Replica(r.Context())
		h.Replica = &info
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

// writeProber is what a store can tell about its disk (store.SQLite does).
type writeProber interface {
	// WriteErr is the storage failure of a write no probe has cleared.
	WriteErr() error
	// Probe writes, and clears WriteErr when that works.
	Probe(ctx context.Context) error
}

// readyProbeEvery is how long a successful probe write answers /readyz,
// so that polling it costs at most one write a second.
const readyProbeEvery = time.Second

// storeHealth says whether the store can write. A store that cannot say
// (no writeProber) is taken to be able to.
type storeHealth struct {
	store writeProber

	mu     sync.Mutex
	lastOK time.Time
}

// writable is nil while no write has failed; after a failure it probes
// again on every call, so the first request after the disk is back is
// served. A failing probe is cheap: a statfs, or one failing write.
func (h *storeHealth) writable(ctx context.Context) error {
	if h.store == nil || h.store.WriteErr() == nil {
		return nil
	}
	return h.store.Probe(ctx)
}

// ready probes with a write, at most once per readyProbeEvery while the
// store is healthy, and on every call while it is not.
func (h *storeHealth) ready(ctx context.Context, now time.Time) error {
	if h.store == nil {
		return nil
	}
	h.mu.Lock()
	fresh := now.Sub(h.lastOK) < readyProbeEvery && now.After(h.lastOK)
	h.mu.Unlock()
	if fresh && h.store.WriteErr() == nil {
		return nil
	}
	if err := h.store.Probe(ctx); err != nil {
		return err
	}
	h.mu.Lock()
	h.lastOK = now
	h.mu.Unlock()
	return nil
}

func (a *API) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	a.metrics.handler.ServeHTTP(w, r)
	return nil
}

func (a *API) openapi(w http.ResponseWriter, r *http.Request) error {
	writeBody(w, http.StatusOK, OpenAPI)
	return nil
}
