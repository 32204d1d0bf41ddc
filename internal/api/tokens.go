package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// SecretNote is what an Idempotency-Key replay of a token creation says in
// place of the secret, which the server never stores.
const SecretNote = "the secret is shown only once, in the answer to the first request with this Idempotency-Key, and is not stored; if that answer was lost, revoke this token (DELETE /v1/tokens/{id}) and create another"

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.TokenCreate
	if err := decode(r, &in); err != nil {
		return expiresAtError(err)
	}
	fe := in.Validate()
	now := a.now().UTC()
	if in.ExpiresAt != nil && !in.ExpiresAt.After(now) {
		fe = append(fe, apiv1.FieldError{Field: "expires_at", Message: "must be in the future"})
	}
	if fe != nil {
		return problem.Invalid(fe)
	}
	secret, err := auth.NewSecret()
	if err != nil {
		return err
	}
	t := apiv1.Token{
		ID: control.NewID("tok_"), Name: in.Name, Role: in.Role, ProjectID: in.ProjectID,
		CreatedAt: now, ETag: etag(1),
	}
	if in.ExpiresAt != nil {
		exp := in.ExpiresAt.UTC()
		t.ExpiresAt = &exp
	}
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		if t.ProjectID != "" {
			if err := projectExists(ctx, tx, t.ProjectID); err != nil {
				return nil, err
			}
		}
		if err := tx.CreateToken(ctx, store.TokenRecord{Token: t, Hash: auth.HashSecret(secret)}); err != nil {
			return nil, err
		}
		return &mutation{
			status: http.StatusCreated, body: apiv1.TokenCreated{Token: t, Secret: secret}, generation: 1, location: "/v1/tokens/" + t.ID,
			replay: apiv1.TokenCreated{Token: t, Note: SecretNote},
			action: "token.create", resource: ref("token", t.ID), projectID: t.ProjectID, after: t,
		}, nil
	})
}

// expiresAtError names expires_at when decoding failed on a time: JSON
// does not say which field a time.Time's own decoding failed in, and
// expires_at is the only time this body has.
func expiresAtError(err error) error {
	if e, ok := problem.As(err); ok && e.Kind == problem.Malformed && e.Fields == nil &&
		(strings.Contains(e.Detail, "Time.UnmarshalJSON") || strings.Contains(e.Detail, "parsing time")) {
		return problem.Field(problem.Malformed, "expires_at", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
	}
	return err
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	lq, _, err := parseList(r, "limit", "cursor", "project_id")
	if err != nil {
		return err
	}
	if err := a.scopeList(r, &lq); err != nil {
		return err
	}
	recs, next, err := a.store.ListTokens(r.Context(), lq)
	if err != nil {
		return err
	}
	// Revoked tokens stay in the store (their hash keeps refusing the
	// secret) but are gone from the API, so a page may come out short.
	items := make([]apiv1.Token, 0, len(recs))
	for _, t := range recs {
		if t.RevokedAt == nil {
			items = append(items, t.Token)
		}
	}
	writeList(w, items, next)
	return nil
}

func (a *API) getToken(w http.ResponseWriter, r *http.Request) error {
	t := targetToken(r)
	writeObject(w, http.StatusOK, t, 1)
	return nil
}

// deleteToken revokes a token. The record stays, marked revoked, so the
// audit trail's actor ids keep meaning something; the cache forgets it
// before the answer is sent, so the very next request with it is refused.
func (a *API) deleteToken(w http.ResponseWriter, r *http.Request) error {
	id := idFromPath(r)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		cur, err := tx.GetToken(ctx, id)
		if err == nil && cur.RevokedAt != nil {
			err = store.ErrNotFound
		}
		if err := writable(r, err, "token", id, 1); err != nil {
			return nil, err
		}
		now := a.now().UTC()
		next := cur
		next.RevokedAt = &now
		if err := tx.UpdateToken(ctx, next); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, problem.NoSuch("token", id)
			}
			return nil, err
		}
		return &mutation{
			status: http.StatusNoContent,
			action: "token.revoke", resource: ref("token", id), projectID: cur.ProjectID, before: cur.Token,
			committed: func() { a.tokens.invalidate(id) },
		}, nil
	})
}
