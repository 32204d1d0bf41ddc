package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// authenticate finds the caller's token by the hash of its secret. Every
// failure is audited and answered 401 saying which it was (no token,
// unknown, revoked, expired). Only the holder of a token's secret can hash
// to it, so "revoked" and "expired" tell nothing to anyone else, and the
// answer never names a token (its id stays in the audit trail).
func (a *API) authenticate(r *http.Request) error {
	info := requestInfoFrom(r.Context())
	header := r.Header.Get("Authorization")
	secret, ok := auth.BearerToken(header)
	switch {
	case header == "":
		return a.unauthenticated(r, "no bearer token", "no bearer token: send the header Authorization: Bearer TOKEN")
	case !ok:
		return a.unauthenticated(r, "malformed bearer token",
			"malformed Authorization header: want exactly \"Bearer TOKEN\", one space and the secret with nothing around it")
	}
	hash := auth.HashSecret(secret)
	rec, ok := a.tokens.get(hash)
	if !ok {
		epoch := a.tokens.epoch()
		var err error
		rec, err = a.store.GetTokenByHash(r.Context(), hash)
		if errors.Is(err, store.ErrNotFound) {
			return a.unauthenticated(r, "unknown token", "unknown token: isolationd never issued this bearer token")
		}
		if err != nil {
			return err
		}
		a.tokens.put(hash, rec, epoch)
	}
	if subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hash)) != 1 {
		// Never reached by construction; a store that matched loosely must
		// not tell a stranger about someone else's token.
		return a.unauthenticated(r, "unknown token", "unknown token: isolationd never issued this bearer token")
	}
	switch {
	case rec.RevokedAt != nil:
		a.tokens.invalidate(rec.ID)
		return a.unauthenticated(r, "revoked token "+rec.ID, "token revoked: this bearer token was revoked; use another one")
	case rec.ExpiresAt != nil && !a.now().Before(*rec.ExpiresAt):
		return a.unauthenticated(r, "expired token "+rec.ID, expiredDetail(*rec.ExpiresAt))
	}
	info.principal = &auth.Principal{TokenID: rec.ID, Name: rec.Name, Role: rec.Role, ProjectID: rec.ProjectID, ExpiresAt: rec.ExpiresAt}
	info.logger = info.logger.With("token_id", rec.ID)
	return nil
}

// unauthenticated audits a 401 (reason, for the audit trail) and answers
// it with detail, which tells the caller what was wrong with its token.
func (a *API) unauthenticated(r *http.Request, reason, detail string) *Error {
	e := a.deny(r, http.StatusUnauthorized, reason)
	e.detail = detail
	return e
}

func expiredDetail(at time.Time) string {
	return "token expired: this bearer token expired at " + at.UTC().Format(time.RFC3339) + "; use another one"
}

// authorize is the one authorization step: it finds the project the route
// targets (loading the object its path names, or reading the project_id
// of the body) and asks auth.Decide. Scope comes before role, so a token
// learns nothing about other projects, not even from a validation error.
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
		// Encoded: GET serves it as it is, the other routes decode it
		// (targetEnvironment).
		var e store.EnvironmentJSON
		e, err = a.store.GetEnvironmentJSON(ctx, id)
		projectID, info.target = e.ProjectID, e
	case ScopePolicy:
		var p apiv1.Policy
		p, err = a.store.GetPolicy(ctx, id)
		projectID, info.target = p.ProjectID, p
	case ScopeToken:
		var t store.TokenRecord
		t, err = a.store.GetToken(ctx, id)
		if err == nil && t.RevokedAt != nil {
			// A revoked token is gone as far as the API is concerned.
			err = store.ErrNotFound
		}
		projectID, info.target = t.ProjectID, t.Token
		if projectID == "" {
			projectID = auth.OrgScope
		}
	case ScopeBody:
		projectID, err = bodyProject(r)
	}
	if errors.Is(err, store.ErrNotFound) {
		// Audited like an out-of-scope 404, so that the two cost the same.
		a.refused(r, actionNotFound, apiv1.OutcomeFailure, http.StatusNotFound, "no such "+string(perm.Resource))
		return notFound(string(perm.Resource), id)
	}
	if err != nil {
		return err
	}
	return a.decide(r, perm, projectID, id)
}

