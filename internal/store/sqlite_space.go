package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ReserveSuffix names the reserve file: the database path and this.
const ReserveSuffix = "-reserve"

// storageError maps the SQLite result codes of a disk that cannot take a
// write to ErrFull or ErrUnavailable, keeping the driver's text behind
// them for the log. Other errors are returned as they are.
func storageError(err error) error {
	if err == nil || errors.Is(err, ErrFull) || errors.Is(err, ErrUnavailable) {
		return err
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	// The low byte is the primary code: SQLITE_IOERR_WRITE is an IOERR.
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL:
		return fmt.Errorf("%w: %w", ErrFull, err)
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// space is the store's view of its disk: the reserve file it holds back
// so that a full disk still leaves room for audit events, and the storage
// failure that no probe has cleared yet.
//
// The reserve is released when a write fails with SQLITE_FULL, so that the
// next write (the audit event of a refused request) has room; from then
// on WriteErr reports the failure and callers refuse changes until a
// Probe finds the space back (twice the reserve free, so that re-holding
// it does not fill the disk again at once), holds the reserve again and
// writes.
type space struct {
	path string
	size int64 // 0: no reserve

	mu   sync.Mutex // serialises release, probes and re-holding
	held bool
	err  atomic.Pointer[error]
}

// HoldReserve preallocates size bytes in the file beside the database
// (path + ReserveSuffix, mode 0600), released the moment a write finds
// the disk full. A size of 0 holds none (and removes a reserve file left
// from before). A disk already too full to hold it is not an error: the
// store starts as after a full disk (WriteErr is ErrFull) and a Probe
// holds the reserve once there is room; reads are served meanwhile.
func (s *SQLite) HoldReserve(size int64) error {
	sp := &s.space
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.path, sp.size = s.path+ReserveSuffix, size
	if size <= 0 {
		if err := os.Remove(sp.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: remove the reserve %s: %w", sp.path, err)
		}
		return nil
	}
	err := sp.hold()
	if errors.Is(err, unix.ENOSPC) {
		sp.failedLocked(fmt.Errorf("%w: no room for the %d-byte reserve %s", ErrFull, size, sp.path))
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: reserve %d bytes in %s: %w", size, sp.path, err)
	}
	return nil
}

// hold allocates the reserve file; the caller holds mu.
func (sp *space) hold() error {
	f, err := os.OpenFile(sp.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// Allocated blocks, not a sparse file: only those are freed by removing it.
	err = unix.Fallocate(int(f.Fd()), 0, 0, sp.size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = writeZeros(f, sp.size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(sp.path)
		return err
	}
	sp.held = true
	return nil
}

func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, 64<<10)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// failed records a storage failure of a write; a full disk releases the
// reserve.
func (sp *space) failed(err error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.failedLocked(err)
}

func (sp *space) failedLocked(err error) {
	sp.err.Store(&err)
	if errors.Is(err, ErrFull) && sp.held {
		// Removing the file frees its blocks; truncating would too, but a
		// file left behind would only confuse whoever looks at the disk.
		if os.Remove(sp.path) == nil {
			sp.held = false
		}
	}
}

// observe maps an Update's error and remembers a storage failure.
func (s *SQLite) observe(err error) error {
	err = storageError(err)
	if errors.Is(err, ErrFull) || errors.Is(err, ErrUnavailable) {
		s.space.failed(err)
	}
	return err
}

// WriteErr is the storage failure (ErrFull or ErrUnavailable) of a write
// that no Probe has cleared since, or nil. It costs an atomic load.
func (s *SQLite) WriteErr() error {
	if p := s.space.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Reserved reports whether the reserve is held (false when none is configured).
func (s *SQLite) Reserved() bool {
	s.space.mu.Lock()
	defer s.space.mu.Unlock()
	return s.space.held
}

// Probe checks that the store can write now: after a full disk it first
// requires twice the reserve free and holds the reserve again, then it
// writes one page (the database header's user_version) and commits. On
// success WriteErr is nil again. Concurrent probes run one at a time.
func (s *SQLite) Probe(ctx context.Context) error {
	sp := &s.space
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.size > 0 && !sp.held {
		var st unix.Statfs_t
		if err := unix.Statfs(s.path, &st); err != nil {
			return fmt.Errorf("%w: statfs: %v", ErrUnavailable, err)
		}
		if free := int64(st.Bavail) * st.Bsize; free < 2*sp.size { //nolint:gosec // G115: free blocks of a real file system are far below 2^63
			return fmt.Errorf("%w: %d bytes free, the store wants %d before it takes writes again", ErrFull, free, 2*sp.size)
		}
		if err := sp.hold(); err != nil {
			return fmt.Errorf("%w: reserve: %v", ErrFull, err)
		}
	}
	// update, not Update: observing the failure would take mu again.
	err := storageError(s.update(ctx, func(tx Tx) error {
		_, err := tx.(*sqlTx).q.ExecContext(ctx, "PRAGMA user_version = 1")
		return err
	}))
	if err != nil {
		if !errors.Is(err, ErrFull) && !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: probe write: %w", ErrUnavailable, err)
		}
		sp.failedLocked(err)
		return err
	}
	sp.err.Store(nil)
	return nil
}
