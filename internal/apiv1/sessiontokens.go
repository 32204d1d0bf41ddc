package apiv1

import "time"

// Session tokens: short-lived credentials scoped to one environment,
// minted by a token that may exec there (POST
// /v1/environments/{id}/session-tokens), for exec and nothing else.

// Bounds of a session token's ttl.
const (
	DefaultSessionTTL = 15 * time.Minute
	MinSessionTTL     = time.Minute
	MaxSessionTTL     = 24 * time.Hour
)

// SessionTokenCreate is the body of POST
// /v1/environments/{id}/session-tokens. The token expires after TTL, or
// with the token that mints it if that expires first.
type SessionTokenCreate struct {
	// TTL is a Go duration ("15m", "1h30m") from 1m to 24h; "" is 15m.
	TTL string `json:"ttl,omitempty"`
}

// Validate checks a session token creation body.
func (c SessionTokenCreate) Validate() []FieldError {
	return ValidateSessionTTL("ttl", c.TTL)
}

// Duration is the session token's lifetime: TTL, or the default when it
// is empty. It is valid only when Validate found nothing.
func (c SessionTokenCreate) Duration() time.Duration {
	if c.TTL == "" {
		return DefaultSessionTTL
	}
	d, _ := time.ParseDuration(c.TTL)
	return d
}

// ValidateSessionTTL checks a session token's ttl: empty, or a Go
// duration from MinSessionTTL to MaxSessionTTL.
func ValidateSessionTTL(field, v string) []FieldError {
	if v == "" {
		return nil
	}
	var e errs
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		e.add(field, "must be a duration such as 15m or 1h30m, got %q", v)
	case d < MinSessionTTL || d > MaxSessionTTL:
		e.add(field, "must be between 1m and 24h, got %s", v)
	}
	return nilIfEmpty(e)
}
