package siem

import (
	"context"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Flow verdicts.
const (
	VerdictAllowed = apiv1.VerdictAllowed
	VerdictDenied  = apiv1.VerdictDenied
)

// Flow is one flow record as the API shows it (GET /v1/flows). ID grows
// with every record stored: it is the flows source's position.
type Flow = apiv1.Flow

// FlowLog is what the flows source reads: the stored flow records by id,
// oldest first. The store's flow records satisfy it through a small
// adapter in internal/server (storeFlowLog).
type FlowLog interface {
	// FlowsAfter returns up to limit records whose id is greater than
	// after, by id.
	FlowsAfter(ctx context.Context, after int64, limit int) ([]Flow, error)
	// LastFlowID is the id of the newest record, 0 when there is none.
	LastFlowID(ctx context.Context) (int64, error)
}

// FlowSource is the flow records as a Source: their ids are positions,
// so pruned records show as a gap before the oldest left.
type FlowSource struct{ Log FlowLog }

func (FlowSource) Name() string { return SourceFlows }

func (f FlowSource) Read(ctx context.Context, after int64, limit int) ([]Record, error) {
	flows, err := f.Log.FlowsAfter(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	recs := make([]Record, len(flows))
	for i := range flows {
		recs[i] = Record{Source: SourceFlows, Pos: flows[i].ID, Flow: &flows[i]}
	}
	return recs, nil
}

func (f FlowSource) Head(ctx context.Context) (int64, error) { return f.Log.LastFlowID(ctx) }
