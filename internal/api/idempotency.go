package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// idemRequest is an Idempotency-Key request on its way through.
type idemRequest struct {
	key      string
	bodyHash string
	flight   string // the in-flight mark, released by route
}

// inflight is the set of idempotency keys whose first request is running.
type inflight struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (f *inflight) begin(k string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys[k] {
		return false
	}
	f.keys[k] = true
	return true
}

func (f *inflight) end(k string) {
	f.mu.Lock()
	delete(f.keys, k)
	f.mu.Unlock()
}

// idempotencyBegin handles Idempotency-Key before the handler runs: it
// replays a stored response (errHandled), refuses a key reused with
// another request (422) or still in flight (409), or marks the request so
// commit stores its response. The in-flight mark is released when the
// request ends.
func (a *API) idempotencyBegin(w http.ResponseWriter, r *http.Request) error {
	key := r.Header.Get(apiv1.HeaderIdempotencyKey)
	if key == "" {
		return nil
	}
	if err := checkIdempotencyKey(key); err != nil {
		return err
	}
	info := requestInfoFrom(r.Context())
	scope := info.principal.TokenID
	req := &idemRequest{key: key, flight: flightKey(scope, key)}
	// The in-flight mark is taken before the body is read, so a request
	// whose body is still arriving holds its key.
	if !a.inflight.begin(req.flight) {
		// A retry racing the first request's last moments (committed,
		// answered, not yet released) replays instead of seeing 409.
		if err := a.hashBody(r, req); err != nil {
			return err
		}
		if done, err := a.replay(w, r, scope, req); done || err != nil {
			return err
		}
		return problem.New(problem.InFlight, "a request with this Idempotency-Key is still in progress; retry when it has finished")
	}
	info.idem = req // route releases the mark when the request ends
	if err := a.hashBody(r, req); err != nil {
		return err
	}
	if done, err := a.replay(w, r, scope, req); done || err != nil {
		return err
	}
	return nil
}

func (a *API) hashBody(r *http.Request, req *idemRequest) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	req.bodyHash = hex.EncodeToString(sum[:])
	return nil
}

// replay answers from the stored record of (scope, key) if there is one.
func (a *API) replay(w http.ResponseWriter, r *http.Request, scope string, req *idemRequest) (bool, error) {
	rec, err := a.store.GetIdempotency(r.Context(), scope, req.key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return true, err
	}
	if rec.Method != r.Method || rec.Path != r.URL.Path || rec.BodyHash != req.bodyHash {
		return true, problem.New(problem.IdemMismatch, "this Idempotency-Key was first used for a different request (%s %s with another body); use a new key", rec.Method, rec.Path)
	}
	w.Header().Set("Idempotent-Replayed", "true")
	writeStored(w, rec.StatusCode, rec.Header, rec.Body)
	return true, errHandled
}
