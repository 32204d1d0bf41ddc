package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// IdempotencyTTL is how long a stored response is replayed.
const IdempotencyTTL = 24 * time.Hour

// answer is how a handler answers the result of a change.
type answer struct {
	body       any    // nil: no body (204)
	generation int64  // for the ETag header; 0: none
	etag       string // an ETag that is not a generation's (an image's digest)
	location   string
	// resourceID is the object changed, recorded with an idempotent
	// request's answer (GET /v1/idempotency-keys/{key} names it).
	resourceID string
	// replay, when set, is what an Idempotency-Key replay answers instead
	// of body: a new token's secret must not be stored with the key.
	replay any
}

// commit asks the application layer for a change on the request's behalf
// and answers its result with status and what shape makes of it. An
// idempotent request's answer is stored in the change's own transaction
// (control.Call.Within), so the change and its replay commit together or
// not at all. change's error rolls everything back and becomes the answer.
func commit[T any](a *API, w http.ResponseWriter, r *http.Request, status int, change func(control.Call) (T, error), shape func(T) answer) error {
	info := requestInfoFrom(r.Context())
	var (
		header map[string]string
		body   []byte
	)
	c := a.call(r, status)
	c.Within = func(ctx context.Context, tx store.Tx, result any) error {
		ans := shape(result.(T))
		var err error
		if body, err = encode(ans.body); err != nil {
			return err
		}
		header = ans.header()
		if info.idem == nil {
			return nil
		}
		stored := body
		if ans.replay != nil {
			if stored, err = encode(ans.replay); err != nil {
				return err
			}
		}
		now := a.now().UTC()
		return tx.PutIdempotency(ctx, store.IdempotencyRecord{
			Scope: info.principal.TokenID, Key: info.idem.key, Method: r.Method, Path: r.URL.Path,
			BodyHash: info.idem.bodyHash, StatusCode: status, Header: header, Body: stored,
			ResourceID: ans.resourceID, CreatedAt: now, ExpiresAt: now.Add(IdempotencyTTL),
		})
	}
	if _, err := change(c); err != nil {
		// Another replica may have committed the same key while this one
		// ran the change (the in-flight mark is per process): its change
		// stopped at a conflict, the name or the key's record, and the
		// request answers as the winner did, or 422 for another body.
		if info.idem != nil {
			if replayed, rerr := a.replay(w, r, info.principal.TokenID, info.idem); replayed || rerr != nil {
				return rerr
			}
		}
		return err
	}
	writeStored(w, status, header, body)
	return nil
}

// call is who asks for the request's change, as the application layer
// and its audit event see it; an unauthenticated caller is anonymous.
func (a *API) call(r *http.Request, status int) control.Call {
	info := requestInfoFrom(r.Context())
	c := control.Call{RequestID: info.requestID, Source: info.source, IfMatch: r.Header.Get("If-Match"), Status: status}
	if info.principal != nil {
		c.Actor = info.principal.Actor()
	}
	return c
}

// encode is v as a response body: JSON and a newline; nil for no body.
func encode(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (ans answer) header() map[string]string {
	h := map[string]string{}
	if ans.body != nil {
		h["Content-Type"] = apiv1.MediaJSON
	}
	if ans.generation > 0 {
		h["ETag"] = apiv1.ETag(ans.generation)
	}
	if ans.etag != "" {
		h["ETag"] = ans.etag
	}
	if ans.location != "" {
		h["Location"] = ans.location
	}
	return h
}

func writeStored(w http.ResponseWriter, status int, header map[string]string, body []byte) {
	for k, v := range header {
		w.Header().Set(k, v)
	}
	if body != nil {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if body != nil {
		_, _ = w.Write(body)
	}
}
