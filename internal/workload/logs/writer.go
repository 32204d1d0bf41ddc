// Package logs is the format of a workload's output as the environment's
// init writes it and isolationd serves it: a directory holding `current`
// and at most one rotated file, `previous`, each a sequence of NDJSON
// apiv1.LogLine values, one per line of output. The init writes with a
// Writer (cmd/isolation-init, through internal/workload/initproc); the API
// reads with Read. It imports apiv1 and the standard library (and fsnotify
// to follow), so that the init stays small.
package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// File names in a log directory.
const (
	Current  = "current"
	Previous = "previous"
)

// Streams of a workload's output.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

const (
	// MaxLine is the longest line kept whole; a longer one is split into
	// lines of at most MaxLine bytes, so that a program that never writes
	// a newline cannot grow the init's memory.
	MaxLine = 16 << 10
	// DefaultMaxBytes is the size past which current is rotated: a log
	// directory holds at most about twice as much.
	DefaultMaxBytes = 1 << 20
	// MinMaxBytes keeps the rotation from spinning on every line.
	MinMaxBytes = 4 << 10
)

// Writer appends lines to a log directory's current file and rotates it.
// Its methods are safe for concurrent use: each line is written whole, with
// one write, under a lock.
type Writer struct {
	dir      string
	maxBytes int64
	now      func() time.Time

	mu   sync.Mutex
	f    *os.File
	size int64
	err  error // the first write error, reported by Close
}

// NewWriter opens dir's current file for appending (creating dir with mode
// 0700 and the file with mode 0600), keeping what an earlier writer left.
func NewWriter(dir string, maxBytes int64) (*Writer, error) {
	if maxBytes < MinMaxBytes {
		return nil, fmt.Errorf("logs: the rotation size must be at least %d bytes, not %d", MinMaxBytes, maxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, maxBytes: maxBytes, now: time.Now}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(filepath.Join(w.dir, Current), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Stream returns a writer of one stream's output (Stdout or Stderr). It
// buffers up to a newline, so that what a program writes in pieces is one
// line; each call returns a new buffer, so give every source its own.
func (w *Writer) Stream(name string) *Stream {
	return &Stream{w: w, name: name}
}

// Close writes nothing more and reports the first write error.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	err := w.f.Close()
	w.f = nil
	return errors.Join(w.err, err)
}

// line appends one line of a stream, rotating first when it would take
// current past the cap.
func (w *Writer) line(stream string, text []byte) {
	b, err := json.Marshal(apiv1.LogLine{Time: w.now().UTC(), Stream: stream, Line: string(text)})
	if err != nil {
		return // a LogLine always marshals
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return
	}
	if w.size > 0 && w.size+int64(len(b)) > w.maxBytes {
		if err := w.rotate(); err != nil {
			w.fail(err)
			return
		}
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil {
		w.fail(err)
	}
}

// rotate renames current to previous, replacing it, and opens a new
// current. The old file is complete when renamed: every write to it
// happened under the lock, before the rename, which is what lets a reader
// following it finish it before moving on.
func (w *Writer) rotate() error {
	if err := os.Rename(filepath.Join(w.dir, Current), filepath.Join(w.dir, Previous)); err != nil {
		return err
	}
	w.f.Close()
	w.f = nil
	return w.open()
}

// fail records the first error. Output is best effort: a full disk must
// not stop the workload, so lines are dropped, not blocked on.
func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Stream is one stream's line buffer (see Writer.Stream).
type Stream struct {
	w    *Writer
	name string

	mu  sync.Mutex
	buf []byte
}

// Write appends p, writing every complete line, and any MaxLine bytes
// without a newline as a line of their own. It never fails: the output of
// a workload is kept best effort.
func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.buf = append(s.buf, p...)
			break
		}
		s.buf = append(s.buf, p[:i]...)
		p = p[i+1:]
		s.emit(s.buf)
		s.buf = s.buf[:0]
	}
	for len(s.buf) > MaxLine {
		cut := splitPoint(s.buf)
		s.emit(s.buf[:cut])
		s.buf = s.buf[:copy(s.buf, s.buf[cut:])]
	}
	return n, nil
}

// emit writes one line, splitting it when it is longer than MaxLine.
func (s *Stream) emit(line []byte) {
	for len(line) > MaxLine {
		cut := splitPoint(line)
		s.w.line(s.name, line[:cut])
		line = line[cut:]
	}
	s.w.line(s.name, line)
}

// Flush writes what is buffered without a newline as a line: the end of a
// program's output.
func (s *Stream) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) > 0 {
		s.emit(s.buf)
		s.buf = s.buf[:0]
	}
}

// splitPoint is where a line longer than MaxLine is cut: at MaxLine, moved
// back to the start of a UTF-8 sequence so that no character is broken.
func splitPoint(b []byte) int {
	cut := MaxLine
	for i := cut; i > cut-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return cut
}
