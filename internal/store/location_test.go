package store_test

import (
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func TestParseLocation_ReadsEachKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want store.Location
		str  string
	}{
		{"", store.Location{Kind: store.KindSQLite}, "sqlite"},
		{"sqlite", store.Location{Kind: store.KindSQLite}, "sqlite"},
		{"sqlite:/var/lib/x.db", store.Location{Kind: store.KindSQLite, Path: "/var/lib/x.db"}, "sqlite:/var/lib/x.db"},
		{"sqlite://rel/x.db", store.Location{Kind: store.KindSQLite, Path: "rel/x.db"}, "sqlite:rel/x.db"},
		{"postgres://iso:s3cret@127.0.0.1:5432/iso", store.Location{Kind: store.KindPostgres, DSN: "postgres://iso:s3cret@127.0.0.1:5432/iso"}, "postgres://iso:REDACTED@127.0.0.1:5432/iso"},
		{"postgresql://iso@db/iso?sslmode=disable&password=s3cret", store.Location{Kind: store.KindPostgres, DSN: "postgresql://iso@db/iso?sslmode=disable&password=s3cret"}, "postgresql://iso@db/iso?sslmode=disable&password=REDACTED"},
	} {
		got, err := store.ParseLocation(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if got.String() != tc.str {
			t.Errorf("ParseLocation(%q).String() = %q, want %q", tc.in, got.String(), tc.str)
		}
	}
}

// A location that cannot be used is refused with the rule it breaks, and
// the refusal never holds the password.
func TestParseLocation_RefusesBadLocationsWithoutThePassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"mysql://u:s3cret@h/db", "want sqlite, sqlite:PATH, or a postgres://"},
		{"postgres://u:s3cret@/db", "names no host"},
		{"postgres://u:s3cret@h:5432", "names no database"},
		{"postgres://u:s3cret@h:99999999999/db%zz", "is not a valid URL"},
		{"sqlite:", "needs the database file's path"},
	} {
		_, err := store.ParseLocation(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseLocation(%q) = %v, want an error saying %q", tc.in, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseLocation(%q): the error %q holds the password", tc.in, err)
		}
	}
}

func TestRedactDSN_HidesPasswordsWhereverTheyStand(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:p@ss@h/db":           "postgres://u:REDACTED@h/db",
		"postgres://u@h/db":                "postgres://u@h/db",
		"host=h password=s3cret user=u":    "host=h password=REDACTED user=u",
		"postgres://h/db?PASSWORD=x&a=b":   "postgres://h/db?PASSWORD=REDACTED&a=b",
		"postgres://u:%zz:x@h/db?sslmode=": "postgres://u:REDACTED@h/db?sslmode=",
	} {
		if got := store.RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}
