package store

// The PostgreSQL store, shared by several servers (replicas). Its exported
// API is stable (other packages build on it; add, do not change):
//
//	OpenPostgres(ctx, dsn) (*Postgres, error)
//	(*Postgres) Update, Subscribe, Close and every Reader method (Store)
//	(*Postgres) Lease, ReleaseLease (Leaser); Tx.CheckLease fences a write
//	(*Postgres) UseClock, UseAuditKey, WriteStats, Ping, SchemaVersion (Backend)
//	(*Postgres) Origin: this store's id in the commit announcements
//	PostgresChannel: the LISTEN/NOTIFY channel of the announcements
//	Commit.Resync: announcements of other servers may have been missed
//	store.Backend, store.Leaser, store.ErrFenced: what both stores offer
//	pgtest.DSN, pgtest.Private, pgtest.Start: throwaway PostgreSQL for tests
//
// Writes from every server are serialised as SQLite's single writer
// serialises them: each Update is one READ COMMITTED transaction that
// first takes a transaction-level advisory lock on writeLockKey, so that
// it reads everything committed before it (the audit chain's head, an
// Idempotency-Key's record, an object's generation) and nothing commits
// between its reads and its commit. Reads outside Update run on the pool.
//
// Failing to reach PostgreSQL (refused, dropped, shut down, timed out) is
// ErrUnavailable on reads and writes; the pool reconnects by itself.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"crypto/rand"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jonboulle/clockwork"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

// PostgreSQL keeps its own migrations (postgres_migrations, run by goose),
// starting at the shape SQLite's reach; SQLite keeps its list in
// sqlite_schema.go, which deployed database files depend on.
//
//go:embed postgres_migrations/*.sql
var postgresMigrations embed.FS

const (
	// writeLockKey is the advisory lock every Update takes ("isolat" in
	// ASCII); migrationLockKey the one goose takes while migrating.
	writeLockKey     int64 = 0x69736f6c6174
	migrationLockKey int64 = 0x69736f6c6174 + 1
	// PostgresChannel carries the commit announcements between servers.
	PostgresChannel = "isolationd_commits"
	// updateTimeout bounds one Update from its BEGIN to its COMMIT,
	// waiting for the lock included: past it PostgreSQL is taken to be
	// unreachable (ErrUnavailable).
	updateTimeout = 30 * time.Second
	// connectTimeout bounds a connection attempt when the DSN sets none.
	connectTimeout = 5 * time.Second
	// poolSize bounds the connections of one store.
	poolSize = 16
)

