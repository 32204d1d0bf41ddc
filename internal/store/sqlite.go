package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

// SQLite is the embedded store: one SQLite file in WAL mode, read through
// a pool of read-only connections and written by a single connection that
// one goroutine owns.
//
// Durability: synchronous=FULL, so a commit that returned survives a
// process kill and a power loss. A transaction per Update would make every
// create pay an fsync and the WAL writes of a dozen pages (the object, its
// labels, its audit event and their indexes), so Update uses group commit:
// Updates that arrive while a commit is in flight run one after another
// inside a single SQLite transaction, each in its own SAVEPOINT (rolled
// back alone when its fn fails), and all of them return only after the one
// COMMIT, with its fsync, has returned. A lone Update is committed at
// once; batching costs it no latency. Correctness does not depend on
// batching: each fn sees the writes of those before it, as it would in
// sequence.
type SQLite struct {
	reader // reads outside a transaction go to the read pool

	path   string
	rdb    *sql.DB
	wdb    *sql.DB
	wconn  *sql.Conn
	wq     *cachedQuerier
	rq     *cachedQuerier
	writes chan *writeReq
	quit   chan struct{}
	done   chan struct{}

	commits, updates atomic.Int64

	// auditKey seals the audit events appended (UseAuditKey); nil: SHA-256.
	auditKey atomic.Pointer[audit.Key]
	// clock decides what has expired (UseClock).
	clock storeClock

	// envs caches environments' stored JSON for GetEnvironment; touched
	// lists the environments the batch in progress wrote (writer
	// goroutine only), which are dropped from it once the batch ends.
	envs    *envCache
	touched []string
	// assertions keeps decoded assertions by id (immutableCache): the
	// ones ListAssertions returns are shared, and callers must not
	// modify their selectors.
	assertions *immutableCache[apiv1.Assertion]

	subscribers

	space space // reserve file and storage failures (sqlite_space.go)

	closeOnce sync.Once
	closeErr  error
}

// WriteStats counts the work of the writer since the store was opened.
type WriteStats struct {
	// Commits is how many transactions committed, Updates how many Update
	// calls ran in them (failed fns included): Updates/Commits is the mean
	// batch size.
	Updates, Commits int64
}

// WriteStats reports the group-commit counters (for metrics).
func (s *SQLite) WriteStats() WriteStats {
	return WriteStats{Updates: s.updates.Load(), Commits: s.commits.Load()}
}

var _ Store = (*SQLite)(nil)

// maxBatch bounds how many Updates share one commit, so that a steady
// stream of writers cannot postpone a commit indefinitely.
const maxBatch = 256

var errClosed = errors.New("store: closed")

// dsnCommon is the connection setup every connection shares. busy_timeout
// only matters across processes (isolationd audit verify reading the file
// the server writes); in-process writes never contend.
const dsnCommon = "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"

// OpenSQLite opens (creating if needed) the database file at path and
// brings its schema up to date.
func OpenSQLite(ctx context.Context, path string) (_ *SQLite, err error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if err := ownerOnly(path); err != nil {
		return nil, err
	}
	wdb, err := sql.Open("sqlite", path+dsnCommon+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=temp_store(MEMORY)")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &SQLite{
		path:       path,
		wdb:        wdb,
		writes:     make(chan *writeReq),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		envs:       newEnvCache(envCacheSize),
		assertions: newImmutableCache[apiv1.Assertion](immutableCacheSize),
	}
	defer func() {
		if err != nil {
			if s.wq != nil {
				s.wq.close()
			}
			if s.wconn != nil {
				s.wconn.Close()
			}
			wdb.Close()
		}
	}()
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxIdleTime(0)
	wdb.SetConnMaxLifetime(0)
	if s.wconn, err = wdb.Conn(ctx); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s.wq = newCachedQuerier(s.wconn, true)
	// The durability argument (a commit is on disk once COMMIT returns)
	// and concurrent readers both rest on WAL mode; a file system that
	// cannot do it must fail loudly.
	var mode string
	if _, err := queryOne(ctx, s.wconn, "PRAGMA journal_mode", nil, &mode); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	} else if !strings.EqualFold(mode, "wal") {
		return nil, fmt.Errorf("store: open %s: journal mode is %q, want wal", path, mode)
	}
	if err := migrate(ctx, s.wconn); err != nil {
		return nil, err
	}
	// The read pool opens after the writer has switched the file to WAL,
	// so readers never see a rollback journal.
	if s.rdb, s.rq, err = openReadPool(path); err != nil {
		return nil, err
	}
	s.reader = reader{q: s.rq, d: sqliteDialect, clock: &s.clock, assertions: s.assertions}
	go s.writeLoop()
	return s, nil
}

// UseClock makes clock the store's clock, which decides when idempotency
// records expire (the server's one clock, so that tests can move it).
// Call it before the first Update.
func (s *SQLite) UseClock(clock clockwork.Clock) { s.clock.use(clock) }

// storeClock is the clock of a store; without one, the real clock.
type storeClock struct {
	p atomic.Pointer[clockwork.Clock]
}

