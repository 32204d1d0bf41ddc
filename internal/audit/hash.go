// Package audit makes isolationd's audit trail tamper-evident: it hashes
// events into a SHA-256 chain (or an HMAC-SHA256 one, keyed), verifies a stored chain, and writes events
// as JSON lines for SIEM ingestion. Storing events is the store's job.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	gohash "hash"
	"strconv"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// GenesisHash is the PrevHash of the first event of a chain: 64 zeros.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// hashDomain opens every hashed message, so that a change to the encoding
// below must come with a new domain and old chains stay verifiable.
const hashDomain = "isolationd.audit.v1"

// Hash returns the hex SHA-256 of ev's canonical encoding, which covers
// every field except Hash itself. The encoding (version 1) is frozen:
//
//	"isolationd.audit.v1", then for each field in this order
//	seq, id, time, request_id, actor.token_id, actor.name, source.ip,
//	source.user_agent, project_id, action, resource.type, resource.id,
//	outcome, status_code, reason, changes, prev_hash
//	its length as an 8-byte big-endian integer followed by its bytes:
//	integers in decimal, time as RFC 3339 with nanoseconds in UTC
//	(time.RFC3339Nano), strings as their UTF-8 bytes, and changes as
//	canonical JSON (see CanonicalChanges; "null" when absent).
//
// Length prefixes make the encoding unambiguous without escaping. Hash
// returns "" when Changes cannot be encoded as JSON; Normalize reports why.
// A keyed event (KeyID set) is hashed by Key.Hash instead.
func Hash(ev apiv1.AuditEvent) string {
	changes, err := CanonicalChanges(ev.Changes)
	if err != nil {
		return ""
	}
	return hash(sha256.New(), hashDomain, ev, changes)
}

// hash writes ev's encoding (see Hash) into h under domain and returns
// the hex digest. A keyed encoding ends with the key id, so that which key
// sealed an event cannot be changed either.
func hash(h gohash.Hash, domain string, ev apiv1.AuditEvent, changes []byte) string {
	var n [8]byte
	write := func(s []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write(s)
	}
	write([]byte(domain))
	for _, f := range []string{
		strconv.FormatInt(ev.Seq, 10),
		ev.ID,
		ev.Time.UTC().Format(time.RFC3339Nano),
		ev.RequestID,
		ev.Actor.TokenID,
		ev.Actor.Name,
		ev.Source.IP,
		ev.Source.UserAgent,
		ev.ProjectID,
		ev.Action,
		ev.Resource.Type,
		ev.Resource.ID,
		ev.Outcome,
		strconv.Itoa(ev.StatusCode),
		ev.Reason,
	} {
		write([]byte(f))
	}
	write(changes)
	write([]byte(ev.PrevHash))
	if domain != hashDomain {
		write([]byte(ev.KeyID))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CanonicalChanges encodes c as canonical JSON: object keys sorted, no
// insignificant whitespace, numbers exactly as first encoded, no HTML
// escaping. Before and after values of any Go type hash the same after a
// round trip through storage (a struct and the map decoded from it agree).
func CanonicalChanges(c *apiv1.Changes) ([]byte, error) {
	if c == nil {
		return []byte("null"), nil
	}
	raw, err := marshal(c)
	if err != nil {
		return nil, fmt.Errorf("audit: encode changes: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("audit: decode changes: %w", err)
	}
	return marshal(v)
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Seal returns ev as it is stored, with its Hash set (and KeyID, when key
// is not nil: an HMAC-SHA256 under key instead of a SHA-256), and its
// changes as canonical JSON for storage. The event is normalised first:
// time in UTC without a monotonic reading, and Changes re-read from
// canonical JSON (json.RawMessage before and after, nil for JSON null), so
// that the event a caller holds after AppendAudit equals, and hashes the
// same as, the one read back later. Seq and PrevHash must already be set.
func Seal(ev apiv1.AuditEvent, key *Key) (apiv1.AuditEvent, []byte, error) {
	ev.Time = ev.Time.UTC().Round(0)
	changes, err := CanonicalChanges(ev.Changes)
	if err != nil {
		return ev, nil, err
	}
	if ev.Changes, err = DecodeChanges(changes); err != nil {
		return ev, nil, err
	}
	ev.KeyID = ""
	if key != nil {
		ev.KeyID = key.id
		ev.Hash = key.hash(ev, changes)
	} else {
		ev.Hash = hash(sha256.New(), hashDomain, ev, changes)
	}
	return ev, changes, nil
}

// DecodeChanges turns canonical changes JSON back into Changes whose
// before and after are json.RawMessage (nil for JSON null), so re-encoding
// reproduces the stored bytes exactly.
func DecodeChanges(canon []byte) (*apiv1.Changes, error) {
	if bytes.Equal(canon, []byte("null")) || len(canon) == 0 {
		return nil, nil
	}
	var raw struct {
		Before json.RawMessage `json:"before"`
		After  json.RawMessage `json:"after"`
	}
	if err := json.Unmarshal(canon, &raw); err != nil {
		return nil, fmt.Errorf("audit: decode changes: %w", err)
	}
	return &apiv1.Changes{Before: rawOrNil(raw.Before), After: rawOrNil(raw.After)}, nil
}

func rawOrNil(m json.RawMessage) any {
	if len(m) == 0 || bytes.Equal(m, []byte("null")) {
		return nil
	}
	return m
}
