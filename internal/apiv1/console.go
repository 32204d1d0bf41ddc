package apiv1

import "time"

// UISession is a web console session, as POST /v1/ui/sessions answers it
// and the audit trail records it: never its secret, which only the
// session's cookie holds.
type UISession struct {
	ID string `json:"id"`
	// TokenID is the token it was signed in with: the session may do
	// what that token may read, and ends with it.
	TokenID   string    `json:"token_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AuditVerification is the answer of GET /v1/audit-events/verify: whether
// the events from FromSeq to ToSeq are intact and link to the event before
// FromSeq (the chain's start when FromSeq is 1).
type AuditVerification struct {
	FromSeq int64 `json:"from_seq"`
	// ToSeq is the last event verified intact (FromSeq-1 when none was).
	ToSeq int64 `json:"to_seq"`
	// Events is how many events were verified intact.
	Events int64 `json:"events"`
	OK     bool  `json:"ok"`
	// KeyID names the HMAC key that sealed the range's keyed events, ""
	// when none was keyed.
	KeyID string `json:"key_id,omitempty"`
	// Broken is the first event that does not verify.
	Broken *AuditBreak `json:"broken,omitempty"`
}

// AuditBreak is the first event of a range that does not verify, and why.
type AuditBreak struct {
	Seq    int64  `json:"seq"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
	// NeedsKey: the event is keyed and the server holds no key to check it.
	NeedsKey bool `json:"needs_key,omitempty"`
}
