package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// table describes how one kind of object is stored, so that one set of
// helpers serves every kind.
type table[T any] struct {
	noun string // for errors: "environment"
	name string
	// labels is the label side table, "" when the kind has no labels.
	labels string
	// cols are the indexed copies of fields, after id and before data;
	// row returns the object's id, their values and its labels.
	cols []string
	row  func(T) (id string, vals []any, labels map[string]string)
	// Columns that ListQuery filters use; "" when the kind lacks the filter.
	projectCol, stateCol, ownerCol, expiresCol, parentCol, environmentCol string
	// unique describes the uniqueness rule (besides the id) that obj broke.
	unique func(obj T) string
	// children names what keeps an object from being deleted (a foreign
	// key pointing at it), "" when nothing can.
	children string
	// check rejects an object that must never be stored, nil when any is fine.
	check func(T) error
}

var projects = table[apiv1.Project]{
	noun: "project", name: "projects", labels: "project_labels",
	cols: []string{"name"},
	row: func(p apiv1.Project) (string, []any, map[string]string) {
		return p.ID, []any{p.Name}, p.Labels
	},
	// A project is its own scope: filtering projects by project lists that one.
	projectCol: "id",
	unique:     func(p apiv1.Project) string { return fmt.Sprintf("project name %q is already taken", p.Name) },
	children:   "it still has environments or policies",
}

var environments = table[apiv1.Environment]{
	noun: "environment", name: "environments", labels: "environment_labels",
	cols: []string{"project_id", "name", "state", "expires_at"},
	row: func(e apiv1.Environment) (string, []any, map[string]string) {
		var exp any
		if e.ExpiresAt != nil {
			exp = e.ExpiresAt.UnixNano()
		}
		return e.ID, []any{e.ProjectID, e.Name, e.State, exp}, e.Labels
	},
	projectCol: "project_id", stateCol: "state", expiresCol: "expires_at",
	unique: func(e apiv1.Environment) string {
		return fmt.Sprintf("environment name %q already exists in project %s", e.Name, e.ProjectID)
	},
}

var policies = table[apiv1.Policy]{
	noun: "policy", name: "policies",
	cols: []string{"project_id", "name", "owner"},
	row: func(p apiv1.Policy) (string, []any, map[string]string) {
		return p.ID, []any{p.ProjectID, p.Name, p.OwnerEnvironmentID}, nil
	},
	projectCol: "project_id", ownerCol: "owner",
	unique: func(p apiv1.Policy) string {
		return fmt.Sprintf("policy name %q already exists in project %s", p.Name, p.ProjectID)
	},
}

var assertions = table[apiv1.Assertion]{
	noun: "assertion", name: "assertions",
	cols: []string{"project_id", "name"},
	row: func(a apiv1.Assertion) (string, []any, map[string]string) {
		return a.ID, []any{a.ProjectID, a.Name}, nil
	},
	projectCol: "project_id",
	unique: func(a apiv1.Assertion) string {
		return fmt.Sprintf("assertion name %q already exists in project %s", a.Name, a.ProjectID)
	},
}

var tokens = table[TokenRecord]{
	noun: "token", name: "tokens",
	cols: []string{"hash", "project_id", "parent_id", "environment_id"},
	row: func(t TokenRecord) (string, []any, map[string]string) {
		return t.ID, []any{t.Hash, t.ProjectID, t.ParentID, t.EnvironmentID}, nil
	},
	projectCol: "project_id", parentCol: "parent_id", environmentCol: "environment_id",
	// Never repeat the hash: it identifies a secret.
	unique: func(TokenRecord) string { return "a token with the same secret already exists" },
	check:  checkTokenHash,
}

// checkTokenHash makes sure what is stored is a SHA-256 digest, so that a
// secret passed by mistake is refused instead of kept. The value is never
// repeated in the error.
func checkTokenHash(t TokenRecord) error { return checkSecretHash("token", t.ID, t.Hash) }

// checkSecretHash refuses a hash of a secret that is not a hex SHA-256
// digest (every kind of secret is stored this way).
func checkSecretHash(noun, id, hash string) error {
	if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return fmt.Errorf("store: %s %s: hash must be a hex SHA-256 digest (64 lowercase hex digits)", noun, id)
	}
	return nil
}

