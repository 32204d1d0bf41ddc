package store

import (
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The SQL of the reader and the Tx (sqlite_*.go) serves both stores: it
// is written with ? placeholders in the SQL both databases read alike,
// and the few statements that cannot be are a dialect's.
type dialect struct {
	// inJSON is "IN (the ids of the JSON array bound to ?)", so that any
	// number of ids has one SQL text (and one prepared statement).
	inJSON string
	// pruneKeep deletes the flow records before the newest ? of them.
	pruneKeep string
}

var (
	sqliteDialect = &dialect{
		inJSON: "IN (SELECT value FROM json_each(?))",
		// SQLite's AUTOINCREMENT ids have no gaps at the new end (a rolled
		// back insert gives its id back), so the bound is arithmetic.
		pruneKeep: "DELETE FROM flows WHERE id <= (SELECT MAX(id) FROM flows) - ?",
	}
	postgresDialect = &dialect{
		inJSON: "IN (SELECT json_array_elements_text(CAST(? AS json)))",
		// A sequence keeps the ids a rolled-back transaction took, so the
		// newest ids may have gaps: find the bound by counting.
		pruneKeep: "DELETE FROM flows WHERE id < (SELECT MIN(id) FROM (SELECT id FROM flows ORDER BY id DESC LIMIT ?) AS newest)",
	}
)

// conKind is the constraint a write broke, whichever the database.
type conKind int

const (
	conNone conKind = iota
	conPrimaryKey
	conUnique
	conForeignKey
)

// constraint returns the constraint violation err reports, conNone when
// err is something else. PostgreSQL reports primary keys as unique
// violations; its default name for them ends in _pkey.
func constraint(err error) conKind {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return conPrimaryKey
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return conUnique
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return conForeignKey
		}
		return conNone
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			if strings.HasSuffix(pe.ConstraintName, "_pkey") {
				return conPrimaryKey
			}
			return conUnique
		case "23503":
			return conForeignKey
		}
	}
	return conNone
}

// placeholders caches numbered forms of SQL texts, up to
// maxCachedStmts of them (list queries with many label filters each have
// their own text).
var placeholders struct {
	sync.RWMutex
	m map[string]string
}

// numbered rewrites the ? placeholders of query as PostgreSQL's $1, $2…
// (none of the store's string literals holds a ?).
func numbered(query string) string {
	placeholders.RLock()
	out, ok := placeholders.m[query]
	placeholders.RUnlock()
	if ok {
		return out
	}
	var b strings.Builder
	n := 0
	quoted := false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	out = b.String()
	placeholders.Lock()
	if placeholders.m == nil {
		placeholders.m = map[string]string{}
	}
	if len(placeholders.m) < maxCachedStmts {
		placeholders.m[query] = out
	}
	placeholders.Unlock()
	return out
}
