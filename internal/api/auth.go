package api

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// authenticate finds the caller's token by the hash of its secret. Every
// failure is audited and answered 401 with the same detail-free message,
// so a caller cannot tell a revoked token from a made-up one.
func (a *API) authenticate(r *http.Request) error {
	info := requestInfoFrom(r.Context())
	secret, ok := auth.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return a.deny(r, http.StatusUnauthorized, "no bearer token")
	}
	hash := auth.HashSecret(secret)
	rec, ok := a.tokens.get(hash)
	if !ok {
		var err error
		rec, err = a.store.GetTokenByHash(r.Context(), hash)
		if errors.Is(err, store.ErrNotFound) {
			return a.deny(r, http.StatusUnauthorized, "unknown token")
		}
		if err != nil {
			return err
		}
		a.tokens.put(hash, rec)
	}
	switch {
	case rec.RevokedAt != nil:
		a.tokens.invalidate(rec.ID)
		return a.deny(r, http.StatusUnauthorized, "revoked token "+rec.ID)
	case rec.ExpiresAt != nil && !a.now().Before(*rec.ExpiresAt):
		return a.deny(r, http.StatusUnauthorized, "expired token "+rec.ID)
	}
	info.principal = &auth.Principal{TokenID: rec.ID, Name: rec.Name, Role: rec.Role, ProjectID: rec.ProjectID}
	info.logger = info.logger.With("token_id", rec.ID)
	return nil
}

// authorize is the one authorization step: it finds the project the route
// targets (loading the object its path names) and asks auth.Decide.
// Routes scoped by their body call authorizeProject once decoded.
func (a *API) authorize(r *http.Request, perm Perm) error {
	info := requestInfoFrom(r.Context())
	info.perm = perm
	projectID := ""
	ctx := r.Context()
	id := idFromPath(r)
	var err error
	switch perm.Scope {
	case ScopeProject:
		var p apiv1.Project
		p, err = a.store.GetProject(ctx, id)
		projectID, info.target = p.ID, p
	case ScopeEnvironment:
		var e apiv1.Environment
		e, err = a.store.GetEnvironment(ctx, id)
		projectID, info.target = e.ProjectID, e
	case ScopePolicy:
		var p apiv1.Policy
		p, err = a.store.GetPolicy(ctx, id)
		projectID, info.target = p.ProjectID, p
	}
	if errors.Is(err, store.ErrNotFound) {
		return notFound(string(perm.Resource), id)
	}
	if err != nil {
		return err
	}
	return a.decide(r, perm, projectID, id)
}

// authorizeProject checks the caller may act on projectID with the route's
// permission (for routes whose project is in the body).
func (a *API) authorizeProject(r *http.Request, projectID string) error {
	info := requestInfoFrom(r.Context())
	return a.decide(r, info.perm, projectID, "")
}

func (a *API) decide(r *http.Request, perm Perm, projectID, id string) error {
	info := requestInfoFrom(r.Context())
	d := auth.Decide(*info.principal, perm.Permission, projectID)
	if d.Allowed {
		return nil
	}
	if err := a.deny(r, d.Status, d.Reason); d.Status != http.StatusNotFound {
		if d.NeededRole != "" {
			err.detail += "; this needs role " + d.NeededRole
		}
		return err
	}
	// Out of scope answers exactly as a missing object does.
	return notFound(string(perm.Resource), id)
}

// deny audits a refused request in a transaction of its own and returns
// the problem to answer with.
func (a *API) deny(r *http.Request, status int, reason string) *Error {
	info := requestInfoFrom(r.Context())
	ev := a.event(r, "auth.denied", apiv1.ResourceRef{Type: string(info.perm.Resource), ID: idFromPath(r)}, "", apiv1.OutcomeDenied, status)
	ev.Reason = reason
	var stored apiv1.AuditEvent
	err := a.store.Update(r.Context(), func(tx store.Tx) error {
		var err error
		stored, err = tx.AppendAudit(r.Context(), ev)
		return err
	})
	if err != nil {
		info.logger.Error("audit denied request", "error", err.Error())
	} else {
		a.audited(stored)
	}
	info.logger.Warn("request denied", "status", status, "reason", reason)
	switch status {
	case http.StatusUnauthorized:
		return newError(probUnauthorized, "a valid bearer token is required in the header Authorization: Bearer TOKEN").
			withHeader("WWW-Authenticate", `Bearer realm="isolationd", error="invalid_token"`)
	case http.StatusTooManyRequests:
		return newError(probRateLimited, "the token's rate limit is exceeded; retry after the Retry-After delay")
	case http.StatusNotFound:
		return notFound(string(info.perm.Resource), idFromPath(r))
	}
	return newError(probForbidden, "%s", reason)
}

func notFound(kind, id string) *Error {
	if kind == "" {
		kind = "object"
	}
	if id == "" {
		return newError(probNotFound, "no such %s", kind)
	}
	return newError(probNotFound, "%s %q does not exist", kind, id)
}

// rateLimit applies the per-token limit, when one is configured.
func (a *API) rateLimit(r *http.Request) error {
	info := requestInfoFrom(r.Context())
	delay, ok := a.limiter.allow(info.principal.TokenID)
	if ok {
		return nil
	}
	return a.deny(r, http.StatusTooManyRequests, "rate limit exceeded").withHeader("Retry-After", retryAfter(delay))
}

// tokenCache keeps tokens found by hash so a request costs no store read;
// revocation invalidates by id.
type tokenCache struct {
	mu     sync.RWMutex
	byHash map[string]store.TokenRecord
}

func newTokenCache() *tokenCache { return &tokenCache{byHash: map[string]store.TokenRecord{}} }

func (c *tokenCache) get(hash string) (store.TokenRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.byHash[hash]
	return t, ok
}

func (c *tokenCache) put(hash string, t store.TokenRecord) {
	c.mu.Lock()
	c.byHash[hash] = t
	c.mu.Unlock()
}

func (c *tokenCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, t := range c.byHash {
		if t.ID == id {
			delete(c.byHash, h)
		}
	}
}

// limiter holds one token bucket per API token.
type limiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	perID map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	if burst <= 0 {
		burst = max(1, int(perSecond))
	}
	return &limiter{rate: rate.Limit(perSecond), burst: burst, perID: map[string]*rate.Limiter{}}
}

// allow takes one request from id's bucket, or says how long to wait.
func (l *limiter) allow(id string) (time.Duration, bool) {
	if l.rate <= 0 {
		return 0, true
	}
	l.mu.Lock()
	b, ok := l.perID[id]
	if !ok {
		b = rate.NewLimiter(l.rate, l.burst)
		l.perID[id] = b
	}
	l.mu.Unlock()
	now := time.Now()
	res := b.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}
