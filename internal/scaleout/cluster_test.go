package scaleout

import (
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/replicatest"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
)

// startCluster starts n replicas on a fresh database of the test's
// PostgreSQL; without one the test skips, saying why.
func startCluster(t *testing.T, n int) *replicatest.Cluster {
	t.Helper()
	return replicatest.Start(t, replicatest.Options{Replicas: n, Store: pgtest.DSN(t)})
}
