package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// diskStore (what only a store on a local disk can do) is a store on this machine's disk (store.SQLite): it holds
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
func openStore(ctx context.Context, loc store.Location) (store.Backend, error) {
	return store.Open(ctx, loc)
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
