package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Sink writes audit events as JSON lines, one event per line, for SIEM
// ingestion. It is safe for concurrent use; lines never interleave.
type Sink struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
}

// NewSink writes to w; Close does not close w.
func NewSink(w io.Writer) *Sink { return &Sink{w: w} }

// OpenSink opens the sink named by --audit-log: "-" is stdout, anything
// else a file opened for appending (created with mode 0600, because events
// name actors and sources).
func OpenSink(path string) (*Sink, error) {
	if path == "-" {
		return NewSink(os.Stdout), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open sink: %w", err)
	}
	return &Sink{w: f, closer: f}, nil
}

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