// use makes clock the store's clock; nil goes back to the real one.
func (c *storeClock) use(clock clockwork.Clock) {
	if clock == nil {
		c.p.Store(nil)
		return
	}
	c.p.Store(&clock)
}

func (c *storeClock) now() time.Time {
	if c != nil {
		if p := c.p.Load(); p != nil {
			return (*p).Now()
		}
	}
	return time.Now()
}

func checkPath(path string) error {
	if path == "" || strings.ContainsAny(path, "?#") {
		return fmt.Errorf("store: invalid database path %q: must be non-empty without '?' or '#'", path)
	}
	return nil
}

// ownerOnly makes the database file, and its WAL and shared-memory files
// when they exist, readable by the owner only: they hold token hashes and
// the audit trail. SQLite gives the WAL and SHM files it creates the mode
// of the database file, so creating that one 0600 covers them too; a file
// an older version made 0644 is tightened.
func ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: open %s: %w", path, err)
		}
	}
	return nil
}

func openReadPool(path string) (*sql.DB, *cachedQuerier, error) {
	rdb, err := sql.Open("sqlite", path+dsnCommon+"&_pragma=query_only(1)")
	if err != nil {
		return nil, nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	rdb.SetConnMaxIdleTime(0)
	rdb.SetConnMaxLifetime(0)
	return rdb, newCachedQuerier(rdb, false), nil
}

// SQLiteReader is a read-only view of a database that a running server
// may be writing at the same time: what isolationd audit verify opens.
type SQLiteReader struct {
	reader
	db *sql.DB
	q  *cachedQuerier
}

var _ Reader = (*SQLiteReader)(nil)

// OpenSQLiteReadOnly opens an existing database for reading only. It never
// creates or migrates the file: a mistyped path or a database of another
// schema version is an error, never an empty store.
func OpenSQLiteReadOnly(ctx context.Context, path string) (*SQLiteReader, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db, q, err := openReadPool(path)
	if err != nil {
		return nil, err
	}
	var version int
	if _, err := queryOne(ctx, db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", nil, &version); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: not an isolationd database: %w", path, err)
	}
	if version != len(migrations) {
		db.Close()
		return nil, fmt.Errorf("store: open %s: schema version %d, this build reads version %d (start isolationd of this version once to migrate)",
			path, version, len(migrations))
	}
	return &SQLiteReader{reader: reader{q: q, d: sqliteDialect}, db: db, q: q}, nil
}

// Close closes the reader.
func (r *SQLiteReader) Close() error {
	r.q.close()
	return r.db.Close()
}

// Path is the database file.
func (s *SQLite) Path() string { return s.path }

// Close waits for Updates already running, then closes the database.
// Updates after Close fail.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.done
		// PRAGMA optimize keeps the planner's statistics current for the
		// next start; failing it loses nothing.
		_, _ = s.wq.ExecContext(context.Background(), "PRAGMA optimize")
		s.wq.close()
		s.rq.close()
		s.closeErr = errors.Join(s.wconn.Close(), s.wdb.Close(), s.rdb.Close())
	})
	return s.closeErr
}

// writeReq is one Update waiting for the writer goroutine.
type writeReq struct {
	ctx  context.Context
	fn   func(Tx) error
	done chan writeResult // buffered: the writer never blocks on it

	res writeResult
	ok  bool // fn succeeded and its savepoint was released
}

type writeResult struct {
	err      error
	commit   *Commit // what a successful fn wrote, to announce
	panicked bool
	panicVal any
}

// Update runs fn in a serialisable, durable transaction (see SQLite). fn
// runs on the writer goroutine and must not call Update itself (that would
// deadlock) nor keep tx after it returns; it should do no slow I/O, since
// every other write waits for it.
//
// A write that fails because the disk is full or cannot be written
// returns ErrFull or ErrUnavailable (see WriteErr and Probe).
func (s *SQLite) Update(ctx context.Context, fn func(Tx) error) error {
	return s.observe(s.update(ctx, fn))
}

func (s *SQLite) update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan writeResult, 1)}
	select {
	case s.writes <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return errClosed
	}
	// Once the writer has the request the outcome is decided there; the
	// caller waits for it even when ctx ends, so that "returned nil" always
	// means "committed".
	res := <-req.done
	if res.panicked {
		panic(res.panicVal)
	}
	if res.err == nil && res.commit != nil {
		s.announce(*res.commit)
	}
	return res.err
}

// subscribers are a store's (see Store.Subscribe).
type subscribers struct {
	mu   sync.RWMutex
	subs []func(Commit)
}

// Subscribe registers fn to be told of every commit (see Commit).
func (s *subscribers) Subscribe(fn func(Commit)) {
	s.mu.Lock()
	s.subs = append(s.subs, fn)
	s.mu.Unlock()
}

func (s *subscribers) announce(c Commit) {
	s.mu.RLock()
	subs := s.subs
	s.mu.RUnlock()
	for _, fn := range subs {
		fn(c)
	}
}

