package control

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// ExpiredEnvironment is what the server still knows of an environment
// its TTL removed: enough to authorize a question about it and to say
// why it is gone.
type ExpiredEnvironment struct {
	ID, ProjectID string
	ExpiredAt     time.Time
	TTLSeconds    int64
}

// Expired finds why environment id, which the store no longer holds, is
// gone: ok when its TTL removed it. The audit trail is the record (the
// environment.expire event, with the environment as it was), so nothing
// is kept for it beyond what every change keeps already; an id that was
// deleted, or never existed, is not ok.
func Expired(ctx context.Context, r store.Reader, id string) (x ExpiredEnvironment, ok bool, err error) {
	evs, _, err := r.ListAudit(ctx, store.AuditQuery{ResourceType: "environment", ResourceID: id,
		Action: "environment.expire", Outcome: apiv1.OutcomeSuccess, Limit: 1})
	if err != nil || len(evs) == 0 || evs[0].Changes == nil {
		return x, false, err
	}
	// The stored changes come back as JSON, whatever type wrote them.
	raw, err := json.Marshal(evs[0].Changes.Before)
	if err != nil {
		return x, false, err
	}
	var before apiv1.Environment
	if err := json.Unmarshal(raw, &before); err != nil {
		return x, false, fmt.Errorf("decode the expired environment %s: %w", id, err)
	}
	x = ExpiredEnvironment{ID: id, ProjectID: evs[0].ProjectID, ExpiredAt: evs[0].Time}
	if before.ExpiresAt != nil {
		x.ExpiredAt = before.ExpiresAt.UTC()
	}
	if before.TTLSeconds != nil {
		x.TTLSeconds = *before.TTLSeconds
	}
	return x, true, nil
}

// Problem is the answer to a request about the expired environment: 410,
// saying when it expired and its ttl_seconds, in the detail and as
// members of their own.
func (x ExpiredEnvironment) Problem() *problem.Error {
	at, ttl := x.ExpiredAt, x.TTLSeconds
	e := problem.New(problem.Gone, "environment %q expired at %s (ttl_seconds %d) and was torn down",
		x.ID, at.Format(time.RFC3339), ttl)
	e.ExpiredAt, e.TTLSeconds = &at, &ttl
	return e
}

// Missing is the answer about environment id once the store no longer
// holds it: its expiry (Problem) when its TTL removed it, else 404.
func Missing(ctx context.Context, r store.Reader, id string) error {
	x, ok, err := Expired(ctx, r, id)
	if err != nil {
		return err
	}
	if ok {
		return x.Problem()
	}
	return problem.NoSuch("environment", id)
}
