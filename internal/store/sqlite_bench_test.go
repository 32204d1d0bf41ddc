package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// benchEnv is an environment as the server creates it.
func benchEnv(projectID string, i int) apiv1.Environment {
	now := time.Now().UTC()
	return apiv1.Environment{
		ID: "env_" + uuid.Must(uuid.NewV7()).String(), ProjectID: projectID, Name: fmt.Sprintf("env-%d", i),
		Description: "benchmark environment",
		Labels:      map[string]string{"team": fmt.Sprintf("team-%d", i%10), "tier": []string{"dev", "prod"}[i%2]},
		Resources:   apiv1.Resources{CPUMillis: apiv1.DefaultCPUMillis, MemoryMB: apiv1.DefaultMemoryMB, DiskGB: apiv1.DefaultDiskGB},
		State:       apiv1.StatePending, Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: `"1"`,
		Enforcement: apiv1.Enforcement{Driver: "simulate", Generation: 1},
	}
}

func benchStore(b *testing.B) (*store.SQLite, apiv1.Project) {
	b.Helper()
	s, err := store.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	p := apiv1.Project{ID: "prj_" + uuid.Must(uuid.NewV7()).String(), Name: "bench", CreatedAt: time.Now()}
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.CreateProject(context.Background(), p) }); err != nil {
		b.Fatal(err)
	}
	return s, p
}

// runClients calls op b.N times in total from clients goroutines.
func runClients(b *testing.B, clients int, op func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				op(int(i))
			}
		}()
	}
	wg.Wait()
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkCreateEnvironmentWithAudit is the durable create path: each
// create is its own Update that checks the project, inserts the
// environment and appends its audit event, and returns after the fsync.
// clients is the number of concurrent callers, as HTTP requests would be.
func BenchmarkCreateEnvironmentWithAudit(b *testing.B) {
	for _, clients := range []int{1, 4, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			s, p := benchStore(b)
			ctx := context.Background()
			b.ResetTimer()
			runClients(b, clients, func(i int) {
				if err := createWithAudit(ctx, s, p, i); err != nil {
					b.Error(err)
				}
			})
			reportRate(b, "creates/s")
		})
	}
}

// createWithAudit is the durable create of a server: one Update that
// checks the project, inserts the environment and appends its audit event.
func createWithAudit(ctx context.Context, s store.Store, p apiv1.Project, i int) error {
	e := benchEnv(p.ID, i)
	return s.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetProject(ctx, p.ID); err != nil {
			return err
		}
		if err := tx.CreateEnvironment(ctx, e); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, apiv1.AuditEvent{
			ID: "evt_" + uuid.Must(uuid.NewV7()).String(), Time: time.Now(), RequestID: "req_" + e.ID,
			Actor:  apiv1.Actor{TokenID: "tok_admin", Name: "admin"},
			Source: apiv1.Source{IP: "127.0.0.1", UserAgent: "bench"}, ProjectID: p.ID, Action: "environment.create",
			Resource: apiv1.ResourceRef{Type: "environment", ID: e.ID}, Outcome: apiv1.OutcomeSuccess,
			StatusCode: 202, Changes: &apiv1.Changes{After: e},
		})
		return err
	})
}

// BenchmarkSQLiteUpdate is BenchmarkPostgresUpdate's baseline: the same
// durable create on SQLite (group commit), alone and with 8 callers.
func BenchmarkSQLiteUpdate(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			s, p := benchStore(b)
			b.ResetTimer()
			runClients(b, clients, func(i int) {
				if err := createWithAudit(context.Background(), s, p, i); err != nil {
					b.Error(err)
				}
			})
			reportRate(b, "creates/s")
		})
	}
}

// BenchmarkRawInsert is the ceiling for durable creates without group
// commit: one INSERT of a row the size of an environment per transaction,
// with the store's durability settings (WAL, synchronous=FULL).
func BenchmarkRawInsert(b *testing.B) {
	db, err := sql.Open("sqlite", filepath.Join(b.TempDir(), "raw.db")+
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE t (id TEXT PRIMARY KEY, data BLOB NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	data, _ := json.Marshal(benchEnv("prj_x", 0))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec("INSERT INTO t (id, data) VALUES (?, ?)", fmt.Sprint(i), data); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "inserts/s")
}

// BenchmarkListEnvironmentsPage10k lists a page of 100 out of 10,000
// environments (10 teams, 2 tiers, 2 projects), with and without filters.
func BenchmarkListEnvironmentsPage10k(b *testing.B) {
	s, p := benchStore(b)
	ctx := context.Background()
	other := apiv1.Project{ID: "prj_" + uuid.Must(uuid.NewV7()).String(), Name: "other", CreatedAt: time.Now()}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, other) }); err != nil {
		b.Fatal(err)
	}
	var mid string
	for batch := range 10 {
		err := s.Update(ctx, func(tx store.Tx) error {
			for i := batch * 1000; i < (batch+1)*1000; i++ {
				e := benchEnv([]string{p.ID, other.ID}[i%2], i)
				if i == 5000 {
					mid = e.ID
				}
				if err := tx.CreateEnvironment(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		q    store.ListQuery
	}{
		{"first page", store.ListQuery{}},
		{"middle page", store.ListQuery{Cursor: mid}},
		{"label team=team-3", store.ListQuery{Labels: map[string]string{"team": "team-3"}}},
		{"labels team=team-3,tier=prod, middle", store.ListQuery{Labels: map[string]string{"team": "team-3", "tier": "prod"}, Cursor: mid}},
		{"label tier=prod (half), middle", store.ListQuery{Labels: map[string]string{"tier": "prod"}, Cursor: mid}},
		{"project and label", store.ListQuery{ProjectID: p.ID, Labels: map[string]string{"team": "team-4"}}},
		{"state", store.ListQuery{State: apiv1.StatePending, Cursor: mid}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q := tc.q
			q.Limit = 100
			for i := 0; i < b.N; i++ {
				items, _, err := s.ListEnvironments(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				if len(items) == 0 {
					b.Fatal("empty page")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/page")
		})
	}
}
