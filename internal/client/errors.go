package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Error is every non-2xx answer from isolationd: the status, the server's
// RFC 9457 problem and the request id to quote to an operator.
type Error struct {
	StatusCode int
	Problem    apiv1.Problem
	RequestID  string

	method, path string
}

// Error renders the problem in one line: what failed, why, and the field
// errors, ending with the request id.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d", e.method, e.path, e.StatusCode)
	if e.Problem.Title != "" {
		fmt.Fprintf(&b, " %s", e.Problem.Title)
	} else {
		fmt.Fprintf(&b, " %s", http.StatusText(e.StatusCode))
	}
	if e.Problem.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Problem.Detail)
	}
	for _, fe := range e.Problem.Errors {
		fmt.Fprintf(&b, "; %s: %s", fe.Field, fe.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request id %s)", e.RequestID)
	}
	return b.String()
}

// newError builds an *Error from a response. A body that is not a problem
// (a proxy's HTML page, say) still yields a usable error, never a panic.
func newError(method, path string, status int, requestID string, body []byte) *Error {
	e := &Error{StatusCode: status, RequestID: requestID, method: method, path: path}
	if err := json.Unmarshal(body, &e.Problem); err != nil || e.Problem.Status == 0 && e.Problem.Title == "" {
		e.Problem = apiv1.Problem{Title: http.StatusText(status), Detail: snippet(body)}
	}
	e.Problem.Status = status
	if e.RequestID == "" {
		e.RequestID = e.Problem.RequestID
	}
	return e
}

// snippet keeps a short, printable prefix of a non-problem body.
func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ToValidUTF8(s, "")
}

// StatusCode returns the HTTP status of err when it is (or wraps) an *Error, else 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is a 404: the object does not exist (any more).
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsPreconditionFailed reports whether err is a 412: the If-Match ETag is
// stale because someone else changed the object first.
func IsPreconditionFailed(err error) bool {
	return StatusCode(err) == http.StatusPreconditionFailed
}

// IsConflict reports whether err is a 409: a duplicate name, an illegal
// state transition, or a project that still has environments.
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }
