package client

import (
	"context"
	"net/http"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// IdempotencyKeys is the /v1/idempotency-keys API: what became of the
// caller's own writes, by the Idempotency-Key they carried.
type IdempotencyKeys struct{ c *Client }

// IdempotencyKeys returns the idempotency keys API.
func (c *Client) IdempotencyKeys() *IdempotencyKeys { return &IdempotencyKeys{c} }

// Get asks whether the write that carried key was committed. IsNotFound(err)
// means it was not (or its record expired): the write did nothing.
func (k *IdempotencyKeys) Get(ctx context.Context, key string) (*apiv1.IdempotencyKey, error) {
	return call[apiv1.IdempotencyKey](ctx, k.c, request{method: http.MethodGet, path: "/v1/idempotency-keys/" + escape(key)})
}

// WaitSettled is Get until the write is no longer in progress: it returns
// the committed record, or IsNotFound(err) when the write did nothing.
// While the first request runs it asks again after a short capped
// backoff; ctx's deadline bounds the wait.
func (k *IdempotencyKeys) WaitSettled(ctx context.Context, key string) (*apiv1.IdempotencyKey, error) {
	for attempt := 0; ; attempt++ {
		rec, err := k.Get(ctx, key)
		if err != nil || rec.State != apiv1.IdempotencyInProgress {
			return rec, err
		}
		timer := time.NewTimer(backoff(k.c.waitMin, k.c.waitMax, attempt, nil, k.c.jitter))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return rec, ctx.Err()
		}
	}
}
