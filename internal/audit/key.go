package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// hmacDomain opens every message of a keyed chain (see Hash for the rest
// of the encoding, which a keyed event ends with its key id).
const hmacDomain = "isolationd.audit.hmac-sha256.v1"

// MinKeyBytes is the shortest HMAC key accepted: 256 bits.
const MinKeyBytes = 32

// Key keys the audit chain: each event's hash is an HMAC-SHA256 under it,
// so that someone who can write the database but does not hold the key
// cannot rewrite the chain and re-seal it. Its id, a fingerprint that
// reveals nothing of the key, is stored in every event it seals.
type Key struct {
	secret []byte
	id     string
}

// NewKey makes a key of secret, at least MinKeyBytes long.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) < MinKeyBytes {
		return nil, fmt.Errorf("audit: the HMAC key is %d bytes, it must be at least %d", len(secret), MinKeyBytes)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("isolationd.audit.key-id"))
	return &Key{secret: bytes.Clone(secret), id: hex.EncodeToString(m.Sum(nil)[:8])}, nil
}

// ReadKeyFile reads a key from a file: its bytes, without the line break
// or spaces at its end (so that `openssl rand -hex 32 > FILE` makes one).
// Errors never quote the file's content.
func ReadKeyFile(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: read HMAC key: %w", err)
	}
	k, err := NewKey(bytes.TrimRight(b, " \t\r\n"))
	if err != nil {
		return nil, fmt.Errorf("%w (file %s; make one with: openssl rand -hex 32 > %s)", err, path, path)
	}
	return k, nil
}

// ID is the key's fingerprint, the KeyID of the events it seals.
func (k *Key) ID() string { return k.id }

// Hash returns the hex HMAC-SHA256 under k of ev's encoding (see Hash),
// "" when Changes cannot be encoded as JSON.
func (k *Key) Hash(ev apiv1.AuditEvent) string {
	changes, err := CanonicalChanges(ev.Changes)
	if err != nil {
		return ""
	}
	return k.hash(ev, changes)
}

func (k *Key) hash(ev apiv1.AuditEvent, changes []byte) string {
	return hash(hmac.New(sha256.New, k.secret), hmacDomain, ev, changes)
}
