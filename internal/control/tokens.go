package control

import (
	"context"
	"time"

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
		ID: NewID("tok_"), Name: in.Name, Role: in.Role, ProjectID: in.ProjectID, Developer: in.Developer,
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
		return createToken(ctx, tx, t, secret)
	})
}

// createToken stores t, only its secret's hash, and is the change that
// answers it with its secret: every kind of token is made here.
func createToken(ctx context.Context, tx store.Tx, t apiv1.Token, secret string) (change[apiv1.TokenCreated], error) {
	if err := tx.CreateToken(ctx, store.TokenRecord{Token: t, Hash: auth.HashSecret(secret)}); err != nil {
		return change[apiv1.TokenCreated]{}, err
	}
	return change[apiv1.TokenCreated]{
		result: apiv1.TokenCreated{Token: t, Secret: secret},
		action: "token.create", resource: ref("token", t.ID), projectID: t.ProjectID, after: t,
	}, nil
}

// RevokeToken revokes a token, and with it the session tokens it minted.
// The record stays, marked revoked, so the audit trail's actor ids keep
// meaning something; a revoked token is gone as far as callers are
// concerned.
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
		return s.revokeToken(ctx, tx, c, cur)
	})
}

// revokeToken revokes cur, found unrevoked in tx, and the session tokens
// it minted, and returns the change to audit.
func (s *Service) revokeToken(ctx context.Context, tx store.Tx, c Call, cur store.TokenRecord) (change[apiv1.Token], error) {
	now := s.now()
	next := cur
	next.RevokedAt = &now
	if err := tx.UpdateToken(ctx, next); err != nil {
		return change[apiv1.Token]{}, notFoundOr(err, "token", cur.ID)
	}
	if err := s.revokeSessionTokens(ctx, tx, c, store.ListQuery{ParentID: cur.ID}, "the token that minted it, "+cur.ID+", was revoked"); err != nil {
		return change[apiv1.Token]{}, err
	}
	return change[apiv1.Token]{
		result: cur.Token, action: "token.revoke", resource: ref("token", cur.ID), projectID: cur.ProjectID, before: cur.Token,
	}, nil
}

// revokeSessionTokens revokes in tx the session tokens q selects, each
// with an audit event of its own saying why: the token that minted it
// was revoked, or its environment is going away.
func (s *Service) revokeSessionTokens(ctx context.Context, tx store.Tx, c Call, q store.ListQuery, reason string) error {
	revoked, err := revokeTokens(ctx, tx, q, s.now())
	for _, t := range revoked {
		if err != nil {
			break
		}
		ev := s.Event(c, "token.revoke", ref("token", t.ID), t.ProjectID, apiv1.OutcomeSuccess)
		ev.Reason = reason
		ev.Changes = &apiv1.Changes{Before: t.Token}
		_, err = tx.AppendAudit(ctx, ev)
	}
	return err
}

// revokeTokens revokes in tx every token q selects that is not revoked
// yet, and returns them as they were. Every page: none may stay valid
// because it sorts after the first thousand.
func revokeTokens(ctx context.Context, tx store.Tx, q store.ListQuery, now time.Time) ([]store.TokenRecord, error) {
	var revoked []store.TokenRecord
	q.Limit = store.MaxLimit
	for {
		page, next, err := tx.ListTokens(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, t := range page {
			if t.RevokedAt != nil {
				continue
			}
			revoked = append(revoked, t)
			t.RevokedAt = &now
			if err := tx.UpdateToken(ctx, t); err != nil {
				return nil, err
			}
		}
		if next == "" {
			return revoked, nil
		}
		q.Cursor = next
	}
}
