package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// getIdempotencyKey answers whether the caller's write that carried a key
// was committed, so a client whose answer was lost, and whose retries ran
// out, can find what it created instead of orphaning it. Keys are scoped
// to the token, as their records are: a key of another token is a 404
// exactly like a key never used, so nothing leaks across tokens.
func (a *API) getIdempotencyKey(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	if err := checkIdempotencyKey(key); err != nil {
		return err
	}
	scope := requestInfoFrom(r.Context()).principal.TokenID
	// In flight first: a request that commits between the two looks ups is
	// then seen as in progress, never as not found.
	if a.inflight.running(flightKey(scope, key)) {
		writeJSON(w, http.StatusOK, apiv1.IdempotencyKey{Key: key, State: apiv1.IdempotencyInProgress})
		return nil
	}
	rec, err := a.store.GetIdempotency(r.Context(), scope, key)
	if errors.Is(err, store.ErrNotFound) {
		return problem.New(problem.NotFound, "this token committed no request with that Idempotency-Key in the last %s", IdempotencyTTL)
	}
	if err != nil {
		return err
	}
	created, expires := rec.CreatedAt.UTC(), rec.ExpiresAt.UTC()
	writeJSON(w, http.StatusOK, apiv1.IdempotencyKey{
		Key: key, State: apiv1.IdempotencyCommitted, Method: rec.Method, Path: rec.Path,
		StatusCode: rec.StatusCode, ResourceID: rec.ResourceID, CreatedAt: &created, ExpiresAt: &expires,
	})
	return nil
}

// checkIdempotencyKey is the rule every Idempotency-Key follows.
func checkIdempotencyKey(key string) error {
	if key == "" || len(key) > 255 || strings.ContainsFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		return problem.Field(problem.Malformed, apiv1.HeaderIdempotencyKey, "must be 1-255 visible ASCII characters")
	}
	return nil
}

// flightKey is the in-flight mark of a key of a token.
func flightKey(scope, key string) string { return scope + "\x00" + key }

// running reports whether the first request with k is still running.
func (f *inflight) running(k string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys[k]
}
