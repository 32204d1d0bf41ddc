package store_test

import (
	"context"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/storetest"
)

func openPostgres(t testing.TB, dsn string) *store.Postgres {
	t.Helper()
	s, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	return s
}

// dsns remembers each store's database, for the reopen.
var dsns = map[*store.Postgres]string{}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t,
		func(t *testing.T) store.Store {
			dsn := pgtest.DSN(t)
			s := openPostgres(t, dsn)
			dsns[s] = dsn
			return s
		},
		storetest.WithReopen(func(t *testing.T, s store.Store) store.Store {
			dsn := dsns[s.(*store.Postgres)]
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			r := openPostgres(t, dsn)
			dsns[r] = dsn
			return r
		}),
		storetest.WithExclusiveLeases(func(t *testing.T, s store.Store) store.Store {
			return openPostgres(t, dsns[s.(*store.Postgres)])
		}),
	)
}
