package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// authenticate finds the caller's token by the hash of its secret. Every
// failure is audited and answered 401 saying which it was (no token,
// unknown, revoked, expired). Only the holder of a token's secret can hash
// to it, so "revoked" and "expired" tell nothing to anyone else, and the
// answer never names a token (its id stays in the audit trail).
func (a *API) authenticate(r *http.Request) error {
	info := requestInfoFrom(r.Context())
	header := r.Header.Get("Authorization")
	secret, ok := auth.BearerToken(header)
	switch {
	case header == "" && sessionCookie(r) != "":
		return a.authenticateSession(r, sessionCookie(r))
	case header == "":
		return a.unauthenticated(r, "no bearer token", "no bearer token: send the header Authorization: Bearer TOKEN")
	case !ok:
		return a.unauthenticated(r, "malformed bearer token",
			"malformed Authorization header: want exactly \"Bearer TOKEN\", one space and the secret with nothing around it")
	}
	hash := auth.HashSecret(secret)
	rec, ok := a.tokens.get(hash)
	if !ok || a.sharedStore {
		// On a store other servers write, a revocation another replica
		// committed must count at this request, before its announcement
		// arrives: the token's row is read every time (its unique hash).
		epoch := a.tokens.epoch()
		var err error
		rec, err = a.store.GetTokenByHash(r.Context(), hash)
		if errors.Is(err, store.ErrNotFound) {
			return a.unauthenticated(r, "unknown token", "unknown token: isolationd never issued this bearer token")
		}
		if err != nil {
			return err
		}
		a.tokens.put(hash, rec, epoch)
	}
	if subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hash)) != 1 {
		// Never reached by construction; a store that matched loosely must
		// not tell a stranger about someone else's token.
		return a.unauthenticated(r, "unknown token", "unknown token: isolationd never issued this bearer token")
	}
	switch {
	case rec.RevokedAt != nil:
		a.tokens.invalidate(rec.ID)
		return a.unauthenticated(r, "revoked token "+rec.ID, "token revoked: this bearer token was revoked; use another one")
	case rec.ExpiresAt != nil && !a.now().Before(*rec.ExpiresAt):
		return a.unauthenticated(r, "expired token "+rec.ID, expiredDetail(*rec.ExpiresAt))
	}
	info.principal = &auth.Principal{
		TokenID: rec.ID, Name: rec.Name, Role: rec.Role, ProjectID: rec.ProjectID,
		Developer: rec.Developer, EnvironmentID: rec.EnvironmentID, ExpiresAt: rec.ExpiresAt,
	}
	info.logger = info.logger.With("token_id", rec.ID)
	return nil
}

// unauthenticated audits a 401 (reason, for the audit trail) and answers
// it with detail, which tells the caller what was wrong with its token.
func (a *API) unauthenticated(r *http.Request, reason, detail string) *problem.Error {
	e := a.deny(r, auth.Unauthenticated, reason)
	e.Detail = detail
	return e
}

func expiredDetail(at time.Time) string {
	return "token expired: this bearer token expired at " + at.UTC().Format(time.RFC3339) + "; use another one"
}
