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
	flight   string // the in-flight mark, released by route; "" when another request holds it
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

// idempotencyMark takes the in-flight mark of the request's
// Idempotency-Key before its body is read (readBody), so that a request
// whose body is still arriving holds its key. A malformed key takes no
// mark: idempotencyBegin refuses it.
func (a *API) idempotencyMark(r *http.Request) {
	key := r.Header.Get(apiv1.HeaderIdempotencyKey)
	if checkIdempotencyKey(key) != nil {
		return
	}
	info := requestInfoFrom(r.Context())
	req := &idemRequest{key: key}
	if flight := flightKey(info.principal.TokenID, key); a.inflight.begin(flight) {
		req.flight = flight // route releases the mark when the request ends
	}
	info.idem = req
}

// idempotencyBegin handles Idempotency-Key before the handler runs: it
// replays a stored response (replayed), refuses a key reused with another
// request (422) or still in flight (409), or leaves the request marked so
// that commit stores its response.
func (a *API) idempotencyBegin(w http.ResponseWriter, r *http.Request) (replayed bool, err error) {
	key := r.Header.Get(apiv1.HeaderIdempotencyKey)
	if key == "" {
		return false, nil
	}
	if err := checkIdempotencyKey(key); err != nil {
		return false, err
	}
	info := requestInfoFrom(r.Context())
	req := info.idem
	sum := sha256.Sum256(info.body)
	req.bodyHash = hex.EncodeToString(sum[:])
	if replayed, err := a.replay(w, r, info.principal.TokenID, req); replayed || err != nil {
		return replayed, err
	}
	if req.flight == "" {
		// Another request holds the key. One racing the first request's
		// last moments (committed, answered, not yet released) has
		// replayed above instead of seeing 409.
		return false, problem.New(problem.InFlight, "a request with this Idempotency-Key is still in progress; retry when it has finished")
	}
	return false, nil
}

// replay answers from the stored record of (scope, key) if there is one.
func (a *API) replay(w http.ResponseWriter, r *http.Request, scope string, req *idemRequest) (bool, error) {
	rec, err := a.store.GetIdempotency(r.Context(), scope, req.key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	if rec.Method != r.Method || rec.Path != r.URL.Path || rec.BodyHash != req.bodyHash {
		return false, problem.New(problem.IdemMismatch, "this Idempotency-Key was first used for a different request (%s %s with another body); use a new key", rec.Method, rec.Path)
	}
	w.Header().Set("Idempotent-Replayed", "true")
	writeStored(w, rec.StatusCode, rec.Header, rec.Body)
	return true, nil
}
