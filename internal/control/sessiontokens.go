package control

import (
	"context"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// CreateSessionToken mints a session token for environment envID from
// the caller's token (c.Actor): role session, scoped to that environment,
// expiring after in's ttl or with the caller's token, whichever comes
// first. Like CreateToken's, the result holds the secret this once.
func (s *Service) CreateSessionToken(ctx context.Context, c Call, envID string, in apiv1.SessionTokenCreate) (apiv1.TokenCreated, error) {
	if fe := in.Validate(); fe != nil {
		return apiv1.TokenCreated{}, problem.Invalid(fe)
	}
	secret, err := auth.NewSecret()
	if err != nil {
		return apiv1.TokenCreated{}, err
	}
	now := s.now()
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.TokenCreated], error) {
		env, err := tx.GetEnvironment(ctx, envID)
		if err != nil {
			return change[apiv1.TokenCreated]{}, notFoundOr(err, "environment", envID)
		}
		if apiv1.StateIsLeaving(env.State) {
			// Its session tokens were revoked as it started to leave.
			return change[apiv1.TokenCreated]{}, problem.New(problem.State, "environment %s is %s: it takes no session tokens", envID, env.State)
		}
		parent, err := tx.GetToken(ctx, c.Actor.TokenID)
		if err != nil || parent.RevokedAt != nil {
			return change[apiv1.TokenCreated]{}, problem.New(problem.Unauthorized, "the token minting the session token is unknown or revoked")
		}
		if parent.Role == apiv1.RoleSession {
			// The authorize step refuses it already; a session token must
			// never outlive its one parent's revocation by having another.
			return change[apiv1.TokenCreated]{}, problem.New(problem.Forbidden, "a session token cannot mint session tokens")
		}
		exp := now.Add(in.Duration())
		if parent.ExpiresAt != nil && parent.ExpiresAt.Before(exp) {
			exp = parent.ExpiresAt.UTC()
		}
		t := apiv1.Token{
			ID: NewID("tok_"), Name: parent.Name, Role: apiv1.RoleSession, ProjectID: env.ProjectID,
			EnvironmentID: env.ID, ParentID: parent.ID, ExpiresAt: &exp, CreatedAt: now, ETag: apiv1.ETag(1),
		}
		return createToken(ctx, tx, t, secret)
	})
}

// RevokeSessionToken revokes session token tokenID of environment envID:
// a token that is not a session token of that environment, or is revoked
// already, is not found.
func (s *Service) RevokeSessionToken(ctx context.Context, c Call, envID, tokenID string) (apiv1.Token, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Token], error) {
		cur, err := tx.GetToken(ctx, tokenID)
		if err == nil && (cur.RevokedAt != nil || cur.Role != apiv1.RoleSession || cur.EnvironmentID != envID) {
			err = store.ErrNotFound
		}
		if err := writable(c, err, "session token", tokenID, 1); err != nil {
			return change[apiv1.Token]{}, err
		}
		return s.revokeToken(ctx, tx, c, cur)
	})
}

// revokeEnvironmentSessions revokes the session tokens of environment
// env, which is leaving (deleting or expired): exec there is over.
func (s *Service) revokeEnvironmentSessions(ctx context.Context, tx store.Tx, c Call, env apiv1.Environment) error {
	return s.revokeSessionTokens(ctx, tx, c, store.ListQuery{EnvironmentID: env.ID}, "its environment "+env.ID+" is "+env.State)
}
