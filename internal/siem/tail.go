package siem

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// tailSize is how many of the newest audit events the exporter keeps in
// memory: a sink less than this far behind never reads the store.
const tailSize = 4096

// tail holds the newest audit events the store announced, each at its
// seq modulo the ring's size, so that sinks that keep up read them from
// memory and each format encodes an event once, not once per sink.
// Announcements may come out of order (each committer announces its own
// commit); a slot holds an event only when its seq matches, so a reader
// takes what is contiguous after its cursor and the store has the rest.
type tail struct {
	mu   sync.RWMutex
	ring [tailSize]*Record
}

func (t *tail) add(events []apiv1.AuditEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range events {
		ev := events[i]
		t.ring[ev.Seq%tailSize] = &Record{Source: SourceAudit, Pos: ev.Seq, Audit: &ev, memo: &memo{}}
	}
}

// read returns up to limit events after position after, oldest first,
// as far as the ring has them without a hole.
func (t *tail) read(after int64, limit int) []Record {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Record
	for seq := after + 1; len(out) < limit; seq++ {
		r := t.ring[seq%tailSize]
		if r == nil || r.Pos != seq {
			break
		}
		out = append(out, *r)
	}
	return out
}

// tailedSource reads the audit chain from the tail when it can.
type tailedSource struct {
	Source
	tail *tail
}

func (s tailedSource) Read(ctx context.Context, after int64, limit int) ([]Record, error) {
	if recs := s.tail.read(after, limit); len(recs) > 0 {
		return recs, nil
	}
	return s.Source.Read(ctx, after, limit)
}

// memo keeps a record's encodings, by format, for the sinks that share it.
type memo struct{ bodies [3]atomic.Pointer[[]byte] }

var formatSlot = map[string]int{FormatJSON: 0, FormatOCSF: 1, FormatCEF: 2}

// encode is r in format, encoded once per format when r is shared.
func (r Record) encode(format string, enc Formatter) ([]byte, error) {
	if r.memo == nil {
		return enc(r)
	}
	slot := &r.memo.bodies[formatSlot[format]]
	if b := slot.Load(); b != nil {
		return *b, nil
	}
	b, err := enc(r)
	if err != nil {
		return nil, err
	}
	slot.Store(&b)
	return b, nil
}