// bodyProject is the project_id of a JSON body, "" when there is none or
// the body does not decode: the handler's strict decoding then answers
// 400, and the role alone has been checked.
func bodyProject(r *http.Request) (string, error) {
	body, err := readBody(r)
	if err != nil {
		return "", err
	}
	var in struct {
		ProjectID string `json:"project_id"`
	}
	if json.Unmarshal(body, &in) != nil {
		return "", nil
	}
	return in.ProjectID, nil
}

func (a *API) decide(r *http.Request, perm Perm, projectID, id string) error {
	info := requestInfoFrom(r.Context())
	d := auth.Decide(*info.principal, perm.Permission, projectID)
	if d.Allowed {
		return nil
	}
	reason := d.Reason
	if d.NeededRole != "" {
		// The role comes first: it is what the caller has to act on.
		reason = "requires role " + d.NeededRole + ": " + d.Reason
	}
	if err := a.deny(r, d.Status, reason); d.Status != http.StatusNotFound {
		return err
	}
	// Out of scope answers exactly as a missing object does.
	if perm.Scope == ScopeBody {
		return noSuchProject(projectID)
	}
	return notFound(string(perm.Resource), id)
}

// deny audits a refused request (see denials: the answer does not wait
// for the store) and returns the problem to answer with.
func (a *API) deny(r *http.Request, status int, reason string) *Error {
	info := requestInfoFrom(r.Context())
	if status == http.StatusUnauthorized {
		if delay, ok := a.anon.allow(info.source.IP, a.now()); !ok {
			reason = "rate limit of unauthenticated requests of the address exceeded: " + reason
			a.refused(r, actionDenied, apiv1.OutcomeDenied, http.StatusTooManyRequests, reason)
			return newError(probRateLimited, "too many requests without a valid token from this address; retry after the Retry-After delay").
				withHeader("Retry-After", retryAfter(delay))
		}
	}
	a.refused(r, actionDenied, apiv1.OutcomeDenied, status, reason)
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

// refused hands the audit event of a refused request to the aggregator,
// with every request-derived field cut to MaxFieldBytes.
func (a *API) refused(r *http.Request, action, outcome string, status int, reason string) {
	info := requestInfoFrom(r.Context())
	ev := a.event(r, action, apiv1.ResourceRef{Type: string(info.perm.Resource), ID: truncateField(idFromPath(r))}, "", outcome, status)
	ev.Reason = truncateField(reason)
	alone := a.denials.record(ev)
	msg := "request denied"
	if action == actionNotFound {
		msg = "object not found"
	}
	// Like the trail, the log says it once a window; the rest at debug.
	level := slog.LevelWarn
	if !alone {
		level = slog.LevelDebug
	}
	info.logger.Log(r.Context(), level, msg, "status", status, "reason", ev.Reason)
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

// rateLimit applies the per-token limit of the caller's role, when one
// is configured.
func (a *API) rateLimit(r *http.Request) error {
	p := requestInfoFrom(r.Context()).principal
	delay, ok := a.limiter.allow(p.TokenID, p.Role)
	if ok {
		return nil
	}
	return a.deny(r, http.StatusTooManyRequests, "rate limit of role "+p.Role+" exceeded").withHeader("Retry-After", retryAfter(delay))
}

// tokenCache keeps tokens found by hash so a request costs no store read;
// revocation invalidates by id. A lookup that raced an invalidation must
// not put back what was revoked, so put only succeeds when no
// invalidation happened since the epoch read before the lookup.
type tokenCache struct {
	mu     sync.RWMutex
	gen    uint64
	byHash map[string]store.TokenRecord
	// watchers are closed when their token is revoked, to end the long
	// requests (wait_for, watch) it opened; revoked remembers revocations
	// for a request that asks after the fact.
	watchers map[string]chan struct{}
	revoked  map[string]bool
}

func newTokenCache() *tokenCache {
	return &tokenCache{byHash: map[string]store.TokenRecord{}, watchers: map[string]chan struct{}{}, revoked: map[string]bool{}}
}

// revocation is closed once token id is revoked.
func (c *tokenCache) revocation(id string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.watchers[id]
	if !ok {
		ch = make(chan struct{})
		if c.revoked[id] {
			close(ch)
		} else {
			c.watchers[id] = ch
		}
	}
	return ch
}

func (c *tokenCache) get(hash string) (store.TokenRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.byHash[hash]
	return t, ok
}

// epoch is read before a store lookup and handed to put.
func (c *tokenCache) epoch() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (c *tokenCache) put(hash string, t store.TokenRecord, epoch uint64) {
	c.mu.Lock()
	if c.gen == epoch {
		c.byHash[hash] = t
	}
	c.mu.Unlock()
}

// invalidate forgets a revoked token and ends the long requests it opened.
func (c *tokenCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h, t := range c.byHash {
		if t.ID == id {
			delete(c.byHash, h)
		}
	}
	c.revoked[id] = true
	if ch, ok := c.watchers[id]; ok {
		close(ch)
		delete(c.watchers, id)
	}
}

// revocation is closed when the caller's token is revoked: long requests
// wait on it too, so a revoked token stops receiving at once.
func (a *API) revocation(r *http.Request) <-chan struct{} {
	return a.tokens.revocation(requestInfoFrom(r.Context()).principal.TokenID)
}

// RateLimit is a token bucket: PerSecond requests per second on average,
// Burst at once. A zero PerSecond means no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// bucket makes the limiter for one token; a Burst of 0 means the rate
// rounded down, at least 1.
func (l RateLimit) bucket() *rate.Limiter {
	burst := l.Burst
	if burst <= 0 {
		burst = max(1, int(l.PerSecond))
	}
	return rate.NewLimiter(rate.Limit(l.PerSecond), burst)
}

// limiter holds one token bucket per API token, sized by the token's role.
type limiter struct {
	fallback RateLimit
	perRole  map[string]RateLimit
	mu       sync.Mutex
	perID    map[string]*rate.Limiter
}

func newLimiter(fallback RateLimit, perRole map[string]RateLimit) *limiter {
	return &limiter{fallback: fallback, perRole: perRole, perID: map[string]*rate.Limiter{}}
}

// limitOf is the limit of a role: its own when configured, else the fallback.
func (l *limiter) limitOf(role string) RateLimit {
	if rl, ok := l.perRole[role]; ok {
		return rl
	}
	return l.fallback
}

// allow takes one request from the bucket of token id (of role), or says
// how long to wait: the delay the bucket's reservation would have had.
func (l *limiter) allow(id, role string) (time.Duration, bool) {
	rl := l.limitOf(role)
	if rl.PerSecond <= 0 {
		return 0, true
	}
	l.mu.Lock()
	b, ok := l.perID[id]
	if !ok {
		b = rl.bucket()
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

// ParseRoleRateLimits reads per-role limits written as
// "viewer=5,editor=20:40": role=requests-per-second, optionally :burst.
// A rate of 0 lifts the limit for that role.
func ParseRoleRateLimits(s string) (map[string]RateLimit, error) {
	out := map[string]RateLimit{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		role, spec, ok := strings.Cut(part, "=")
		role = strings.TrimSpace(role)
		if !ok || !slices.Contains(auth.Roles, role) {
			return nil, fmt.Errorf("%q: want role=rate[:burst] with role one of %s", part, strings.Join(auth.Roles, ", "))
		}
		if _, dup := out[role]; dup {
			return nil, fmt.Errorf("role %s is given twice", role)
		}
		rateText, burstText, hasBurst := strings.Cut(spec, ":")
		var rl RateLimit
		var err error
		if rl.PerSecond, err = strconv.ParseFloat(strings.TrimSpace(rateText), 64); err != nil || rl.PerSecond < 0 || math.IsInf(rl.PerSecond, 0) || math.IsNaN(rl.PerSecond) {
			return nil, fmt.Errorf("%q: the rate must be a number of requests per second, 0 or more", part)
		}
		if hasBurst {
			if rl.Burst, err = strconv.Atoi(strings.TrimSpace(burstText)); err != nil || rl.Burst < 1 {
				return nil, fmt.Errorf("%q: the burst must be a whole number, 1 or more", part)
			}
		}
		out[role] = rl
	}
	return out, nil
}
