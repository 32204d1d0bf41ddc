package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// ProblemBase prefixes every problem type URI.
const ProblemBase = "https://isolationhq.dev/problems/"

// The status and title each kind of problem answers with: one table, so
// a kind always means the same status everywhere.
var kinds = map[problem.Kind]struct {
	title  string
	status int
}{
	problem.Malformed:       {"Malformed request", http.StatusBadRequest},
	problem.Validation:      {"Invalid request", http.StatusBadRequest},
	problem.Unauthorized:    {"Authentication required", http.StatusUnauthorized},
	problem.Forbidden:       {"Permission denied", http.StatusForbidden},
	problem.NotFound:        {"Not found", http.StatusNotFound},
	problem.Method:          {"Method not allowed", http.StatusMethodNotAllowed},
	problem.Conflict:        {"Conflict", http.StatusConflict},
	problem.Gone:            {"Gone", http.StatusGone},
	problem.State:           {"Invalid state transition", http.StatusConflict},
	problem.InFlight:        {"Request with this Idempotency-Key in progress", http.StatusConflict},
	problem.Precondition:    {"Precondition failed", http.StatusPreconditionFailed},
	problem.TooLarge:        {"Request body too large", http.StatusRequestEntityTooLarge},
	problem.MediaType:       {"Unsupported media type", http.StatusUnsupportedMediaType},
	problem.IdemMismatch:    {"Idempotency-Key reused with another request", http.StatusUnprocessableEntity},
	problem.Limit:           {"Limit exceeded", http.StatusConflict},
	problem.AssertionBroken: {"A policy assertion would break", http.StatusUnprocessableEntity},
	problem.RateLimited:     {"Too many requests", http.StatusTooManyRequests},
	problem.Internal:        {"Internal server error", http.StatusInternalServerError},
	problem.Unavailable:     {"Service unavailable", http.StatusServiceUnavailable},
	problem.StorageFull:     {"Insufficient storage", http.StatusInsufficientStorage},
	problem.Unsupported:     {"Not implemented", http.StatusNotImplemented},
}

// httpStatus is the HTTP status a problem answers with.
func httpStatus(e *problem.Error) int { return kinds[e.Kind].status }

// Retry-After of the storage problems: a disk is freed by an operator (a
// while), a read-only or failing one may be back sooner.
const (
	retryAfterFull        = 30 * time.Second
	retryAfterUnavailable = 5 * time.Second
)

// asError maps any error to a *problem.Error. Store errors that reach
// here without a handler having named them become their generic kinds;
// anything else is internal and its text never leaves the server.
func asError(err error) (*problem.Error, bool) {
	if e, ok := problem.As(err); ok {
		return e, true
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return problem.New(problem.NotFound, "the object does not exist"), true
	case errors.Is(err, store.ErrPrecondition):
		return problem.New(problem.Precondition, "the object was changed by someone else; read it again and retry"), true
	case errors.Is(err, store.ErrConflict):
		return problem.New(problem.Conflict, "the request conflicts with an existing object"), true
	case errors.Is(err, store.ErrFull):
		e := problem.New(problem.StorageFull, "the server's disk is full: nothing was changed; retry once an operator has freed space")
		e.RetryAfter = retryAfterFull
		return e, true
	case errors.Is(err, store.ErrUnavailable):
		e := problem.New(problem.Unavailable, "the server cannot use its store now (its disk cannot be written, or its database cannot be reached): nothing was changed; retry after the Retry-After delay")
		e.RetryAfter = retryAfterUnavailable
		return e, true
	}
	return problem.New(problem.Internal, "the server could not complete the request; it has been logged"), false
}

// writeProblem is the one function that writes an error response.
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p, e := problemOf(r, err)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e.RetryAfter))
	}
	if e.Kind == problem.Unauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="isolationd", error="invalid_token"`)
	}
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", apiv1.MediaProblem)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Del("ETag")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// problemOf is the problem document err answers r with (a response, or
// the last message of a stream that has started), and err as a
// *problem.Error. An error of no known kind is logged here: its text never
// leaves the server.
func problemOf(r *http.Request, err error) (apiv1.Problem, *problem.Error) {
	e, known := asError(err)
	info := requestInfoFrom(r.Context())
	if info != nil {
		switch {
		case !known:
			info.logger.Error("request failed", "error", err.Error())
		case errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrUnavailable):
			info.logger.Warn("request refused: the store cannot write", "error", err.Error())
		}
	}
	k := kinds[e.Kind]
	p := apiv1.Problem{
		Type:     ProblemBase + string(e.Kind),
		Title:    k.title,
		Status:   k.status,
		Detail:   e.Detail,
		Instance: r.URL.Path,
		Errors:   e.Fields,

		ExistingID: e.ExistingID,
		ExpiredAt:  e.ExpiredAt,
		TTLSeconds: e.TTLSeconds,
	}
	if info != nil {
		p.RequestID = info.requestID
	}
	return p, e
}

// writeJSON writes a success response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshalled; failing here is a bug.
		panic(fmt.Sprintf("marshal response: %v", err))
	}
	writeBody(w, status, append(body, '\n'))
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", apiv1.MediaJSON)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
