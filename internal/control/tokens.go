package control

import (
	"context"
	"errors"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// CreateToken issues a token. The result holds its secret, which is not
// stored (only its hash is): this is the one time anyone sees it.
func (s *Service) CreateToken(ctx context.Context, c Call, in apiv1.TokenCreate) (apiv1.TokenCreated, error) {
	fe := in.Validate()
	now := s.now()
	if in.ExpiresAt != nil && !in.ExpiresAt.After(now) {
		fe = append(fe, apiv1.FieldError{Field: "expires_at", Message: "must be in the future"})
	}
	if fe != nil {
		return apiv1.TokenCreated{}, problem.Invalid(fe)
	}
	secret, err := auth.NewSecret()
	if err != nil {
		return apiv1.TokenCreated{}, err
	}
	t := apiv1.Token{
		ID: NewID("tok_"), Name: in.Name, Role: in.Role, ProjectID: in.ProjectID,
		CreatedAt: now, ETag: apiv1.ETag(1),
	}
	if in.ExpiresAt != nil {
		exp := in.ExpiresAt.UTC()
		t.ExpiresAt = &exp
	}
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.TokenCreated], error) {
		if t.ProjectID != "" {
			if err := projectExists(ctx, tx, t.ProjectID); err != nil {
				return change[apiv1.TokenCreated]{}, err
			}
		}
		if err := tx.CreateToken(ctx, store.TokenRecord{Token: t, Hash: auth.HashSecret(secret)}); err != nil {
			return change[apiv1.TokenCreated]{}, err
		}
		return change[apiv1.TokenCreated]{
			result: apiv1.TokenCreated{Token: t, Secret: secret},
			action: "token.create", resource: ref("token", t.ID), projectID: t.ProjectID, after: t,
		}, nil
	})
}

// RevokeToken revokes a token. The record stays, marked revoked, so the
// audit trail's actor ids keep meaning something; a revoked token is gone
// as far as callers are concerned.
func (s *Service) RevokeToken(ctx context.Context, c Call, id string) (apiv1.Token, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Token], error) {
		cur, err := tx.GetToken(ctx, id)
		if err == nil && cur.RevokedAt != nil {
			err = store.ErrNotFound
		}
		// A token has no generations: its ETag is always the first.
		if err := writable(c, err, "token", id, 1); err != nil {
			return change[apiv1.Token]{}, err
		}
		now := s.now()
		next := cur
		next.RevokedAt = &now
		if err := tx.UpdateToken(ctx, next); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return change[apiv1.Token]{}, problem.NoSuch("token", id)
			}
			return change[apiv1.Token]{}, err
		}
		return change[apiv1.Token]{
			result: cur.Token, action: "token.revoke", resource: ref("token", id), projectID: cur.ProjectID, before: cur.Token,
		}, nil
	})
}