// reader implements Reader over the read pool or a transaction.
type reader struct {
	q     querier
	d     *dialect
	clock *storeClock // nil: the real clock
	// assertions is the store's cache of decoded assertions; nil: none.
	assertions *immutableCache[apiv1.Assertion]
}

func (r reader) GetProject(ctx context.Context, id string) (apiv1.Project, error) {
	return get(ctx, r.q, projects, "id", id)
}

func (r reader) ListProjects(ctx context.Context, q ListQuery) ([]apiv1.Project, string, error) {
	return list(ctx, r.q, projects, q)
}

func (r reader) GetEnvironment(ctx context.Context, id string) (apiv1.Environment, error) {
	return get(ctx, r.q, environments, "id", id)
}

func (r reader) GetEnvironmentJSON(ctx context.Context, id string) (EnvironmentJSON, error) {
	data, err := getData(ctx, r.q, environments, "id", id)
	if err != nil {
		return EnvironmentJSON{}, err
	}
	return encodeEnvironment(data)
}

// encodeEnvironment decodes a stored environment and encodes it again, so
// that the JSON is this build's encoding even for a row an older version
// wrote (a field added since is there, as GetEnvironment would give it).
func encodeEnvironment(data []byte) (EnvironmentJSON, error) {
	e, err := decode(environments, data)
	if err != nil {
		return EnvironmentJSON{}, err
	}
	out, err := json.Marshal(e)
	if err != nil {
		return EnvironmentJSON{}, fmt.Errorf("store: encode environment %s: %w", e.ID, err)
	}
	return EnvironmentJSON{ProjectID: e.ProjectID, Generation: e.Generation, JSON: out}, nil
}

func (r reader) ListEnvironments(ctx context.Context, q ListQuery) ([]apiv1.Environment, string, error) {
	return list(ctx, r.q, environments, q)
}

