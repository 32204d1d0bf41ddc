package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// ProblemBase prefixes every problem type URI.
const ProblemBase = "https://isolationhq.dev/problems/"

// Problem kinds: the last segment of the type URI, with the title and the
// status each one answers with. One table, so a kind always means the
// same status everywhere.
type problemKind struct {
	slug   string
	title  string
	status int
}

var (
	probMalformed    = problemKind{"malformed-request", "Malformed request", http.StatusBadRequest}
	probValidation   = problemKind{"validation", "Invalid request", http.StatusBadRequest}
	probUnauthorized = problemKind{"unauthorized", "Authentication required", http.StatusUnauthorized}
	probForbidden    = problemKind{"forbidden", "Permission denied", http.StatusForbidden}
	probNotFound     = problemKind{"not-found", "Not found", http.StatusNotFound}
	probMethod       = problemKind{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed}
	probConflict     = problemKind{"conflict", "Conflict", http.StatusConflict}
	probState        = problemKind{"invalid-state", "Invalid state transition", http.StatusConflict}
	probInFlight     = problemKind{"idempotency-in-flight", "Request with this Idempotency-Key in progress", http.StatusConflict}
	probPrecondition = problemKind{"precondition-failed", "Precondition failed", http.StatusPreconditionFailed}
	probTooLarge     = problemKind{"body-too-large", "Request body too large", http.StatusRequestEntityTooLarge}
	probMediaType    = problemKind{"unsupported-media-type", "Unsupported media type", http.StatusUnsupportedMediaType}
	probIdemMismatch = problemKind{"idempotency-mismatch", "Idempotency-Key reused with another request", http.StatusUnprocessableEntity}
	probLimit        = problemKind{"limit-exceeded", "Limit exceeded", http.StatusConflict}
	probRateLimited  = problemKind{"rate-limited", "Too many requests", http.StatusTooManyRequests}
	probInternal     = problemKind{"internal", "Internal server error", http.StatusInternalServerError}
	probUnavailable  = problemKind{"unavailable", "Service unavailable", http.StatusServiceUnavailable}
	probStorageFull  = problemKind{"insufficient-storage", "Insufficient storage", http.StatusInsufficientStorage}
)

// Retry-After of the storage problems: a disk is freed by an operator (a
// while), a read-only or failing one may be back sooner.
const (
	retryAfterFull        = "30"
	retryAfterUnavailable = "5"
)

// Error is a failed request on its way to becoming a problem response.
// Handlers return it; writeError turns it, or any other error, into the
// one response format.
type Error struct {
	kind   problemKind
	detail string
	fields []apiv1.FieldError
	header http.Header // extra headers (Allow, Retry-After, WWW-Authenticate)
	// existingID is the object holding a name a 409 refused.
	existingID string
}

func (e *Error) Error() string { return e.kind.title + ": " + e.detail }

// Status is the HTTP status the error answers with.
func (e *Error) Status() int { return e.kind.status }

func newError(k problemKind, format string, args ...any) *Error {
	return &Error{kind: k, detail: fmt.Sprintf(format, args...)}
}

func validationError(fields []apiv1.FieldError) *Error {
	detail := "the request has invalid fields"
	if len(fields) == 1 {
		detail = fields[0].Field + " " + fields[0].Message
	}
	return &Error{kind: probValidation, detail: detail, fields: fields}
}

func fieldError(k problemKind, field, message string) *Error {
	return &Error{kind: k, detail: field + " " + message, fields: []apiv1.FieldError{{Field: field, Message: message}}}
}

func (e *Error) withHeader(k, v string) *Error {
	if e.header == nil {
		e.header = http.Header{}
	}
	e.header.Set(k, v)
	return e
}

// asError maps any error to an *Error. Store errors that reach here
// without a handler having named them become their generic kinds; anything
// else is internal and its text never leaves the server.
func asError(err error) (*Error, bool) {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e, true
	case errors.Is(err, store.ErrNotFound):
		return newError(probNotFound, "the object does not exist"), true
	case errors.Is(err, store.ErrPrecondition):
		return newError(probPrecondition, "the object was changed by someone else; read it again and retry"), true
	case errors.Is(err, store.ErrConflict):
		return newError(probConflict, "the request conflicts with an existing object"), true
	case errors.Is(err, store.ErrFull):
		return newError(probStorageFull, "the server's disk is full: nothing was changed; retry once an operator has freed space").
			withHeader("Retry-After", retryAfterFull), true
	case errors.Is(err, store.ErrUnavailable):
		return newError(probUnavailable, "the server cannot write to its store now: nothing was changed; retry after the Retry-After delay").
			withHeader("Retry-After", retryAfterUnavailable), true
	}
	return newError(probInternal, "the server could not complete the request; it has been logged"), false
}

// writeProblem is the one function that writes an error response.
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
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
	p := apiv1.Problem{
		Type:     ProblemBase + e.kind.slug,
		Title:    e.kind.title,
		Status:   e.kind.status,
		Detail:   e.detail,
		Instance: r.URL.Path,
		Errors:   e.fields,

		ExistingID: e.existingID,
	}
	if info != nil {
		p.RequestID = info.requestID
	}
	for k, vs := range e.header {
		w.Header()[k] = vs
	}
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", apiv1.MediaProblem)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Del("ETag")
	w.WriteHeader(e.kind.status)
	_, _ = w.Write(append(body, '\n'))
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
