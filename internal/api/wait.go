package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Waiting conditions beyond the states themselves.
const (
	waitDeleted  = "deleted"  // the environment is gone (answered 404)
	waitEnforced = "enforced" // its current rules are applied
)

// DefaultWait is wait_for's timeout when none is given.
const DefaultWait = 30 * time.Second

// parseWait reads wait_for (comma-separated states, "deleted",
// "enforced") and timeout (a Go duration such as 30s, or seconds).
func (a *API) parseWait(r *http.Request) ([]string, time.Duration, error) {
	q := r.URL.Query()
	var want []string
	for w := range strings.SplitSeq(q.Get("wait_for"), ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		if !slices.Contains(apiv1.States, w) && w != waitDeleted && w != waitEnforced {
			return nil, 0, problem.Field(problem.Validation, "wait_for", "must list states (pending, provisioning, ready, updating, failed, deleting, expired), deleted or enforced, separated by commas")
		}
		want = append(want, w)
	}
	if len(want) == 0 {
		return nil, 0, problem.Field(problem.Validation, "wait_for", "is required with timeout")
	}
	timeout := DefaultWait
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			// Whole seconds, bounded before multiplying: a huge count must
			// not wrap around to a duration in range.
			n, nerr := strconv.Atoi(s)
			if nerr == nil && n > int(a.maxWait/time.Second) {
				n = -1
			}
			d, err = time.Duration(n)*time.Second, nerr
		}
		if err != nil || d < 0 || d > a.maxWait {
			return nil, 0, problem.Field(problem.Validation, "timeout", fmt.Sprintf("must be a duration such as 30s, at most %s", a.maxWait))
		}
		timeout = d
	}
	return want, timeout, nil
}

// satisfied reports whether e meets one of the wait conditions. An
// environment that failed answers every wait: waiting longer cannot help.
func satisfied(e apiv1.Environment, want []string) bool {
	if slices.Contains(want, e.State) || e.State == apiv1.StateFailed {
		return true
	}
	return slices.Contains(want, waitEnforced) && e.Enforcement.Enforced &&
		e.Enforcement.ObservedGeneration == e.Enforcement.Generation
}

// waitEnvironment answers GET /v1/environments/{id}?wait_for=... once the
// condition holds, woken by the notify hub (no polling); at the timeout it
// answers the current object with X-Wait-Timeout: true.
func (a *API) waitEnvironment(w http.ResponseWriter, r *http.Request) error {
	want, timeout, err := a.parseWait(r)
	if err != nil {
		return err
	}
	id := idFromPath(r)
	// The request's own timeout is real time: it bounds how long a
	// connection is held, whatever the server's clock says.
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	revoked := a.revocation(r)
	expired, stop := a.expiry(r)
	defer stop()
	for {
		changed := a.hub.Changed(id)
		e, err := a.store.GetEnvironment(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return control.Missing(r.Context(), a.store, id)
		}
		if err != nil {
			return err
		}
		if satisfied(e, want) {
			writeObject(w, http.StatusOK, e, e.Generation)
			return nil
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-a.closing:
		case <-r.Context().Done():
			return nil
		case <-revoked:
			return a.unauthenticated(r, "token revoked while waiting", "token revoked: this bearer token was revoked while waiting; use another one")
		case <-expired:
			return a.unauthenticated(r, "token expired while waiting", expiredDetail(*requestInfoFrom(r.Context()).principal.ExpiresAt))
		}
		w.Header().Set("X-Wait-Timeout", "true")
		writeObject(w, http.StatusOK, e, e.Generation)
		return nil
	}
}

// watchEnvironment streams the environment as Server-Sent Events: an
// "environment" event now and after each change, "deleted" when it is
// gone, and a comment every 15 s to keep proxies from closing the stream.
func (a *API) watchEnvironment(w http.ResponseWriter, r *http.Request) error {
	id := idFromPath(r)
	stream := a.startSSE(w, r)
	defer stream.close()
	var last []byte
	for {
		changed := a.hub.Changed(id)
		e, err := a.store.GetEnvironment(r.Context(), id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// JSON-encoded, as every data line is: %q is Go's quoting, not
			// JSON's. (The id matched a stored environment at authorization,
			// so it is one the server minted, not text a caller chose.)
			data, _ := json.Marshal(struct {
				ID string `json:"id"`
			}{id})
			stream.send(sseEvent("deleted", "", data))
			return nil
		case err != nil:
			requestInfoFrom(r.Context()).logger.Error("watch: read environment", "error", err.Error())
			return nil
		}
		data, _ := json.Marshal(e)
		if !bytes.Equal(data, last) {
			if !stream.send(sseEvent("environment", strconv.FormatInt(e.Generation, 10), data)) {
				return nil
			}
			last = data
		}
		if !stream.wait(changed) {
			return nil
		}
	}
}

// expiry fires when the caller's token expires, so that a long request
// ends with it as it does on revocation; it never fires for a token
// without an expiry. stop releases the timer.
func (a *API) expiry(r *http.Request) (fired <-chan time.Time, stop func() bool) {
	at := requestInfoFrom(r.Context()).principal.ExpiresAt
	if at == nil {
		return nil, func() bool { return false }
	}
	// On the server's clock, as authentication reads the expiry: the token
	// ends at the instant it would start to be refused.
	clock := a.control.Clock()
	t := clock.NewTimer(at.Sub(clock.Now()))
	return t.Chan(), t.Stop
}
