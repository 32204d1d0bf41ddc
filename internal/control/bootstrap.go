package control

import (
	"context"
	"errors"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// BootstrapToken makes the secret whose SHA-256 is hash an admin token
// named name, in one transaction: nothing when a token has that hash
// already, else every earlier unrevoked token of that name is revoked
// (with the session tokens it minted) and the new one created, each audited under ServerActor with a request id
// of its own ("srv_"). It reports whether it created the token.
func (s *Service) BootstrapToken(ctx context.Context, hash, name string) (created bool, err error) {
	err = s.store.Update(ctx, func(tx store.Tx) error {
		created = false
		if _, err := tx.GetTokenByHash(ctx, hash); err == nil {
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		now := s.clock.Now().UTC()
		// Every page: a secret rotated away must not stay valid because
		// its token sorts after the first thousand.
		for q := (store.ListQuery{Limit: store.MaxLimit}); ; {
			tokens, next, err := tx.ListTokens(ctx, q)
			if err != nil {
				return err
			}
			for _, t := range tokens {
				// A session token goes with the token that minted it (and
				// bears its name).
				if t.Name != name || t.RevokedAt != nil || t.Role == apiv1.RoleSession {
					continue
				}
				t.RevokedAt = &now
				if err := tx.UpdateToken(ctx, t); err != nil {
					return err
				}
				if err := s.bootstrapEvent(ctx, tx, "token.revoke", t.Token, "the bootstrap secret changed"); err != nil {
					return err
				}
				c := Call{RequestID: NewID("srv_"), Actor: ServerActor}
				if err := s.revokeSessionTokens(ctx, tx, c, store.ListQuery{ParentID: t.ID}, "the token that minted it, "+t.ID+", was revoked: the bootstrap secret changed"); err != nil {
					return err
				}
			}
			if next == "" {
				break
			}
			q.Cursor = next
		}
		t := store.TokenRecord{
			Token: apiv1.Token{ID: NewID("tok_"), Name: name, Role: apiv1.RoleAdmin, CreatedAt: now, ETag: `"1"`},
			Hash:  hash,
		}
		if err := tx.CreateToken(ctx, t); err != nil {
			return err
		}
		created = true
		return s.bootstrapEvent(ctx, tx, "token.create", t.Token, "bootstrap admin token")
	})
	return created, err
}

// bootstrapEvent audits what BootstrapToken did to token t.
func (s *Service) bootstrapEvent(ctx context.Context, tx store.Tx, action string, t apiv1.Token, reason string) error {
	ev := s.Event(Call{RequestID: NewID("srv_"), Actor: ServerActor}, action, apiv1.ResourceRef{Type: "token", ID: t.ID}, "", apiv1.OutcomeSuccess)
	ev.Reason = reason
	ev.Changes = &apiv1.Changes{After: t}
	_, err := tx.AppendAudit(ctx, ev)
	return err
}
