package store

import (
	"context"
	"fmt"
	"time"
)

// migrations[i] brings the schema from version i to version i+1. Append
// new versions; never edit one that has shipped. These are SQLite's
// alone: deployed database files depend on this list. PostgreSQL has its
// own (postgres_migrations, run by goose), which started at the shape
// these reach; a change of schema is written for both.
//
// Each object is kept whole as JSON in data; the other columns are copies
// of its fields that constraints and list filters need. The audit chain is
// the exception: its columns are the event itself (nothing duplicated), so
// that altering any stored field breaks the hash.
var migrations = []string{
	// Version 1.
	`
CREATE TABLE projects (
	id   TEXT PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	data BLOB NOT NULL
);
CREATE TABLE project_labels (
	object_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	key       TEXT NOT NULL,
	value     TEXT NOT NULL,
	PRIMARY KEY (object_id, key)
) WITHOUT ROWID;
CREATE INDEX project_labels_by_label ON project_labels(key, value, object_id);

CREATE TABLE environments (
	id         TEXT PRIMARY KEY,
	project_id TEXT NOT NULL REFERENCES projects(id),
	name       TEXT NOT NULL,
	state      TEXT NOT NULL,
	expires_at INTEGER, -- Unix nanoseconds; NULL without a TTL
	data       BLOB NOT NULL,
	UNIQUE (project_id, name)
);
CREATE INDEX environments_by_project ON environments(project_id, id);
CREATE INDEX environments_by_state ON environments(state, id);
CREATE INDEX environments_by_expiry ON environments(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE environment_labels (
	object_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
	key       TEXT NOT NULL,
	value     TEXT NOT NULL,
	PRIMARY KEY (object_id, key)
) WITHOUT ROWID;
CREATE INDEX environment_labels_by_label ON environment_labels(key, value, object_id);

CREATE TABLE policies (
	id         TEXT PRIMARY KEY,
	project_id TEXT NOT NULL REFERENCES projects(id),
	name       TEXT NOT NULL,
	owner      TEXT NOT NULL, -- OwnerEnvironmentID, '' for none
	data       BLOB NOT NULL,
	UNIQUE (project_id, name)
);
CREATE INDEX policies_by_project ON policies(project_id, id);
CREATE INDEX policies_by_owner ON policies(owner, id) WHERE owner <> '';

CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	project_id TEXT NOT NULL,
	data       BLOB NOT NULL
);
CREATE INDEX tokens_by_project ON tokens(project_id, id);

CREATE TABLE idempotency (
	scope      TEXT NOT NULL,
	key        TEXT NOT NULL,
	expires_at INTEGER NOT NULL, -- Unix nanoseconds
	data       BLOB NOT NULL,
	PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_expiry ON idempotency(expires_at);

CREATE TABLE audit_events (
	seq               INTEGER PRIMARY KEY,
	id                TEXT NOT NULL UNIQUE,
	time              TEXT NOT NULL, -- fixed-width UTC, so text order is time order
	request_id        TEXT NOT NULL,
	actor_token_id    TEXT NOT NULL,
	actor_name        TEXT NOT NULL,
	source_ip         TEXT NOT NULL,
	source_user_agent TEXT NOT NULL,
	project_id        TEXT NOT NULL,
	action            TEXT NOT NULL,
	resource_type     TEXT NOT NULL,
	resource_id       TEXT NOT NULL,
	outcome           TEXT NOT NULL,
	status_code       INTEGER NOT NULL,
	reason            TEXT NOT NULL,
	changes           TEXT NOT NULL, -- canonical JSON, 'null' for none
	prev_hash         TEXT NOT NULL,
	hash              TEXT NOT NULL
);
CREATE INDEX audit_by_project ON audit_events(project_id, seq);
CREATE INDEX audit_by_action ON audit_events(action, seq);
CREATE INDEX audit_by_resource ON audit_events(resource_type, resource_id, seq);
CREATE INDEX audit_by_request ON audit_events(request_id, seq);
CREATE INDEX audit_by_time ON audit_events(time);
`,
	// Version 2: the HMAC key that sealed an event, '' for plain SHA-256.
	`ALTER TABLE audit_events ADD COLUMN key_id TEXT NOT NULL DEFAULT '';`,
	// Version 3: the address allocator's state (sqlite_addresses.go).
	`
CREATE TABLE addresses (
	key            BLOB PRIMARY KEY, -- the family (4 or 6), then the address's bytes: byte order is address order
	address        TEXT NOT NULL,
	environment_id TEXT NOT NULL,    -- the holder, '' once freed
	project_id     TEXT NOT NULL,    -- the holder's project, kept once freed
	allocated_at   INTEGER NOT NULL, -- Unix nanoseconds
	freed_at       INTEGER           -- Unix nanoseconds; NULL while held
) WITHOUT ROWID;
CREATE UNIQUE INDEX addresses_by_environment ON addresses(environment_id) WHERE environment_id <> '';
CREATE INDEX addresses_by_freed ON addresses(freed_at, key) WHERE freed_at IS NOT NULL;
CREATE TABLE address_cursors (
	pool TEXT PRIMARY KEY,
	next BLOB NOT NULL -- as addresses.key
);
`,
	// Version 4: environments stored before max_processes existed get its
	// default, as if they had been created with it.
	`UPDATE environments SET data = CAST(json_set(CAST(data AS TEXT), '$.resources.max_processes', 1024) AS BLOB)
	WHERE json_extract(CAST(data AS TEXT), '$.resources.max_processes') IS NULL;`,
	// Version 5: session tokens, found by the token that minted them and
	// by their environment, to be revoked with either.
	`
ALTER TABLE tokens ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN environment_id TEXT NOT NULL DEFAULT '';
CREATE INDEX tokens_by_parent ON tokens(parent_id, id) WHERE parent_id <> '';
CREATE INDEX tokens_by_environment ON tokens(environment_id, id) WHERE environment_id <> '';
`,
	// Version 6: web console sessions (sqlite_uisessions.go), found by the
	// hash of their cookie's secret.
	`
CREATE TABLE ui_sessions (
	id       TEXT PRIMARY KEY,
	hash     TEXT NOT NULL UNIQUE,
	token_id TEXT NOT NULL,
	data     BLOB NOT NULL
);
CREATE INDEX ui_sessions_by_token ON ui_sessions(token_id, id);
`,
	// Version 7: where each SIEM sink's delivery stopped, per source
	// (internal/siem): the last audit seq or flow id it received.
	`
CREATE TABLE siem_cursors (
	sink     TEXT NOT NULL,
	source   TEXT NOT NULL, -- audit or flows
	position INTEGER NOT NULL,
	PRIMARY KEY (sink, source)
) WITHOUT ROWID;
`,
	// Version 8: flow records. AUTOINCREMENT so that an id is never
	// reused after pruning: it is the cursor of whatever follows them.
	`
CREATE TABLE flows (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	time           TEXT NOT NULL, -- as audit_events.time
	environment_id TEXT NOT NULL,
	project_id     TEXT NOT NULL,
	direction      TEXT NOT NULL,
	protocol       TEXT NOT NULL,
	src_address    TEXT NOT NULL,
	src_port       INTEGER NOT NULL,
	dst_address    TEXT NOT NULL,
	dst_port       INTEGER NOT NULL,
	fqdn           TEXT NOT NULL,
	verdict        TEXT NOT NULL,
	policy_id      TEXT NOT NULL,
	rule           INTEGER,
	packets        INTEGER NOT NULL,
	bytes          INTEGER NOT NULL,
	count          INTEGER NOT NULL,
	first_seen     TEXT NOT NULL,
	last_seen      TEXT NOT NULL
);
CREATE INDEX flows_by_environment ON flows(environment_id, id);
CREATE INDEX flows_by_project ON flows(project_id, id);
CREATE INDEX flows_by_time ON flows(time);
`,
	// Version 9: assertions (policy tests), which go with their project.
	`
CREATE TABLE assertions (
	id         TEXT PRIMARY KEY,
	project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	data       BLOB NOT NULL,
	UNIQUE (project_id, name)
);
CREATE INDEX assertions_by_project ON assertions(project_id, id);
`,
}

