package server

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
)

// BenchmarkAuthenticatedGET measures what reading the token on every
// request (a shared store: a revocation on another replica holds at
// once) costs beside the cached path of a single node: GET /v1/whoami on
// SQLite (token cached), on PostgreSQL (the token's row read each time),
// and GET /healthz on PostgreSQL (no token, no store read), the floor.
func BenchmarkAuthenticatedGET(b *testing.B) {
	for _, bc := range []struct {
		name, store, path string
	}{
		{"sqlite-cached", "sqlite", "/v1/whoami"},
		{"postgres-read-each-request", "postgres", "/v1/whoami"},
		{"postgres-healthz-floor", "postgres", "/healthz"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			loc := bc.store
			if loc == "postgres" {
				loc = pgtest.DSN(b)
			}
			s, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: b.TempDir(), Store: loc, BootstrapToken: replicaSecret})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = s.Shutdown(context.Background()) }()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			req, _ := http.NewRequest("GET", s.URL()+bc.path, nil)
			req.Header.Set("Authorization", "Bearer "+replicaSecret)
			b.ResetTimer()
			for b.Loop() {
				res, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("GET %s: %d", bc.path, res.StatusCode)
				}
			}
		})
	}
}
