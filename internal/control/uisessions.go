package control

import (
	"context"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// UISessionTTL is how long a web console session lasts at most: a
// working day, so that a forgotten browser does not stay signed in.
const UISessionTTL = 12 * time.Hour

// UISessionCreated is a new console session and its secret, which goes
// into the cookie and nowhere else: only its hash is stored.
type UISessionCreated struct {
	Session apiv1.UISession
	Secret  string
}

// SignIn opens a web console session for the caller's token (c.Actor),
// which must be valid: the session expires after UISessionTTL or with
// the token, whichever is first, and ends when the token is revoked.
func (s *Service) SignIn(ctx context.Context, c Call) (UISessionCreated, error) {
	secret, err := auth.NewSecret()
	if err != nil {
		return UISessionCreated{}, err
	}
	now := s.now()
	return mutate(ctx, s, c, func(tx store.Tx) (change[UISessionCreated], error) {
		tok, err := tx.GetToken(ctx, c.Actor.TokenID)
		if err != nil || tok.RevokedAt != nil {
			return change[UISessionCreated]{}, problem.New(problem.Unauthorized, "the token signing in is unknown or revoked")
		}
		exp := now.Add(UISessionTTL)
		if tok.ExpiresAt != nil && tok.ExpiresAt.Before(exp) {
			exp = tok.ExpiresAt.UTC()
		}
		rec := store.UISession{ID: NewID("uis_"), TokenID: tok.ID, Hash: auth.HashSecret(secret), CreatedAt: now, ExpiresAt: exp}
		if err := tx.CreateUISession(ctx, rec); err != nil {
			return change[UISessionCreated]{}, err
		}
		view := uiSessionView(rec)
		return change[UISessionCreated]{
			result: UISessionCreated{Session: view, Secret: secret},
			action: "ui.sign_in", resource: ref("ui_session", rec.ID), projectID: tok.ProjectID, after: view,
		}, nil
	})
}

// SignOut revokes console session id, which must be the caller's own
// (signed in with c.Actor's token) and not revoked yet: from the next
// request on its cookie is refused with 401.
func (s *Service) SignOut(ctx context.Context, c Call, id string) (apiv1.UISession, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.UISession], error) {
		cur, err := tx.GetUISession(ctx, id)
		if err == nil && (cur.RevokedAt != nil || cur.TokenID != c.Actor.TokenID) {
			err = store.ErrNotFound
		}
		if err != nil {
			return change[apiv1.UISession]{}, notFoundOr(err, "console session", id)
		}
		tok, err := tx.GetToken(ctx, cur.TokenID)
		if err != nil {
			return change[apiv1.UISession]{}, err
		}
		now := s.now()
		cur.RevokedAt = &now
		if err := tx.UpdateUISession(ctx, cur); err != nil {
			return change[apiv1.UISession]{}, err
		}
		view := uiSessionView(cur)
		return change[apiv1.UISession]{
			result: view, action: "ui.sign_out", resource: ref("ui_session", cur.ID), projectID: tok.ProjectID, before: view,
		}, nil
	})
}

// uiSessionView is a stored session without its hash.
func uiSessionView(s store.UISession) apiv1.UISession {
	return apiv1.UISession{ID: s.ID, TokenID: s.TokenID, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt}
}
