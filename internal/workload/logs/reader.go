package logs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// All is Query.Tail for every line kept.
const All = -1

// Query says which lines Read emits.
type Query struct {
	// Tail is how many of the last lines kept (over previous and current)
	// to emit: 0 for none (with Follow: only new lines), All for all.
	Tail int
	// Since leaves out the lines written before it; the zero time keeps all.
	Since time.Time
	// Follow keeps emitting lines as they are written, across rotations,
	// until the context is done or the directory is removed.
	Follow bool
}

// waitForDir is how often Read looks for a log directory that does not
// exist yet when it is to follow it: the init creates it when it starts.
const waitForDir = 200 * time.Millisecond

// Read emits the lines of dir that q asks for, oldest first, and returns
// the first error emit returns. A missing directory holds no lines; when
// following, Read waits for it. Following is event-driven (inotify): no
// line is lost or emitted twice across rotations, unless the writer
// rotates three times while the reader is still in the file it reads
// (the file in between is gone by then).
func Read(ctx context.Context, dir string, q Query, emit func(apiv1.LogLine) error) error {
	r := &reader{dir: dir, q: q, emit: emit}
	if !q.Follow {
		cur, prev, err := r.open()
		if err != nil {
			return err
		}
		defer closeAll(cur, prev)
		return r.history(cur, prev)
	}
	w, err := r.watch(ctx)
	if err != nil || w == nil {
		return err
	}
	defer w.Close()
	cur, prev, err := r.open()
	if err != nil {
		return err
	}
	defer func() { closeAll(cur) }()
	if prev != nil {
		r.done = prev.info
	}
	err = r.history(cur, prev)
	closeAll(prev)
	if err != nil {
		return err
	}
	for {
		if cur, err = r.catchUp(cur); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) == filepath.Clean(dir) && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
				return nil // the directory is gone: nothing more will be written
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				return err
			}
			// events were dropped: the catch-up at the top reads what they told of
		}
	}
}

type reader struct {
	dir  string
	q    Query
	emit func(apiv1.LogLine) error
	// done is the last file read to its end, to tell a rotated file that
	// has not been read (a second rotation) from the one that has.
	done os.FileInfo
}

// file is an open log file and what was read of it past the last newline.
type file struct {
	f       *os.File
	info    os.FileInfo
	pending []byte
}

func openFile(path string) (*file, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &file{f: f, info: info}, nil
}

func closeAll(files ...*file) {
	for _, f := range files {
		if f != nil {
			f.f.Close()
		}
	}
}

// lines reads f to its end and calls fn with each complete line; a line
// that does not parse (a writer killed mid-write) is skipped.
func (f *file) lines(fn func(apiv1.LogLine) error) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := f.f.Read(buf)
		f.pending = append(f.pending, buf[:n]...)
		for {
			i := bytes.IndexByte(f.pending, '\n')
			if i < 0 {
				break
			}
			var l apiv1.LogLine
			if json.Unmarshal(f.pending[:i], &l) == nil {
				if err := fn(l); err != nil {
					return err
				}
			}
			f.pending = f.pending[i+1:]
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// open opens current and then previous, as one consistent pair: when
// current is renamed between the two opens, it tries again. Either may be
// nil when it does not exist.
func (r *reader) open() (cur, prev *file, err error) {
	for {
		cur, err = openExisting(filepath.Join(r.dir, Current))
		if err != nil {
			return nil, nil, err
		}
		prev, err = openExisting(filepath.Join(r.dir, Previous))
		if err != nil {
			closeAll(cur)
			return nil, nil, err
		}
		now, err := os.Stat(filepath.Join(r.dir, Current))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			closeAll(cur, prev)
			return nil, nil, err
		}
		if (cur == nil && now == nil) || (cur != nil && now != nil && os.SameFile(cur.info, now)) {
			return cur, prev, nil
		}
		closeAll(cur, prev) // rotated meanwhile
	}
}

