// Package controltest builds the application layer on a real SQLite store
// for the tests of control and of the packages that call it, so that each
// starts from the same store, address pool and project.
package controltest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/ipam"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Pool is the address pool Service gives environments their addresses
// from; its first address is 198.18.0.1.
const Pool = "198.18.0.0/24"

// Service is the application layer of driver on clock, over a SQLite
// store in the test's temporary directory that closes with the test.
func Service(t testing.TB, clock clockwork.Clock, driver string) (*store.SQLite, *control.Service) {
	t.Helper()
	return ServiceOf(t, control.Options{Clock: clock, Driver: driver})
}

// ServiceOf is Service with opts, whose Store and IPAM it provides.
func ServiceOf(t testing.TB, opts control.Options) (*store.SQLite, *control.Service) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "isolationd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	addrs, err := ipam.New(Pool, ipam.DefaultQuarantine)
	if err != nil {
		t.Fatal(err)
	}
	opts.Store, opts.IPAM = st, addrs
	return st, control.New(opts)
}

// Project writes a project named name into st directly, for a test that
// needs one but is not about creating it.
func Project(t testing.TB, st *store.SQLite, name string, now time.Time) apiv1.Project {
	t.Helper()
	p := apiv1.Project{ID: control.NewID("prj_"), Name: name, Labels: map[string]string{}, Generation: 1, ETag: `"1"`, CreatedAt: now, UpdatedAt: now}
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.CreateProject(context.Background(), p) }); err != nil {
		t.Fatal(err)
	}
	return p
}