func (s *SQLite) writeLoop() {
	defer close(s.done)
	for {
		select {
		case first := <-s.writes:
			s.runBatch(first)
		case <-s.quit:
			return
		}
	}
}

// runBatch commits first together with every Update that is already
// waiting when first has run, up to maxBatch.
func (s *SQLite) runBatch(first *writeReq) {
	ctx := context.Background()
	if _, err := s.wq.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		first.done <- writeResult{err: fmt.Errorf("store: begin: %w", err)}
		return
	}
	batch := []*writeReq{first}
	abort := s.runOne(first)
gather:
	for abort == nil && len(batch) < maxBatch {
		select {
		case r := <-s.writes:
			batch = append(batch, r)
			abort = s.runOne(r)
		default:
			break gather
		}
	}
	if abort == nil {
		s.envs.begin(s.touched)
		if _, err := s.wq.ExecContext(ctx, "COMMIT"); err != nil {
			abort = fmt.Errorf("store: commit: %w", err)
		} else {
			s.commits.Add(1)
			s.updates.Add(int64(len(batch)))
		}
	}
	if abort != nil {
		// The transaction may already be gone (SQLite rolls back by itself
		// on some I/O errors); a failing ROLLBACK then changes nothing.
		_, _ = s.wq.ExecContext(ctx, "ROLLBACK")
	}
	// Before any Update of the batch returns, so that no caller can read
	// what it replaced from the cache.
	s.envs.invalidate(s.touched)
	s.touched = s.touched[:0]
	for _, r := range batch {
		if abort != nil && r.ok {
			r.res = writeResult{err: abort}
		}
		r.done <- r.res
	}
}

// runOne runs r.fn in a savepoint. It returns an error only when the
// whole transaction can no longer be used.
func (s *SQLite) runOne(r *writeReq) error {
	if err := r.ctx.Err(); err != nil {
		r.res = writeResult{err: err}
		return nil
	}
	ctx := context.Background()
	if _, err := s.wq.ExecContext(ctx, "SAVEPOINT w"); err != nil {
		err = fmt.Errorf("store: savepoint: %w", err)
		r.res = writeResult{err: err}
		return err
	}
	t := &sqlTx{touched: &s.touched, key: s.auditKey.Load()}
	t.reader = reader{q: txQuerier{q: s.wq, done: &t.done}, d: sqliteDialect, clock: &s.clock, assertions: s.assertions}
	r.res = call(r.fn, t)
	t.done.Store(true)
	if r.res.err == nil && !r.res.panicked {
		if _, err := s.wq.ExecContext(ctx, "RELEASE w"); err != nil {
			err = fmt.Errorf("store: release savepoint: %w", err)
			r.res = writeResult{err: err}
			return err
		}
		r.ok = true
		r.res.commit = t.commit.done()
		return nil
	}
	if _, err := s.wq.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
		// SQLite rolls the whole transaction back by itself on a full
		// disk: keep fn's error, which says so, for the whole batch.
		cause := r.res.err
		if cause == nil {
			cause = errors.New("a panic")
		}
		return fmt.Errorf("store: roll back savepoint after %w: %v", cause, err)
	}
	if _, err := s.wq.ExecContext(ctx, "RELEASE w"); err != nil {
		return fmt.Errorf("store: release savepoint: %w", err)
	}
	return nil
}

// call runs fn, turning a panic into a result so that the writer survives
// it and Update can re-raise it in the caller's goroutine.
func call(fn func(Tx) error, t Tx) (res writeResult) {
	defer func() {
		if v := recover(); v != nil {
			res = writeResult{panicked: true, panicVal: v}
		}
	}()
	return writeResult{err: fn(t)}
}

// sqlTx is the Tx handed to one fn. Its statements run on the writer
// connection inside the batch transaction, so it reads its own writes.
type sqlTx struct {
	reader
	done    atomic.Bool
	touched *[]string
	key     *audit.Key // seals AppendAudit's events; nil for SHA-256
	commit  commitLog
}

// touch records that the transaction writes environment id.
func (t *sqlTx) touch(id string) {
	*t.touched = append(*t.touched, id)
	t.commit.Environments = append(t.commit.Environments, id)
}

// Reconcile asks for ids to be reconciled once the transaction commits.
func (t *sqlTx) Reconcile(cause string, ids ...string) {
	if t.commit.Cause == "" {
		t.commit.Cause = cause
	}
	t.commit.Reconcile = append(t.commit.Reconcile, ids...)
}

// commitLog is what one transaction wrote, for its announcement.
type commitLog struct{ Commit }

// done returns the commit to announce, each id listed once.
func (l *commitLog) done() *Commit {
	c := l.Commit
	c.Environments = unique(c.Environments)
	c.Tokens = unique(c.Tokens)
	c.UISessions = unique(c.UISessions)
	c.Reconcile = unique(c.Reconcile)
	return &c
}

// unique drops repeated ids, keeping the first of each in place.
func unique(ids []string) []string {
	if len(ids) < 2 {
		return ids
	}
	seen := make(map[string]bool, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

var _ Tx = (*sqlTx)(nil)
