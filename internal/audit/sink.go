package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Sink writes audit events as JSON lines, one event per line, for SIEM
// ingestion. It is safe for concurrent use; lines never interleave.
// InOrder puts the lines in seq order.
type Sink struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	// last is the file's last line when OpenSink opened it, hasLast
	// whether there was one.
	last    apiv1.AuditEvent
	hasLast bool
}

// NewSink writes to w; Close does not close w.
func NewSink(w io.Writer) *Sink { return &Sink{w: w} }

// OpenSink opens the sink named by --audit-log: "-" is stdout, anything
// else a file opened for appending (created with mode 0600, because events
// name actors and sources). A line cut short at the end of the file (the
// machine stopped mid-write) is removed, and the seq of the last whole
// line is kept for LastSeq; a file whose last line is not an audit event
// is refused rather than appended to.
func OpenSink(path string) (*Sink, error) {
	if path == "-" {
		return NewSink(os.Stdout), nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open sink: %w", err)
	}
	s := &Sink{w: f, closer: f}
	if err := s.readTail(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: open sink %s: %w", path, err)
	}
	return s, nil
}

// readTail finds the file's last whole line, drops what follows it, and
// reads its seq.
func (s *Sink) readTail(f *os.File) error {
	line, end, err := lastLine(f)
	if err != nil {
		return err
	}
	if fi, err := f.Stat(); err != nil {
		return err
	} else if fi.Size() > end {
		if err := f.Truncate(end); err != nil {
			return err
		}
	}
	if line == nil {
		return nil
	}
	if json.Unmarshal(line, &s.last) != nil || s.last.Seq < 1 || s.last.Hash == "" {
		return fmt.Errorf("its last line is not an audit event; give a new file or an audit log isolationd wrote")
	}
	s.hasLast = true
	return nil
}

// lastLine returns the last line of f that ends in a line break (without
// it) and the offset just after that break; nil and 0 when there is none.
// It reads backwards, so a long log costs no more than its last line.
func lastLine(f *os.File) ([]byte, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	const chunk = 64 << 10
	var buf []byte // the file from pos to its end
	end := int64(-1)
	for pos := fi.Size(); pos > 0; {
		n := min(chunk, pos)
		pos -= n
		b := make([]byte, n, n+int64(len(buf)))
		if _, err := f.ReadAt(b, pos); err != nil {
			return nil, 0, err
		}
		buf = append(b, buf...)
		if end < 0 {
			i := bytes.LastIndexByte(buf, '\n')
			if i < 0 {
				continue
			}
			end = pos + int64(i) + 1
		}
		rel := end - pos - 1 // the line break ending the last line
		if i := bytes.LastIndexByte(buf[:rel], '\n'); i >= 0 {
			return buf[i+1 : rel], end, nil
		}
	}
	if end < 0 {
		return nil, 0, nil
	}
	return buf[:end-1], end, nil
}

// Last is the seq and hash of the last line of the file OpenSink opened,
// and whether it had one.
func (s *Sink) Last() (seq int64, hash string, ok bool) { return s.last.Seq, s.last.Hash, s.hasLast }

// Write appends ev as one line. Each line is written with a single Write
// call so that an O_APPEND file gets whole lines even across processes.
func (s *Sink) Write(ev apiv1.AuditEvent) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("audit: encode event %d: %w", ev.Seq, err)
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("audit: write event %d: %w", ev.Seq, err)
	}
	return nil
}

// Close closes the file OpenSink opened; it is a no-op for stdout and for
// writers given to NewSink.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closer == nil {
		return nil
	}
	err := s.closer.Close()
	s.closer = nil
	return err
}

// InOrder writes committed events to a Sink in seq order, each once,
// whatever order their committers report them in: requests committed
// together (or one after another) report from their own goroutines, so
// seq 8 may be reported before seq 7. An event reported ahead of the next
// one due is a sign that those before it are committed too (the chain
// commits in seq order), so InOrder reads them from the store and writes
// them first; one reported late is already written. Nothing waits on a
// report that may never come.
type InOrder struct {
	mu   sync.Mutex
	sink *Sink
	read Pager
	next int64 // seq of the next event to write
}

// NewInOrder writes to sink the events after seq after, reading from read
// those it is not handed.
func NewInOrder(sink *Sink, read Pager, after int64) *InOrder {
	return &InOrder{sink: sink, read: read, next: after + 1}
}

// Write writes ev, committed, after every event before it not yet written.
func (o *InOrder) Write(ctx context.Context, ev apiv1.AuditEvent) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case ev.Seq < o.next:
		return nil
	case ev.Seq == o.next:
		if err := o.sink.Write(ev); err != nil {
			return err
		}
		o.next++
		return nil
	}
	return o.catchUp(ctx, ev.Seq)
}

// CatchUp writes every committed event not yet written (at start, what a
// crash kept from the sink).
func (o *InOrder) CatchUp(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.catchUp(ctx, -1)
}

// catchUp writes the events the store holds from o.next on, up to seq
// through at least (-1: until the store has no more).
func (o *InOrder) catchUp(ctx context.Context, through int64) error {
	for through < 0 || o.next <= through {
		page, err := o.read(ctx, o.next-1)
		if err != nil {
			return fmt.Errorf("audit: read events after seq %d for the sink: %w", o.next-1, err)
		}
		if len(page) == 0 {
			if through < 0 {
				return nil
			}
			return fmt.Errorf("audit: event %d was reported but the store has none after seq %d", through, o.next-1)
		}
		for _, ev := range page {
			if ev.Seq != o.next {
				return fmt.Errorf("audit: the store's chain skips from seq %d to %d", o.next-1, ev.Seq)
			}
			if err := o.sink.Write(ev); err != nil {
				return err
			}
			o.next++
		}
	}
	return nil
}
