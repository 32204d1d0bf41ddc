// Package problem is the one error type of isolationd's server: what
// went wrong with a request, in terms a client can act on. The
// application layer (control) and the API both return it; the API alone
// turns a Kind into an HTTP status and writes the problem response
// (RFC 9457), so nothing below it knows HTTP.
package problem

import (
	"errors"
	"fmt"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Kind is what went wrong: the last segment of the problem's type URI.
type Kind string

// The kinds of problem. The API maps each to one status and title.
const (
	Malformed    Kind = "malformed-request"
	Validation   Kind = "validation"
	Unauthorized Kind = "unauthorized"
	Forbidden    Kind = "forbidden"
	NotFound     Kind = "not-found"
	Method       Kind = "method-not-allowed"
	Conflict     Kind = "conflict"
	// Gone: the object existed and the server removed it on its own (an
	// environment whose TTL expired); the problem says when and why.
	Gone         Kind = "gone"
	State        Kind = "invalid-state"
	InFlight     Kind = "idempotency-in-flight"
	Precondition Kind = "precondition-failed"
	TooLarge     Kind = "body-too-large"
	MediaType    Kind = "unsupported-media-type"
	IdemMismatch Kind = "idempotency-mismatch"
	Limit        Kind = "limit-exceeded"
	// AssertionBroken: the write would break one of the assertions
	// (policy tests) of a project it affects, or an assertion being
	// created does not hold.
	AssertionBroken Kind = "assertion-broken"
	RateLimited     Kind = "rate-limited"
	Internal        Kind = "internal"
	Unavailable     Kind = "unavailable"
	StorageFull     Kind = "insufficient-storage"
	// Unsupported: this server was started without what the request needs
	// (an image store); asking again will not help.
	Unsupported Kind = "not-implemented"
)

// Error is a refused or failed request on its way to becoming a problem
// response.
type Error struct {
	Kind   Kind
	Detail string
	// Fields name the fields at fault, each with the rule it broke.
	Fields []apiv1.FieldError
	// ExistingID is the object holding a name a conflict refused, so a
	// client can adopt it.
	ExistingID string
	// ExpiredAt and TTLSeconds, on a Gone problem, say when the object's
	// TTL expired and what it was.
	ExpiredAt  *time.Time
	TTLSeconds *int64
	// RetryAfter, when positive, is how long to wait before retrying.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return string(e.Kind) + ": " + e.Detail }

// New returns a problem of kind with a formatted detail.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// Field returns a problem of kind about one field: the detail is the
// field's name followed by message.
func Field(kind Kind, field, message string) *Error {
	return &Error{Kind: kind, Detail: field + " " + message, Fields: []apiv1.FieldError{{Field: field, Message: message}}}
}

// Invalid returns the validation problem of fields.
func Invalid(fields []apiv1.FieldError) *Error {
	detail := "the request has invalid fields"
	if len(fields) == 1 {
		detail = fields[0].Field + " " + fields[0].Message
	}
	return &Error{Kind: Validation, Detail: detail, Fields: fields}
}

// NoSuch is the problem of a missing object, named when id is set.
func NoSuch(kind, id string) *Error {
	if kind == "" {
		kind = "object"
	}
	if id == "" {
		return New(NotFound, "no such %s", kind)
	}
	return New(NotFound, "%s %q does not exist", kind, id)
}

// As returns err's *Error, if it is or wraps one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
