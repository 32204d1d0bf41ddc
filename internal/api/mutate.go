package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// IdempotencyTTL is how long a stored response is replayed.
const IdempotencyTTL = 24 * time.Hour

// mutation is what a write handler did, for commit to answer, audit and
// hand to the reconciler.
type mutation struct {
	status     int
	body       any   // nil: no body (204)
	generation int64 // for the ETag header; 0: none
	location   string

	action    string
	resource  apiv1.ResourceRef
	projectID string
	before    any
	after     any

	// reconcile lists environments to queue and wake waiters of.
	reconcile []string

	// replay, when set, is what an Idempotency-Key replay answers instead
	// of body: a new token's secret must not be stored with the key.
	replay any
	// committed runs after the commit and before the answer is written
	// (revocation drops the token from the cache there).
	committed func()
}

// commit runs fn in one store transaction together with the request's
// audit event and, for an idempotent request, the response to replay;
// only after the commit does it tell the reconciler, the sink and the
// client. fn's error rolls everything back and becomes the response.
func (a *API) commit(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, tx store.Tx) (*mutation, error)) error {
	ctx := r.Context()
	info := requestInfoFrom(ctx)
	var (
		m      *mutation
		body   []byte
		header map[string]string
		event  apiv1.AuditEvent
	)
	err := a.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if m, err = fn(ctx, tx); err != nil {
			return err
		}
		if m.body != nil {
			if body, err = json.Marshal(m.body); err != nil {
				return err
			}
			body = append(body, '\n')
		}
		header = responseHeader(m)
		stored := body
		if m.replay != nil {
			if stored, err = json.Marshal(m.replay); err != nil {
				return err
			}
			stored = append(stored, '\n')
		}
		ev := a.event(r, m.action, m.resource, m.projectID, apiv1.OutcomeSuccess, m.status)
		ev.Changes = &apiv1.Changes{Before: m.before, After: m.after}
		if event, err = tx.AppendAudit(ctx, ev); err != nil {
			return err
		}
		if info.idem == nil {
			return nil
		}
		now := a.now().UTC()
		return tx.PutIdempotency(ctx, store.IdempotencyRecord{
			Scope: info.principal.TokenID, Key: info.idem.key, Method: r.Method, Path: r.URL.Path,
			BodyHash: info.idem.bodyHash, StatusCode: m.status, Header: header, Body: stored,
			ResourceID: m.resource.ID, CreatedAt: now, ExpiresAt: now.Add(IdempotencyTTL),
		})
	})
	if err != nil {
		return err
	}
	if m.committed != nil {
		m.committed()
	}
	a.audited(event)
	if len(m.reconcile) > 0 {
		a.hub.Notify(m.reconcile...)
		a.reconciler.Enqueue(info.requestID, m.reconcile...)
	}
	writeStored(w, m.status, header, body)
	return nil
}

func responseHeader(m *mutation) map[string]string {
	h := map[string]string{}
	if m.body != nil {
		h["Content-Type"] = apiv1.MediaJSON
	}
	if m.generation > 0 {
		h["ETag"] = etag(m.generation)
	}
	if m.location != "" {
		h["Location"] = m.location
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

// event starts an audit event for the request.
func (a *API) event(r *http.Request, action string, res apiv1.ResourceRef, projectID, outcome string, status int) apiv1.AuditEvent {
	info := requestInfoFrom(r.Context())
	ev := apiv1.AuditEvent{
		ID:         control.NewID("evt_"),
		Time:       a.now().UTC(),
		RequestID:  info.requestID,
		Source:     info.source,
		ProjectID:  projectID,
		Action:     action,
		Resource:   res,
		Outcome:    outcome,
		StatusCode: status,
	}
	if info.principal != nil {
		ev.Actor = info.principal.Actor()
	} else {
		ev.Actor = apiv1.Actor{Name: "anonymous"}
	}
	return ev
}

// etag is the ETag of an object at a generation: strong and quoted.
func etag(generation int64) string { return `"` + strconv.FormatInt(generation, 10) + `"` }

// checkIfMatch answers 412 when If-Match is present and names no current
// ETag of the object ("*" matches any existing object).
func checkIfMatch(r *http.Request, generation int64) error {
	h := r.Header.Get("If-Match")
	if h == "" {
		return nil
	}
	cur := etag(generation)
	for part := range strings.SplitSeq(h, ",") {
		if p := strings.TrimSpace(part); p == "*" || p == cur {
			return nil
		}
	}
	return problem.New(problem.Precondition, "If-Match %s does not match the current ETag %s: the object was changed since you read it; read it again and retry", h, cur)
}

// writable is the check every PATCH and DELETE makes of the object it
// loaded inside its transaction: loadErr not found is a 404 naming it, and
// an If-Match naming another generation is a 412.
func writable(r *http.Request, loadErr error, kind, id string, generation int64) error {
	if loadErr != nil {
		return notFoundOr(loadErr, kind, id)
	}
	return checkIfMatch(r, generation)
}

// nextGeneration is what every change of an object's spec sets: the
// generation after gen, its ETag, and the time of the change.
func nextGeneration(gen int64, now time.Time) (int64, string, time.Time) {
	return gen + 1, etag(gen + 1), now
}

// setIfPresent applies a field of a PATCH body that is present.
func setIfPresent[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
