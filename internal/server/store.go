package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// serverStore is what the server needs of a store beyond store.Store,
// which both SQLite and PostgreSQL give. What only a store on a local
// disk can do (the disk reserve) is asked through diskStore.
type serverStore interface {
	store.Store
	UseClock(clock clockwork.Clock)
	UseAuditKey(ctx context.Context, key *audit.Key) error
}

// diskStore is a store on this machine's disk (store.SQLite): it holds
// back a reserve of space and knows when its disk is full.
type diskStore interface {
	HoldReserve(size int64) error
	WriteErr() error
}

// storeLocation is where Config.Store says the store is, a SQLite file
// without a path being the one in the data directory.
func (cfg Config) storeLocation() (store.Location, error) {
	loc, err := store.ParseLocation(cfg.Store)
	if err != nil {
		return loc, fmt.Errorf("server: --store: %w", err)
	}
	if loc.Kind == store.KindSQLite && loc.Path == "" {
		loc.Path = filepath.Join(cfg.DataDir, DatabaseFile)
	}
	return loc, nil
}

// openStore opens the store loc names, migrated to this build's schema.
func openStore(ctx context.Context, loc store.Location) (serverStore, error) {
	switch loc.Kind {
	case store.KindSQLite:
		return store.OpenSQLite(ctx, loc.Path)
	case store.KindPostgres:
		return store.OpenPostgres(ctx, loc.DSN)
	}
	return nil, fmt.Errorf("unknown store kind %q", loc.Kind)
}

// useDisk holds the disk reserve of a store on this machine's disk, and
// warns when that disk is already full.
func (s *Server) useDisk() error {
	d, ok := s.store.(diskStore)
	if !ok {
		return nil
	}
	if err := d.HoldReserve(s.cfg.ReserveBytes); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := d.WriteErr(); err != nil {
		s.log.Warn("the data volume is full: serving reads, refusing changes (507) until space is freed", "error", err.Error())
	}
	return nil
}