// Postgres is a store in a PostgreSQL database, shared by the servers
// that open it (see the top of this file).
type Postgres struct {
	r          reader // reads outside a transaction, on the pool
	db         *sql.DB
	migrations *goose.Provider
	origin     string

	clock      storeClock
	auditKey   atomic.Pointer[audit.Key]
	assertions *immutableCache[apiv1.Assertion]
	updates    atomic.Int64
	commits    atomic.Int64

	subscribers // told of this store's commits and the other servers'

	listen     *pgx.ConnConfig
	stopListen context.CancelFunc
	listenDone chan struct{}

	writeSlot chan struct{} // held by the Update running
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ Backend = (*Postgres)(nil)

// OpenPostgres connects to the database dsn names (a postgres:// URL or
// key=value string), brings its schema up to date under a lock (so that
// servers starting together migrate it once), and starts listening for
// the commits of the other servers.
func OpenPostgres(ctx context.Context, dsn string) (_ *Postgres, err error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgconn's message names the part that is wrong, never the password.
		return nil, fmt.Errorf("store: postgres DSN: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	p := &Postgres{
		db:         stdlib.OpenDB(*cfg),
		origin:     hex.EncodeToString(id[:]),
		assertions: newImmutableCache[apiv1.Assertion](immutableCacheSize),
		listen:     cfg.Copy(),
		listenDone: make(chan struct{}),
		writeSlot:  make(chan struct{}, 1),
		closed:     make(chan struct{}),
	}
	p.db.SetMaxOpenConns(poolSize)
	p.db.SetMaxIdleConns(poolSize)
	p.db.SetConnMaxIdleTime(5 * time.Minute)
	p.r = reader{q: pgQuerier{p.db}, d: postgresDialect, clock: &p.clock, assertions: p.assertions}
	defer func() {
		if err != nil {
			p.db.Close()
		}
	}()
	if err := p.migrate(ctx); err != nil {
		return nil, err
	}
	conn, err := p.listenConn(ctx)
	if err != nil {
		return nil, pgUnavailable(fmt.Errorf("store: listen for commits: %w", err))
	}
	// The listener outlives ctx, which only bounds the opening: Close ends it.
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.stopListen = cancel
	go p.listenLoop(lctx, conn) //nolint:gosec // G118: the listener lives until Close, not for the opening's ctx
	return p, nil
}

func (p *Postgres) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(postgresMigrations, "postgres_migrations")
	if err != nil {
		return err
	}
	// Replicas starting together: one migrates, the others wait for its
	// session lock (probing every second for up to 5 minutes).
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockKey), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if p.migrations, err = goose.NewProvider(goose.DialectPostgres, p.db, fsys,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if _, err := p.migrations.Up(ctx); err != nil {
		return pgUnavailable(fmt.Errorf("store: migrate: %w", err))
	}
	current, want, err := p.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if current > want {
		return fmt.Errorf("store: database schema version %d is newer than this build supports (%d)", current, want)
	}
	return nil
}

// SchemaVersion is the database's schema version and this build's.
func (p *Postgres) SchemaVersion(ctx context.Context) (current, want int64, err error) {
	src := p.migrations.ListSources()
	if len(src) > 0 {
		want = src[len(src)-1].Version
	}
	current, err = p.migrations.GetDBVersion(ctx)
	if err != nil {
		return 0, want, pgUnavailable(fmt.Errorf("store: schema version: %w", err))
	}
	return current, want, nil
}

// Ping checks that PostgreSQL answers.
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.db.PingContext(ctx); err != nil {
		return pgUnavailable(fmt.Errorf("store: ping: %w", err))
	}
	return nil
}

// Origin is this store's id in the commit announcements, random per
// OpenPostgres: a server skips its own.
func (p *Postgres) Origin() string { return p.origin }

// UseClock makes clock the store's clock, which decides when idempotency
// records expire (leases use the database's). Call it before the first
// Update.
func (p *Postgres) UseClock(clock clockwork.Clock) { p.clock.use(clock) }

// UseAuditKey: see SQLite.UseAuditKey.
func (p *Postgres) UseAuditKey(ctx context.Context, key *audit.Key) error {
	return pgUnavailable(useAuditKey(ctx, p.r.q, key, &p.auditKey))
}

// WriteStats counts Updates; each is one commit.
func (p *Postgres) WriteStats() WriteStats {
	return WriteStats{Updates: p.updates.Load(), Commits: p.commits.Load()}
}

// Close stops listening and closes the pool. Updates after Close fail.
func (p *Postgres) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.stopListen()
		<-p.listenDone
		p.closeErr = errors.Join(p.migrations.Close(), p.db.Close())
	})
	return p.closeErr
}

// Update runs fn in one transaction under the write lock (see the top of
// this file), with SQLite's semantics: a failed or panicking fn keeps
// nothing (the panic is raised again here), a nil return means
// committed, and the commit is announced before Update returns. Once
// begun, the transaction runs to its end whatever ctx does (bounded by
// updateTimeout), so that a caller that gave up never leaves half a
// write. A COMMIT whose answer is lost with the connection is
// ErrUnavailable although it may have committed: a retry with the same
// Idempotency-Key finds out.
func (p *Postgres) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// One Update of this store at a time: the database serialises them
	// anyway, and the others then wait here instead of each holding a
	// pooled connection the reads need.
	select {
	case p.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closed:
		return errClosed
	}
	res := p.update(ctx, fn)
	<-p.writeSlot
	if res.panicked {
		panic(res.panicVal)
	}
	if res.err != nil {
		return res.err
	}
	p.announce(*res.commit)
	return nil
}

