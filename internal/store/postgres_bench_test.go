package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
)

// BenchmarkPostgresUpdate is the serialised append's cost: the durable
// create of BenchmarkSQLiteUpdate (its baseline, make bench-store runs
// both) as one Update under the write lock, from one caller, from 8
// callers on one store, and from 8 callers spread over two stores on one
// database (two replicas). raw is the ceiling: one INSERT of a row the
// size of an environment per transaction through pgx, at the same
// durability (PostgreSQL's defaults: fsync, synchronous_commit on).
func BenchmarkPostgresUpdate(b *testing.B) {
	for _, tc := range []struct{ stores, clients int }{{1, 1}, {1, 8}, {2, 8}} {
		b.Run(fmt.Sprintf("stores=%d/clients=%d", tc.stores, tc.clients), func(b *testing.B) {
			dsn := pgtest.DSN(b)
			var stores []*store.Postgres
			for range tc.stores {
				s := openPostgres(b, dsn)
				b.Cleanup(func() { s.Close() })
				stores = append(stores, s)
			}
			p := apiv1.Project{ID: "prj_" + uuid.Must(uuid.NewV7()).String(), Name: "bench", CreatedAt: time.Now()}
			if err := stores[0].Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, p) }); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			runClients(b, tc.clients, func(i int) {
				if err := createWithAudit(ctx, stores[i%len(stores)], p, i); err != nil {
					b.Error(err)
				}
			})
			reportRate(b, "creates/s")
			b.StopTimer()
			if res, err := store.VerifyAudit(ctx, stores[0]); err != nil || !res.OK() || res.Events != int64(b.N) {
				b.Fatalf("after the run, VerifyAudit = %+v, %v; want %d events", res, err, b.N)
			}
		})
	}
	b.Run("raw", func(b *testing.B) {
		conn, err := pgx.Connect(ctx, pgtest.DSN(b))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "CREATE TABLE t (id TEXT PRIMARY KEY, data BYTEA NOT NULL)"); err != nil {
			b.Fatal(err)
		}
		data, _ := json.Marshal(benchEnv("prj_x", 0))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO t (id, data) VALUES ($1, $2)", fmt.Sprint(i), data)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "inserts/s")
	})
}
