package audit

import (
	"context"
	"fmt"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Pager returns the events whose seq is greater than afterSeq, oldest
// first; an empty page ends the chain.
type Pager func(ctx context.Context, afterSeq int64) ([]apiv1.AuditEvent, error)

// Result is the outcome of Verify.
type Result struct {
	// Events is how many events were checked.
	Events int64
	// LastSeq and LastHash are the head of the intact part of the chain;
	// comparing them with a copy kept elsewhere (the JSON-lines sink)
	// reveals a truncated tail, which a hash chain alone cannot.
	LastSeq  int64
	LastHash string
	// KeyID is the key that sealed the chain's keyed events and
	// FirstKeyedSeq the first of them; "" and 0 when no event checked was
	// keyed. The events before FirstKeyedSeq predate the key (plain SHA-256).
	KeyID         string
	FirstKeyedSeq int64
	// Broken is the first broken link, nil when the chain is intact.
	Broken *Break
}

// OK reports whether the whole chain verified.
func (r Result) OK() bool { return r.Broken == nil }

// Keyed reports whether the chain verified holds events sealed with a key.
func (r Result) Keyed() bool { return r.KeyID != "" }

// Break names the first event at which the chain does not verify.
type Break struct {
	Seq    int64
	ID     string
	Reason string
	// NeedsKey is set when the event is keyed and no key was given (the
	// chain may be intact: it cannot be told without the key), KeyID then
	// naming the key it needs. A wrong key is an ordinary break.
	NeedsKey bool
	KeyID    string
}

func (b *Break) String() string {
	return fmt.Sprintf("seq %d (id %s): %s", b.Seq, b.ID, b.Reason)
}

// Verify walks an unkeyed chain (see VerifyWithKey); a keyed event is a
// break that needs the key.
func Verify(ctx context.Context, next Pager) (Result, error) {
	return VerifyWithKey(ctx, next, nil)
}

// VerifyWithKey walks the chain from the start and stops at the first
// broken link: an event whose hash does not match its content (altered),
// a gap in seq (removed), a seq out of order (reordered or inserted), or a
// prev_hash that is not the previous event's hash (removed, inserted or
// reordered). Keyed events must be sealed with key (a nil key cannot check
// them), and once the chain is keyed it stays keyed: a plain SHA-256 event
// after a keyed one was made by someone without the key. The error is for
// failures to read, never for a broken chain.
func VerifyWithKey(ctx context.Context, next Pager, key *Key) (Result, error) {
	return VerifyFrom(ctx, next, key, Result{LastHash: GenesisHash})
}

// VerifyFrom walks the chain as VerifyWithKey does, from the event after
// start.LastSeq on, taking start (LastSeq and LastHash, and KeyID when the
// chain is keyed by then) as the head of a part already trusted: a range
// of the chain verifies when it links to the event before it. Events
// counts the events of the range.
func VerifyFrom(ctx context.Context, next Pager, key *Key, start Result) (Result, error) {
	res := start
	res.Events, res.Broken = 0, nil
	for {
		page, err := next(ctx, res.LastSeq)
		if err != nil {
			return res, fmt.Errorf("audit: read events after seq %d: %w", res.LastSeq, err)
		}
		if len(page) == 0 {
			return res, nil
		}
		for _, ev := range page {
			if b := check(ev, res, key); b != nil {
				b.Seq, b.ID = ev.Seq, ev.ID
				res.Broken = b
				return res, nil
			}
			if ev.KeyID != "" && res.KeyID == "" {
				res.KeyID, res.FirstKeyedSeq = ev.KeyID, ev.Seq
			}
			res.Events++
			res.LastSeq, res.LastHash = ev.Seq, ev.Hash
		}
	}
}

// check returns why ev cannot follow the chain verified so far, or nil.
func check(ev apiv1.AuditEvent, res Result, key *Key) *Break {
	prevSeq, prevHash := res.LastSeq, res.LastHash
	broken := func(format string, args ...any) *Break { return &Break{Reason: fmt.Sprintf(format, args...)} }
	switch want := prevSeq + 1; {
	case ev.Seq > want:
		return broken("seq gap: expected seq %d, found %d (events removed or reordered)", want, ev.Seq)
	case ev.Seq < want:
		return broken("seq out of order: expected seq %d, found %d (events reordered or inserted)", want, ev.Seq)
	}
	if ev.PrevHash != prevHash {
		return broken("prev_hash %s does not match the hash of seq %d (%s): events removed, inserted or reordered", ev.PrevHash, prevSeq, prevHash)
	}
	got := ""
	switch {
	case ev.KeyID == "" && res.KeyID != "":
		return broken("not keyed, after keyed events from seq %d (key id %s): made or replaced by someone without the key", res.FirstKeyedSeq, res.KeyID)
	case ev.KeyID == "":
		got = Hash(ev)
	case key == nil:
		return &Break{Reason: fmt.Sprintf("sealed with HMAC-SHA256 key id %s, and no key was given to verify it", ev.KeyID), NeedsKey: true, KeyID: ev.KeyID}
	case ev.KeyID != key.ID():
		return broken("sealed with HMAC-SHA256 key id %s, not with the key given (key id %s): a wrong key, or the key id altered", ev.KeyID, key.ID())
	default:
		got = key.Hash(ev)
	}
	if got != ev.Hash {
		return broken("hash mismatch: stored %s, content hashes to %s (event altered)", ev.Hash, got)
	}
	return nil
}