// CountEnvironments has every state as a key, zero included, so that a
// metrics gauge drops to zero instead of keeping its last value.
func (r reader) CountEnvironments(ctx context.Context) (map[string]int, error) {
	counts := make(map[string]int, len(apiv1.States))
	for _, s := range apiv1.States {
		counts[s] = 0
	}
	rows, err := r.q.QueryContext(ctx, "SELECT state, COUNT(*) FROM environments GROUP BY state")
	if err != nil {
		return nil, fmt.Errorf("store: count environments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("store: count environments: %w", err)
		}
		counts[state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count environments: %w", err)
	}
	return counts, nil
}

func (r reader) CountProjectEnvironments(ctx context.Context, projectIDs ...string) (map[string]int, error) {
	counts := make(map[string]int, len(projectIDs))
	for _, id := range projectIDs {
		counts[id] = 0
	}
	if len(projectIDs) == 0 {
		return counts, nil
	}
	ids, err := json.Marshal(projectIDs)
	if err != nil {
		return nil, fmt.Errorf("store: count project environments: %w", err)
	}
	// One SQL text for any number of ids, so one prepared statement.
	rows, err := r.q.QueryContext(ctx, "SELECT project_id, COUNT(*) FROM environments WHERE project_id "+r.d.inJSON+" GROUP BY project_id", string(ids))
	if err != nil {
		return nil, fmt.Errorf("store: count project environments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("store: count project environments: %w", err)
		}
		counts[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count project environments: %w", err)
	}
	return counts, nil
}

func (r reader) GetPolicy(ctx context.Context, id string) (apiv1.Policy, error) {
	return get(ctx, r.q, policies, "id", id)
}

func (r reader) ListPolicies(ctx context.Context, q ListQuery) ([]apiv1.Policy, string, error) {
	return list(ctx, r.q, policies, q)
}

func (r reader) GetAssertion(ctx context.Context, id string) (apiv1.Assertion, error) {
	return get(ctx, r.q, assertions, "id", id)
}

func (r reader) ListAssertions(ctx context.Context, q ListQuery) ([]apiv1.Assertion, string, error) {
	return listDecoded(ctx, r.q, assertions, q, func(id string, data []byte) (apiv1.Assertion, error) {
		return r.assertions.decode(id, data, func(data []byte) (apiv1.Assertion, error) { return decode(assertions, data) })
	})
}

func (r reader) GetToken(ctx context.Context, id string) (TokenRecord, error) {
	return get(ctx, r.q, tokens, "id", id)
}

func (r reader) GetTokenByHash(ctx context.Context, hash string) (TokenRecord, error) {
	return get(ctx, r.q, tokens, "hash", hash)
}

func (r reader) ListTokens(ctx context.Context, q ListQuery) ([]TokenRecord, string, error) {
	return list(ctx, r.q, tokens, q)
}

func (t *sqlTx) CreateProject(ctx context.Context, p apiv1.Project) error {
	return insert(ctx, t.q, projects, p)
}

func (t *sqlTx) CreateEnvironment(ctx context.Context, e apiv1.Environment) error {
	t.touch(e.ID)
	return insert(ctx, t.q, environments, e)
}

func (t *sqlTx) CreatePolicy(ctx context.Context, p apiv1.Policy) error {
	return insert(ctx, t.q, policies, p)
}

func (t *sqlTx) CreateAssertion(ctx context.Context, a apiv1.Assertion) error {
	return insert(ctx, t.q, assertions, a)
}

func (t *sqlTx) DeleteAssertion(ctx context.Context, id string) error {
	return remove(ctx, t.q, assertions, id)
}

func (t *sqlTx) CreateToken(ctx context.Context, tr TokenRecord) error {
	t.commit.Tokens = append(t.commit.Tokens, tr.ID)
	return insert(ctx, t.q, tokens, tr)
}

func (t *sqlTx) UpdateProject(ctx context.Context, p apiv1.Project) error {
	return replace(ctx, t.q, projects, p)
}

func (t *sqlTx) UpdateEnvironment(ctx context.Context, e apiv1.Environment) error {
	t.touch(e.ID)
	return replace(ctx, t.q, environments, e)
}

func (t *sqlTx) UpdatePolicy(ctx context.Context, p apiv1.Policy) error {
	return replace(ctx, t.q, policies, p)
}

func (t *sqlTx) UpdateToken(ctx context.Context, tr TokenRecord) error {
	t.commit.Tokens = append(t.commit.Tokens, tr.ID)
	return replace(ctx, t.q, tokens, tr)
}

func (t *sqlTx) DeleteProject(ctx context.Context, id string) error {
	return remove(ctx, t.q, projects, id)
}

func (t *sqlTx) DeleteEnvironment(ctx context.Context, id string) error {
	t.touch(id)
	return remove(ctx, t.q, environments, id)
}

func (t *sqlTx) DeletePolicy(ctx context.Context, id string) error {
	return remove(ctx, t.q, policies, id)
}

// get reads the object whose col equals val.
func get[T any](ctx context.Context, q querier, t table[T], col, val string) (T, error) {
	data, err := getData(ctx, q, t, col, val)
	if err != nil {
		var zero T
		return zero, err
	}
	return decode(t, data)
}

// getData reads the stored JSON of the object whose col equals val.
func getData[T any](ctx context.Context, q querier, t table[T], col, val string) ([]byte, error) {
	var data []byte
	found, err := queryOne(ctx, q, "SELECT data FROM "+t.name+" WHERE "+col+" = ?", []any{val}, &data)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", t.noun, err)
	}
	if !found {
		if col == "id" {
			return nil, fmt.Errorf("%s %s: %w", t.noun, val, ErrNotFound)
		}
		// Other keys (a token hash) are not repeated in errors.
		return nil, fmt.Errorf("%s: %w", t.noun, ErrNotFound)
	}
	return data, nil
}

func decode[T any](t table[T], data []byte) (T, error) {
	var obj T
	if err := json.Unmarshal(data, &obj); err != nil {
		return obj, fmt.Errorf("store: decode %s: %w", t.noun, err)
	}
	return obj, nil
}

// list returns one page of objects in id order and the next cursor.
func list[T any](ctx context.Context, q querier, t table[T], lq ListQuery) ([]T, string, error) {
	return listDecoded(ctx, q, t, lq, func(id string, data []byte) (T, error) {
		var obj T
		if err := json.Unmarshal(data, &obj); err != nil {
			return obj, fmt.Errorf("store: decode %s %s: %w", t.noun, id, err)
		}
		return obj, nil
	})
}

// listDecoded is list with each row's object made by decodeRow, which
// must not keep data (it is the driver's buffer).
func listDecoded[T any](ctx context.Context, q querier, t table[T], lq ListQuery, decodeRow func(id string, data []byte) (T, error)) ([]T, string, error) {
	query, args, limit, err := listSQL(t, lq)
	if err != nil {
		return nil, "", err
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list %s: %w", t.name, err)
	}
	defer rows.Close()
	items := make([]T, 0, min(limit, 64))
	next := ""
	size := 0
	for rows.Next() {
		var id string
		var data sql.RawBytes
		if err := rows.Scan(&id, &data); err != nil {
			return nil, "", fmt.Errorf("store: list %s: %w", t.name, err)
		}
		size += len(data)
		if len(items) == limit || (lq.MaxBytes > 0 && size > lq.MaxBytes && len(items) > 0) {
			// The extra row only proves there is another page, which
			// starts after the last item returned.
			next, _, _ = t.row(items[len(items)-1])
			break
		}
		obj, err := decodeRow(id, data)
		if err != nil {
			return nil, "", err
		}
		items = append(items, obj)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: list %s: %w", t.name, err)
	}
	return items, next, nil
}

// listSQL builds the query for lq, which fetches one row past the page.
//
// Without a project filter, a label filter drives the query: the first
// label's index, read from the cursor on in id order, stops after one page
// however many objects carry the label (reading every match first would
// grow with the table). With a project filter the project's index drives,
// since a project holds few objects, and labels are checked per row.
func listSQL[T any](t table[T], lq ListQuery) (string, []any, int, error) {
	limit := lq.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	// Sorted, so that the same filter always has the same SQL text (and
	// prepared statement).
	keys := slices.Sorted(maps.Keys(lq.Labels))
	if len(keys) > 0 && t.labels == "" {
		return "", nil, 0, fmt.Errorf("%w: %s have no labels", ErrInvalidQuery, t.name)
	}
	from, order := t.name+" AS t", "t.id"
	var where []string
	var args []any
	if len(keys) > 0 && lq.ProjectID == "" {
		// CROSS JOIN keeps SQLite from reordering the join; its condition
		// is in WHERE, where PostgreSQL (which has no CROSS JOIN ... ON)
		// reads it too.
		from = t.labels + " AS l CROSS JOIN " + t.name + " AS t"
		order = "l.object_id"
		where = append(where, "t.id = l.object_id AND l.key = ? AND l.value = ?")
		args = append(args, keys[0], lq.Labels[keys[0]])
		keys = keys[1:]
	}
	if lq.Cursor != "" {
		where = append(where, order+" > ?")
		args = append(args, lq.Cursor)
	}
	for _, f := range []struct{ name, col, value string }{
		{"project_id", t.projectCol, lq.ProjectID},
		{"state", t.stateCol, lq.State},
		{"owner", t.ownerCol, lq.Owner},
		{"parent", t.parentCol, lq.ParentID},
		{"environment", t.environmentCol, lq.EnvironmentID},
	} {
		if f.value == "" {
			continue
		}
		if f.col == "" {
			return "", nil, 0, fmt.Errorf("%w: %s cannot be filtered by %s", ErrInvalidQuery, t.name, f.name)
		}
		where = append(where, "t."+f.col+" = ?")
		args = append(args, f.value)
	}
	if !lq.ExpiresBefore.IsZero() {
		if t.expiresCol == "" {
			return "", nil, 0, fmt.Errorf("%w: %s cannot be filtered by expiry", ErrInvalidQuery, t.name)
		}
		where = append(where, "t."+t.expiresCol+" < ?")
		args = append(args, lq.ExpiresBefore.UnixNano())
	}
	for _, k := range keys {
		where = append(where, "EXISTS (SELECT 1 FROM "+t.labels+" WHERE object_id = t.id AND key = ? AND value = ?)")
		args = append(args, k, lq.Labels[k])
	}
	var b strings.Builder
	b.WriteString("SELECT t.id, t.data FROM ")
	b.WriteString(from)
	if len(where) > 0 {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(where, " AND "))
	}
	b.WriteString(" ORDER BY " + order + " LIMIT ?")
	args = append(args, limit+1)
	return b.String(), args, limit, nil
}

