package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

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
		// A problem about one field says it in its detail already
		// ("name is already taken..."): saying it twice reads as two faults.
		if strings.HasPrefix(e.Problem.Detail, fe.Field+" "+fe.Message) {
			continue
		}
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
	var p apiv1.Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Status == 0 && p.Title == "" {
		p = apiv1.Problem{Title: http.StatusText(status), Detail: snippet(body)}
	}
	p.Status = status
	return problemError(method, path, requestID, p)
}

// problemError is the *Error of a problem the server sent, as an answer or
// inside one (an exec session that failed after it started); its status
// is the problem's.
func problemError(method, path, requestID string, p apiv1.Problem) *Error {
	if requestID == "" {
		requestID = p.RequestID
	}
	return &Error{StatusCode: p.Status, Problem: p, RequestID: requestID, method: method, path: path}
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

// IsGone reports whether err says the object does not exist any more,
// for whatever reason: a 404, or the 410 of an environment its TTL
// removed (see Expiry).
func IsGone(err error) bool { return IsNotFound(err) || StatusCode(err) == http.StatusGone }

// Expiry is, for a 410 answering a request about an environment its TTL
// removed, when it expired and its ttl_seconds; ok is false for any
// other error.
func Expiry(err error) (expiredAt time.Time, ttlSeconds int64, ok bool) {
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusGone || e.Problem.ExpiredAt == nil {
		return time.Time{}, 0, false
	}
	if e.Problem.TTLSeconds != nil {
		ttlSeconds = *e.Problem.TTLSeconds
	}
	return *e.Problem.ExpiredAt, ttlSeconds, true
}

// IsPreconditionFailed reports whether err is a 412: the If-Match ETag is
// stale because someone else changed the object first.
func IsPreconditionFailed(err error) bool {
	return StatusCode(err) == http.StatusPreconditionFailed
}

// IsConflict reports whether err is a 409: a duplicate name, an illegal
// state transition, or a project that still has environments.
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// GaveUpError is a call that kept failing in a way worth retrying (429,
// 5xx, a connection error, a lost answer) until its deadline or its
// MaxRetries ran out. It unwraps to the last failure (an *Error for an
// answer, so StatusCode still works) and to the context's error.
type GaveUpError struct {
	Method, Path string
	Attempts     int
	Elapsed      time.Duration
	// Last is the last attempt's failure: an *Error or a transport error.
	Last error
	// Cause is the context's error when the deadline (or a cancel) ended
	// the retries; nil when MaxRetries did.
	Cause error
	// MaxRetries is the cap that ended the retries, when one did.
	MaxRetries int
	// RetryAfter is the wait that would have passed the deadline, if that
	// is why the retries ended early.
	RetryAfter time.Duration
	// Unanswered: at least one attempt may have reached the server and been
	// done without its answer reaching the client, so the outcome of a
	// write is unknown (see UnknownOutcome).
	Unanswered bool
	// IdempotencyKey is the key every attempt carried ("" for GET and DELETE).
	IdempotencyKey string
	RequestID      string
}

func (e *GaveUpError) Error() string {
	var b strings.Builder
	attempts := "attempts"
	if e.Attempts == 1 {
		attempts = "attempt"
	}
	fmt.Fprintf(&b, "%s %s: gave up after %d %s in %s", e.Method, e.Path, e.Attempts, attempts, roundElapsed(e.Elapsed))
	switch {
	case e.RetryAfter > 0:
		fmt.Fprintf(&b, " (the next retry, in %s, would pass the deadline)", roundElapsed(e.RetryAfter))
	case e.Cause != nil:
		fmt.Fprintf(&b, " (%s)", e.Cause)
	default:
		fmt.Fprintf(&b, " (max_retries %d)", e.MaxRetries)
	}
	var apiErr *Error
	switch {
	case errors.As(e.Last, &apiErr):
		fmt.Fprintf(&b, "; last answer %d %s", apiErr.StatusCode, http.StatusText(apiErr.StatusCode))
		if d := apiErr.Problem.Detail; d != "" {
			fmt.Fprintf(&b, ": %s", d)
		}
	case e.Last != nil:
		fmt.Fprintf(&b, "; last attempt got no answer: %s", e.Last)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request id %s)", e.RequestID)
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As the last failure and the context's error.
func (e *GaveUpError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Last, e.Cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// roundElapsed keeps a duration readable: 2m0s, 1.25s, 40ms.
func roundElapsed(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// UnknownOutcome reports whether err is a write that may have been done
// by the server although no answer said so (an answer lost, a deadline
// that fired mid-request), and returns the Idempotency-Key it carried:
// ask the server about that key (IdempotencyKeys().Get) to know.
func UnknownOutcome(err error) (idempotencyKey string, unknown bool) {
	var g *GaveUpError
	if !errors.As(err, &g) || !g.Unanswered || g.IdempotencyKey == "" {
		return "", false
	}
	return g.IdempotencyKey, true
}

// ExistingID is, for a 409 refusing a name already taken, the id of the
// object holding it; "" otherwise.
func ExistingID(err error) string {
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusConflict {
		return e.Problem.ExistingID
	}
	return ""
}

// RequestID is the request id of the answer err is (or wraps), to quote
// to an operator; "" when err is no answer of the server.
func RequestID(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.RequestID
	}
	return ""
}