// migrate applies the missing migrations in one transaction, so a crash
// mid-way leaves the previous version intact.
func migrate(ctx context.Context, q querier) (err error) {
	if _, err := q.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = q.ExecContext(ctx, "ROLLBACK")
		}
	}()
	if _, err := q.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at TEXT NOT NULL
)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	var current int
	if _, err := queryOne(ctx, q, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", nil, &current); err != nil {
		return fmt.Errorf("store: migrate: read schema version: %w", err)
	}
	if current > len(migrations) {
		return fmt.Errorf("store: database schema version %d is newer than this build supports (%d)", current, len(migrations))
	}
	for v := current; v < len(migrations); v++ {
		if _, err := q.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("store: migrate to schema version %d: %w", v+1, err)
		}
		if _, err := q.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
			v+1, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return fmt.Errorf("store: migrate to schema version %d: %w", v+1, err)
		}
	}
	if _, err := q.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("store: migrate: commit: %w", err)
	}
	return nil
}

// SchemaVersion is the file's schema version and this build's (equal
// once open: OpenSQLite migrates).
func (s *SQLite) SchemaVersion(ctx context.Context) (current, want int64, err error) {
	if _, err := queryOne(ctx, s.rq, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", nil, &current); err != nil {
		return 0, int64(len(migrations)), fmt.Errorf("store: schema version: %w", err)
	}
	return current, int64(len(migrations)), nil
}

// Ping checks that the database file can be read.
func (s *SQLite) Ping(ctx context.Context) error {
	if err := s.rdb.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

var _ Backend = (*SQLite)(nil)