func (p *Postgres) update(ctx context.Context, fn func(Tx) error) writeResult {
	p.updates.Add(1)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), updateTimeout)
	defer cancel()
	ptx, err := p.db.BeginTx(wctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return writeResult{err: pgUnavailable(fmt.Errorf("store: begin: %w", err))}
	}
	done := false
	defer func() {
		if !done {
			_ = ptx.Rollback()
		}
	}()
	// READ COMMITTED, not REPEATABLE READ: each statement after the lock
	// sees every transaction that held it before.
	if _, err := ptx.ExecContext(wctx, "SELECT pg_advisory_xact_lock($1)", writeLockKey); err != nil {
		return writeResult{err: pgUnavailable(fmt.Errorf("store: take the write lock: %w", err))}
	}
	var touched []string
	t := &sqlTx{touched: &touched, key: p.auditKey.Load()}
	t.reader = reader{q: txQuerier{q: &pgTxQuerier{tx: ptx, ctx: wctx}, done: &t.done}, d: postgresDialect, clock: &p.clock, assertions: p.assertions}
	res := call(fn, t)
	t.done.Store(true)
	if res.panicked {
		return res
	}
	if res.err != nil {
		res.err = pgUnavailable(res.err)
		return res
	}
	c := t.commit.done()
	// Delivered at COMMIT, only if it commits, in commit order.
	for _, payload := range notices(p.origin, c) {
		if _, err := ptx.ExecContext(wctx, "SELECT pg_notify($1, $2)", PostgresChannel, payload); err != nil {
			return writeResult{err: pgUnavailable(fmt.Errorf("store: announce the commit: %w", err))}
		}
	}
	done = true
	if err := ptx.Commit(); err != nil {
		return writeResult{err: pgUnavailable(fmt.Errorf("store: commit: %w", err))}
	}
	p.commits.Add(1)
	return writeResult{commit: c}
}

// pgQuerier runs the store's SQL on PostgreSQL: ? becomes $n. pgx
// prepares and caches each statement per connection by itself.
type pgQuerier struct{ q querier }

func (q pgQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.q.QueryContext(ctx, numbered(query), args...)
}

func (q pgQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return q.q.ExecContext(ctx, numbered(query), args...)
}

// pgTxQuerier is an Update's transaction. Its statements run under the
// Update's own context (see Update), and each write in a savepoint: in
// PostgreSQL a failed statement aborts the whole transaction, where in
// SQLite fn may go on after a constraint error (read who holds a name,
// free an address and retry), as the Tx contract allows.
type pgTxQuerier struct {
	tx    *sql.Tx
	ctx   context.Context
	saved bool // savepoint w is open
}

func (q *pgTxQuerier) QueryContext(_ context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.tx.QueryContext(q.ctx, numbered(query), args...)
}

func (q *pgTxQuerier) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	// The previous write's savepoint is released with the same round
	// trip that opens this one (no arguments: the simple protocol, which
	// takes two statements).
	sp := "SAVEPOINT w"
	if q.saved {
		sp = "RELEASE SAVEPOINT w; SAVEPOINT w"
	}
	if _, err := q.tx.ExecContext(q.ctx, sp); err != nil {
		return nil, err
	}
	q.saved = true
	res, err := q.tx.ExecContext(q.ctx, numbered(query), args...)
	if err != nil {
		if _, rerr := q.tx.ExecContext(q.ctx, "ROLLBACK TO SAVEPOINT w"); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		return nil, err
	}
	return res, nil
}

// pgUnavailable marks err ErrUnavailable when it says PostgreSQL could
// not be reached or answered that it cannot serve (connection errors,
// shutdown, too many connections, timeouts); other errors are returned
// as they are.
func pgUnavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),                           // insufficient resources
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutting down, starting up
			pe.Code == "57014": // statement timeout
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