// encode checks obj and returns its id, indexed column values, labels and JSON.
func encode[T any](t table[T], obj T) (id string, vals []any, labels map[string]string, data []byte, err error) {
	id, vals, labels = t.row(obj)
	if id == "" {
		return "", nil, nil, nil, fmt.Errorf("store: %s without an id", t.noun)
	}
	if t.check != nil {
		if err := t.check(obj); err != nil {
			return "", nil, nil, nil, err
		}
	}
	if data, err = json.Marshal(obj); err != nil {
		return "", nil, nil, nil, fmt.Errorf("store: encode %s %s: %w", t.noun, id, err)
	}
	return id, vals, labels, data, nil
}

func insert[T any](ctx context.Context, q querier, t table[T], obj T) error {
	id, vals, labels, data, err := encode(t, obj)
	if err != nil {
		return err
	}
	query := "INSERT INTO " + t.name + " (id, " + strings.Join(t.cols, ", ") + ", data) VALUES (?" +
		strings.Repeat(", ?", len(t.cols)+1) + ")"
	args := append(append([]any{id}, vals...), data)
	if _, err := q.ExecContext(ctx, query, args...); err != nil {
		return t.writeErr("create", id, obj, err)
	}
	return putLabels(ctx, q, t, id, labels)
}

func replace[T any](ctx context.Context, q querier, t table[T], obj T) error {
	id, vals, labels, data, err := encode(t, obj)
	if err != nil {
		return err
	}
	query := "UPDATE " + t.name + " SET " + strings.Join(t.cols, " = ?, ") + " = ?, data = ? WHERE id = ?"
	args := append(append(vals, data), id)
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil {
		return t.writeErr("update", id, obj, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: update %s %s: %w", t.noun, id, err)
	} else if n == 0 {
		return fmt.Errorf("%s %s: %w", t.noun, id, ErrNotFound)
	}
	if t.labels == "" {
		return nil
	}
	if _, err := q.ExecContext(ctx, "DELETE FROM "+t.labels+" WHERE object_id = ?", id); err != nil {
		return fmt.Errorf("store: update %s %s labels: %w", t.noun, id, err)
	}
	return putLabels(ctx, q, t, id, labels)
}

func putLabels[T any](ctx context.Context, q querier, t table[T], id string, labels map[string]string) error {
	if t.labels == "" {
		return nil
	}
	query := "INSERT INTO " + t.labels + " (object_id, key, value) VALUES (?, ?, ?)"
	for k, v := range labels {
		if _, err := q.ExecContext(ctx, query, id, k, v); err != nil {
			return fmt.Errorf("store: %s %s labels: %w", t.noun, id, err)
		}
	}
	return nil
}

func remove[T any](ctx context.Context, q querier, t table[T], id string) error {
	res, err := q.ExecContext(ctx, "DELETE FROM "+t.name+" WHERE id = ?", id)
	if err != nil {
		if constraint(err) == conForeignKey {
			return fmt.Errorf("%w: %s %s cannot be deleted: %s", ErrConflict, t.noun, id, t.children)
		}
		return fmt.Errorf("store: delete %s %s: %w", t.noun, id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: delete %s %s: %w", t.noun, id, err)
	} else if n == 0 {
		return fmt.Errorf("%s %s: %w", t.noun, id, ErrNotFound)
	}
	return nil
}

// writeErr turns a failed INSERT or UPDATE into ErrConflict or ErrNotFound
// with a message fit for an API user (no SQL), or wraps it.
func (t table[T]) writeErr(op, id string, obj T, err error) error {
	switch constraint(err) {
	case conPrimaryKey:
		return fmt.Errorf("%w: %s %s already exists", ErrConflict, t.noun, id)
	case conUnique:
		return fmt.Errorf("%w: %s", ErrConflict, t.unique(obj))
	case conForeignKey:
		// The only foreign keys of a written row point at its project.
		return fmt.Errorf("%s %s: project does not exist: %w", t.noun, id, ErrNotFound)
	}
	return fmt.Errorf("store: %s %s %s: %w", op, t.noun, id, err)
}