func openExisting(path string) (*file, error) {
	f, err := openFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

// history emits what q asks of the lines already written: those of prev,
// then those of cur up to its end, where a follower goes on from.
func (r *reader) history(cur, prev *file) error {
	switch {
	case r.q.Tail == 0:
		return readBoth(nil, cur, func(apiv1.LogLine) error { return nil })
	case r.q.Tail < 0:
		return readBoth(prev, cur, r.since(r.emit))
	}
	last := &ring{n: r.q.Tail}
	if err := readBoth(prev, cur, r.since(last.add)); err != nil {
		return err
	}
	for _, l := range last.ordered() {
		if err := r.emit(l); err != nil {
			return err
		}
	}
	return nil
}

// ring keeps the last n lines added.
type ring struct {
	n     int
	start int // the oldest line's index once the ring is full
	lines []apiv1.LogLine
}

func (t *ring) add(l apiv1.LogLine) error {
	if len(t.lines) < t.n {
		t.lines = append(t.lines, l)
		return nil
	}
	t.lines[t.start] = l
	t.start = (t.start + 1) % t.n
	return nil
}

func (t *ring) ordered() []apiv1.LogLine {
	return append(t.lines[t.start:len(t.lines):len(t.lines)], t.lines[:t.start]...)
}

func readBoth(prev, cur *file, fn func(apiv1.LogLine) error) error {
	for _, f := range []*file{prev, cur} {
		if f == nil {
			continue
		}
		if err := f.lines(fn); err != nil {
			return err
		}
	}
	return nil
}

// since wraps emit to leave out the lines before q.Since.
func (r *reader) since(emit func(apiv1.LogLine) error) func(apiv1.LogLine) error {
	if r.q.Since.IsZero() {
		return emit
	}
	return func(l apiv1.LogLine) error {
		if l.Time.Before(r.q.Since) {
			return nil
		}
		return emit(l)
	}
}

// catchUp emits what was appended to cur and follows rotations: once
// current is another file, the old one (complete when renamed) is read to
// its end, then the one rotated out meanwhile if a second rotation
// happened, then the new current. It returns the file to follow next.
func (r *reader) catchUp(cur *file) (*file, error) {
	emit := r.since(r.emit)
	for {
		if cur != nil {
			if err := cur.lines(emit); err != nil {
				return cur, err
			}
		}
		now, err := os.Stat(filepath.Join(r.dir, Current))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return cur, err
		}
		if cur != nil && now != nil && os.SameFile(cur.info, now) {
			return cur, nil
		}
		if cur != nil {
			// Renamed or removed: everything written to it was written
			// before. Closing it lets the directory go when it is removed.
			if err := cur.lines(emit); err != nil {
				return cur, err
			}
			r.done = cur.info
			closeAll(cur)
			cur = nil
		}
		if now == nil {
			return nil, nil // between a rotation's rename and its new file
		}
		if err := r.missed(emit); err != nil {
			return nil, err
		}
		if cur, err = openExisting(filepath.Join(r.dir, Current)); err != nil {
			return nil, err
		}
	}
}

// missed reads previous when it is not the file read last: current was
// rotated twice, and the file in between would be skipped otherwise.
func (r *reader) missed(emit func(apiv1.LogLine) error) error {
	prev, err := openExisting(filepath.Join(r.dir, Previous))
	if err != nil || prev == nil {
		return err
	}
	defer closeAll(prev)
	if r.done != nil && os.SameFile(r.done, prev.info) {
		return nil
	}
	r.done = prev.info
	return prev.lines(emit)
}

// watch starts watching dir, waiting for it to exist. It returns nil, nil
// when ctx is done first.
func (r *reader) watch(ctx context.Context) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(waitForDir)
	defer tick.Stop()
	for {
		err := w.Add(r.dir)
		if err == nil {
			return w, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			w.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			w.Close()
			return nil, nil
		case <-tick.C:
		}
	}
}
