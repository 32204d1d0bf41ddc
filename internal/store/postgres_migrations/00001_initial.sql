-- The PostgreSQL schema starts at the shape SQLite's migrations reach at
-- version 9 (sqlite_schema.go), with PostgreSQL's types: BYTEA for BLOB,
-- BIGINT for Unix nanoseconds, an identity for the flows' AUTOINCREMENT,
-- and the "C" collation on text, so that ids and cursors sort by bytes as
-- in SQLite whatever the database's locale. Later changes are new files
-- (goose numbers them); never edit one that has shipped.

-- +goose Up
CREATE TABLE projects (
	id   TEXT COLLATE "C" PRIMARY KEY,
	name TEXT COLLATE "C" NOT NULL UNIQUE,
	data BYTEA NOT NULL
);
CREATE TABLE project_labels (
	object_id TEXT COLLATE "C" NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	key       TEXT COLLATE "C" NOT NULL,
	value     TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (object_id, key)
);
CREATE INDEX project_labels_by_label ON project_labels(key, value, object_id);

CREATE TABLE environments (
	id         TEXT COLLATE "C" PRIMARY KEY,
	project_id TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
	name       TEXT COLLATE "C" NOT NULL,
	state      TEXT COLLATE "C" NOT NULL,
	expires_at BIGINT, -- Unix nanoseconds; NULL without a TTL
	data       BYTEA NOT NULL,
	UNIQUE (project_id, name)
);
CREATE INDEX environments_by_project ON environments(project_id, id);
CREATE INDEX environments_by_state ON environments(state, id);
CREATE INDEX environments_by_expiry ON environments(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE environment_labels (
	object_id TEXT COLLATE "C" NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
	key       TEXT COLLATE "C" NOT NULL,
	value     TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (object_id, key)
);
CREATE INDEX environment_labels_by_label ON environment_labels(key, value, object_id);

CREATE TABLE policies (
	id         TEXT COLLATE "C" PRIMARY KEY,
	project_id TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
	name       TEXT COLLATE "C" NOT NULL,
	owner      TEXT COLLATE "C" NOT NULL, -- OwnerEnvironmentID, '' for none
	data       BYTEA NOT NULL,
	UNIQUE (project_id, name)
);
CREATE INDEX policies_by_project ON policies(project_id, id);
CREATE INDEX policies_by_owner ON policies(owner, id) WHERE owner <> '';

CREATE TABLE assertions (
	id         TEXT COLLATE "C" PRIMARY KEY,
	project_id TEXT COLLATE "C" NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	name       TEXT COLLATE "C" NOT NULL,
	data       BYTEA NOT NULL,
	UNIQUE (project_id, name)
);
CREATE INDEX assertions_by_project ON assertions(project_id, id);

CREATE TABLE tokens (
	id             TEXT COLLATE "C" PRIMARY KEY,
	hash           TEXT COLLATE "C" NOT NULL UNIQUE,
	project_id     TEXT COLLATE "C" NOT NULL,
	parent_id      TEXT COLLATE "C" NOT NULL DEFAULT '',
	environment_id TEXT COLLATE "C" NOT NULL DEFAULT '',
	data           BYTEA NOT NULL
);
CREATE INDEX tokens_by_project ON tokens(project_id, id);
CREATE INDEX tokens_by_parent ON tokens(parent_id, id) WHERE parent_id <> '';
CREATE INDEX tokens_by_environment ON tokens(environment_id, id) WHERE environment_id <> '';

CREATE TABLE ui_sessions (
	id       TEXT COLLATE "C" PRIMARY KEY,
	hash     TEXT COLLATE "C" NOT NULL UNIQUE,
	token_id TEXT COLLATE "C" NOT NULL,
	data     BYTEA NOT NULL
);
CREATE INDEX ui_sessions_by_token ON ui_sessions(token_id, id);

CREATE TABLE idempotency (
	scope      TEXT COLLATE "C" NOT NULL,
	key        TEXT COLLATE "C" NOT NULL,
	expires_at BIGINT NOT NULL, -- Unix nanoseconds
	data       BYTEA NOT NULL,
	PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_expiry ON idempotency(expires_at);

CREATE TABLE audit_events (
	seq               BIGINT PRIMARY KEY,
	id                TEXT COLLATE "C" NOT NULL UNIQUE,
	time              TEXT COLLATE "C" NOT NULL, -- fixed-width UTC, so text order is time order
	request_id        TEXT COLLATE "C" NOT NULL,
	actor_token_id    TEXT COLLATE "C" NOT NULL,
	actor_name        TEXT COLLATE "C" NOT NULL,
	source_ip         TEXT COLLATE "C" NOT NULL,
	source_user_agent TEXT COLLATE "C" NOT NULL,
	project_id        TEXT COLLATE "C" NOT NULL,
	action            TEXT COLLATE "C" NOT NULL,
	resource_type     TEXT COLLATE "C" NOT NULL,
	resource_id       TEXT COLLATE "C" NOT NULL,
	outcome           TEXT COLLATE "C" NOT NULL,
	status_code       INTEGER NOT NULL,
	reason            TEXT COLLATE "C" NOT NULL,
	changes           TEXT COLLATE "C" NOT NULL, -- canonical JSON, 'null' for none
	prev_hash         TEXT COLLATE "C" NOT NULL,
	hash              TEXT COLLATE "C" NOT NULL,
	key_id            TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_project ON audit_events(project_id, seq);
CREATE INDEX audit_by_action ON audit_events(action, seq);
CREATE INDEX audit_by_resource ON audit_events(resource_type, resource_id, seq);
CREATE INDEX audit_by_request ON audit_events(request_id, seq);
CREATE INDEX audit_by_time ON audit_events(time);

CREATE TABLE addresses (
	key            BYTEA PRIMARY KEY, -- the family (4 or 6), then the address's bytes: byte order is address order
	address        TEXT COLLATE "C" NOT NULL,
	environment_id TEXT COLLATE "C" NOT NULL, -- the holder, '' once freed
	project_id     TEXT COLLATE "C" NOT NULL, -- the holder's project, kept once freed
	allocated_at   BIGINT NOT NULL,           -- Unix nanoseconds
	freed_at       BIGINT                     -- Unix nanoseconds; NULL while held
);
CREATE UNIQUE INDEX addresses_by_environment ON addresses(environment_id) WHERE environment_id <> '';
CREATE INDEX addresses_by_freed ON addresses(freed_at, key) WHERE freed_at IS NOT NULL;
CREATE TABLE address_cursors (
	pool TEXT COLLATE "C" PRIMARY KEY,
	next BYTEA NOT NULL -- as addresses.key
);

CREATE TABLE siem_cursors (
	sink     TEXT COLLATE "C" NOT NULL,
	source   TEXT COLLATE "C" NOT NULL, -- audit or flows
	position BIGINT NOT NULL,
	PRIMARY KEY (sink, source)
);

-- An identity never hands out an id twice, pruned or not, as
-- AUTOINCREMENT; unlike it, a rolled-back insert leaves a gap
-- (postgresDialect.pruneKeep counts instead of subtracting).
CREATE TABLE flows (
	id             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	time           TEXT COLLATE "C" NOT NULL, -- as audit_events.time
	environment_id TEXT COLLATE "C" NOT NULL,
	project_id     TEXT COLLATE "C" NOT NULL,
	direction      TEXT COLLATE "C" NOT NULL,
	protocol       TEXT COLLATE "C" NOT NULL,
	src_address    TEXT COLLATE "C" NOT NULL,
	src_port       INTEGER NOT NULL,
	dst_address    TEXT COLLATE "C" NOT NULL,
	dst_port       INTEGER NOT NULL,
	fqdn           TEXT COLLATE "C" NOT NULL,
	verdict        TEXT COLLATE "C" NOT NULL,
	policy_id      TEXT COLLATE "C" NOT NULL,
	rule           INTEGER,
	packets        BIGINT NOT NULL,
	bytes          BIGINT NOT NULL,
	count          BIGINT NOT NULL,
	first_seen     TEXT COLLATE "C" NOT NULL,
	last_seen      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX flows_by_environment ON flows(environment_id, id);
CREATE INDEX flows_by_project ON flows(project_id, id);
CREATE INDEX flows_by_time ON flows(time);

-- Leases elect one holder among the servers (Postgres.Lease), by the
-- database's clock.
CREATE TABLE leases (
	name       TEXT COLLATE "C" PRIMARY KEY,
	holder     TEXT COLLATE "C" NOT NULL,
	fence      BIGINT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE leases, flows, siem_cursors, address_cursors, addresses, audit_events, idempotency,
	ui_sessions, tokens, assertions, policies, environment_labels, environments, project_labels, projects;
