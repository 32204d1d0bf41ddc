package control

import (
	"context"
	"errors"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// RecordFlows stores a batch of flow records in one transaction, each
// with its environment's project (which scopes who may read it), and
// returns them with their ids. A record of an environment that is gone
// keeps an empty project: organization-wide tokens still see it. Flow
// records are not audit events: they change nothing, and a flood would
// bury the trail.
func (s *Service) RecordFlows(ctx context.Context, flows []apiv1.Flow) ([]apiv1.Flow, error) {
	projects := map[string]string{}
	for i := range flows {
		f := &flows[i]
		p, ok := projects[f.EnvironmentID]
		if !ok {
			e, err := s.store.GetEnvironment(ctx, f.EnvironmentID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			p = e.ProjectID
			projects[f.EnvironmentID] = p
		}
		f.ProjectID = p
	}
	err := s.store.Update(ctx, func(tx store.Tx) error { return tx.AppendFlows(ctx, flows) })
	return flows, err
}

// PruneFlows deletes the flow records older than maxAge (0: no bound),
// then the oldest beyond the newest maxRecords (0: no bound), and says
// how many went.
func (s *Service) PruneFlows(ctx context.Context, maxAge time.Duration, maxRecords int) (int, error) {
	var before time.Time
	if maxAge > 0 {
		before = s.clock.Now().Add(-maxAge)
	}
	var n int
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.PruneFlows(ctx, before, maxRecords)
		return err
	})
	return n, err
}
