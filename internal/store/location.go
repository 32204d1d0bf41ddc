package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Kinds of store a Location names.
const (
	KindSQLite   = "sqlite"
	KindPostgres = "postgres"
)

// Location says which store to open: isolationd's --store flag
// (ISOLATION_STORE), and the --from and --to of store copy.
type Location struct {
	Kind string // KindSQLite or KindPostgres
	// Path is the SQLite file; "" means the one in the data directory.
	Path string
	// DSN is the PostgreSQL URL, password included: never log it, log
	// String().
	DSN string
}

// ParseLocation reads a store location: "sqlite" (the file in the data
// directory), "sqlite:PATH", or a postgres:// or postgresql:// URL. An
// empty string is "sqlite". Its errors never hold a password.
func ParseLocation(s string) (Location, error) {
	switch {
	case s == "" || s == KindSQLite:
		return Location{Kind: KindSQLite}, nil
	case strings.HasPrefix(s, KindSQLite+":"):
		path := strings.TrimPrefix(s, KindSQLite+":")
		path = strings.TrimPrefix(path, "//") // sqlite://PATH reads as sqlite:PATH
		if path == "" {
			return Location{}, errors.New(`"sqlite:" needs the database file's path after it (sqlite:/var/lib/isolationd/isolationd.db)`)
		}
		return Location{Kind: KindSQLite, Path: path}, nil
	case strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://"):
		u, err := url.Parse(s)
		if err != nil {
			// url's errors quote the whole URL, password and all.
			return Location{}, fmt.Errorf("%s is not a valid URL: write postgres://USER:PASSWORD@HOST:PORT/DATABASE", RedactDSN(s))
		}
		if u.Host == "" {
			return Location{}, fmt.Errorf("%s names no host: write postgres://USER:PASSWORD@HOST:PORT/DATABASE", RedactDSN(s))
		}
		if strings.TrimPrefix(u.Path, "/") == "" {
			return Location{}, fmt.Errorf("%s names no database: write postgres://USER:PASSWORD@HOST:PORT/DATABASE", RedactDSN(s))
		}
		return Location{Kind: KindPostgres, DSN: s}, nil
	}
	return Location{}, fmt.Errorf("%s: want sqlite, sqlite:PATH, or a postgres:// or postgresql:// URL", RedactDSN(s))
}

// String is the location with any password replaced by REDACTED.
func (l Location) String() string {
	if l.Kind == KindPostgres {
		return RedactDSN(l.DSN)
	}
	if l.Path == "" {
		return KindSQLite
	}
	return KindSQLite + ":" + l.Path
}

// Shared reports whether several servers may open the store at once (a
// database server), so that what one caches another can change.
func (l Location) Shared() bool { return l.Kind == KindPostgres }

// RedactDSN replaces the password of a database URL, in its user
// information or a password= parameter, by REDACTED; it works on text
// that does not parse as a URL too.
func RedactDSN(raw string) string {
	raw = userPassword.ReplaceAllString(raw, "${1}REDACTED@")
	return passwordParam.ReplaceAllString(raw, "${1}REDACTED")
}

var (
	// userPassword is the ":PASSWORD@" after a scheme's "//USER"; the
	// password runs to the last @ before the path, as url.Parse reads it.
	userPassword  = regexp.MustCompile(`(://[^/?#@:]*:)[^/?#]*@`)
	passwordParam = regexp.MustCompile(`(?i)((?:^|[?&\s])password=)[^&#\s]*`)
)

// Open opens the store loc names (a SQLite file needs its Path),
// migrated to this build's schema.
func Open(ctx context.Context, loc Location) (Backend, error) {
	switch loc.Kind {
	case KindSQLite:
		if loc.Path == "" {
			return nil, errors.New("store: a SQLite store needs its file's path")
		}
		return OpenSQLite(ctx, loc.Path)
	case KindPostgres:
		p, err := OpenPostgres(ctx, loc.DSN)
		if err != nil {
			// pgx's errors may quote the URL: never the password.
			return nil, fmt.Errorf("%s: %s", loc, RedactDSN(err.Error()))
		}
		return p, nil
	}
	return nil, fmt.Errorf("store: unknown store kind %q", loc.Kind)
}
