package siem

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Source names: the cursor of a sink is kept per source.
const (
	SourceAudit = "audit"
	SourceFlows = "flows"
)

// Record is one thing a sink is sent, at its position in its source: an
// audit event (position its seq) or a flow record (its id). One of Audit
// and Flow is set.
type Record struct {
	Source string
	Pos    int64
	Audit  *apiv1.AuditEvent
	Flow   *Flow
	// memo is shared by the copies sinks read from the tail.
	memo *memo
}

// UID is what a receiver drops duplicates by: the audit event's id, or
// "flow-" and the flow record's id.
func (r Record) UID() string {
	if r.Flow != nil {
		return "flow-" + strconv.FormatInt(r.Flow.ID, 10)
	}
	return r.Audit.ID
}

// denied reports whether r is a refusal: an audit event of outcome
// denied, or a denied flow.
func (r Record) denied() bool {
	if r.Flow != nil {
		return r.Flow.Verdict == VerdictDenied
	}
	return r.Audit != nil && r.Audit.Outcome == apiv1.OutcomeDenied
}

// Source is a stream of records in position order, positions growing.
// A source may lose its oldest records (flows are pruned): Read then
// starts after a gap, which the delivery loop reports.
type Source interface {
	Name() string
	// Read returns up to limit records after position after, oldest first.
	Read(ctx context.Context, after int64, limit int) ([]Record, error)
	// Head is the newest position, 0 when the source is empty.
	Head(ctx context.Context) (int64, error)
}

// AuditSource is the audit chain of a store.
type AuditSource struct{ Store store.Reader }

func (AuditSource) Name() string { return SourceAudit }

func (a AuditSource) Read(ctx context.Context, after int64, limit int) ([]Record, error) {
	events, _, err := a.Store.ListAudit(ctx, store.AuditQuery{AfterSeq: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	recs := make([]Record, len(events))
	for i := range events {
		recs[i] = Record{Source: SourceAudit, Pos: events[i].Seq, Audit: &events[i]}
	}
	return recs, nil
}

func (a AuditSource) Head(ctx context.Context) (int64, error) {
	last, err := a.Store.LastAudit(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return last.Seq, err
}

// json is r as the json format shows it: the event or record as the API
// does.
func (r Record) json() ([]byte, error) {
	if r.Flow != nil {
		return json.Marshal(r.Flow)
	}
	return json.Marshal(r.Audit)
}
