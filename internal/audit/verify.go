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
	// Broken is the first broken link, nil when the chain is intact.
	Broken *Break
}

// OK reports whether the whole chain verified.
func (r Result) OK() bool { return r.Broken == nil }

// Break names the first event at which the chain does not verify.
type Break struct {
	Seq    int64
	ID     string
	Reason string
}

func (b *Break) String() string {
	return fmt.Sprintf("seq %d (id %s): %s", b.Seq, b.ID, b.Reason)
}

// Verify walks the chain from the start and stops at the first broken
// link: an event whose hash does not match its content (altered), a gap
// in seq (removed), a seq out of order (reordered or inserted), or a
// prev_hash that is not the previous event's hash (removed, inserted or
// reordered). The error is for failures to read, never for a broken chain.
func Verify(ctx context.Context, next Pager) (Result, error) {
	res := Result{LastHash: GenesisHash}
	for {
		page, err := next(ctx, res.LastSeq)
		if err != nil {
			return res, fmt.Errorf("audit: read events after seq %d: %w", res.LastSeq, err)
		}
		if len(page) == 0 {
			return res, nil
		}
		for _, ev := range page {
			if reason := check(ev, res.LastSeq, res.LastHash); reason != "" {
				res.Broken = &Break{Seq: ev.Seq, ID: ev.ID, Reason: reason}
				return res, nil
			}
			res.Events++
			res.LastSeq, res.LastHash = ev.Seq, ev.Hash
		}
	}
}

// check returns why ev cannot follow the event (prevSeq, prevHash), or "".
func check(ev apiv1.AuditEvent, prevSeq int64, prevHash string) string {
	switch want := prevSeq + 1; {
	case ev.Seq > want:
		return fmt.Sprintf("seq gap: expected seq %d, found %d (events removed or reordered)", want, ev.Seq)
	case ev.Seq < want:
		return fmt.Sprintf("seq out of order: expected seq %d, found %d (events reordered or inserted)", want, ev.Seq)
	}
	if ev.PrevHash != prevHash {
		return fmt.Sprintf("prev_hash %s does not match the hash of seq %d (%s): events removed, inserted or reordered", ev.PrevHash, prevSeq, prevHash)
	}
	if got := Hash(ev); got != ev.Hash {
		return fmt.Sprintf("hash mismatch: stored %s, content hashes to %s (event altered)", ev.Hash, got)
	}
	return ""
}
