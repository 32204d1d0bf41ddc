package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// SessionCookie names the web console's session cookie. Its value is the
// session's secret; the store keeps only its hash.
const SessionCookie = "isolation_session"

// The web console (/ui) signs in with a token and then sends a session
// cookie instead of the token, so that the token is never kept by the
// browser. A request carrying the cookie and no Authorization header is
// authenticated as the session's token, with exactly its permissions,
// through the same authorize step as a bearer token; on top of that it
// may only read (the console changes nothing), and a request that is not
// GET or HEAD must come from the server's own origin (crossOrigin).

// crossOrigin refuses the requests of other sites that a browser would
// send with the cookie: SameSite=Strict keeps it off them already, and
// this is the second lock, by Sec-Fetch-Site or else Origin.
var crossOrigin = http.NewCrossOriginProtection()

// authenticateSession authenticates r by the console session whose
// secret is the cookie's value: the session must be signed in and not
// expired, and its token valid. Every failure is a 401 that says which.
func (a *API) authenticateSession(r *http.Request, secret string) error {
	info := requestInfoFrom(r.Context())
	ses, err := a.store.GetUISessionByHash(r.Context(), auth.HashSecret(secret))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return a.unauthenticated(r, "unknown console session", "unknown console session: sign in again")
	case err != nil:
		return err
	case ses.RevokedAt != nil:
		return a.unauthenticated(r, "signed-out console session "+ses.ID, "console session signed out: sign in again")
	case !a.now().Before(ses.ExpiresAt):
		return a.unauthenticated(r, "expired console session "+ses.ID, "console session expired at "+ses.ExpiresAt.UTC().Format(time.RFC3339)+": sign in again")
	}
	rec, err := a.store.GetToken(r.Context(), ses.TokenID)
	switch {
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	case err != nil || rec.RevokedAt != nil:
		return a.unauthenticated(r, "console session "+ses.ID+" of a revoked token", "the token this console session signed in with was revoked: sign in with another one")
	}
	exp := ses.ExpiresAt
	info.principal = &auth.Principal{
		TokenID: rec.ID, Name: rec.Name, Role: rec.Role, ProjectID: rec.ProjectID,
		Developer: rec.Developer, EnvironmentID: rec.EnvironmentID, ExpiresAt: &exp,
	}
	info.uiSession = ses.ID
	info.logger = info.logger.With("token_id", rec.ID, "ui_session", ses.ID)
	return nil
}

// sessionCookie is the cookie's secret, "" when r has none.
func sessionCookie(r *http.Request) string {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// consoleGuard is what a console session may do beyond what its token
// may: read, from the console's own origin.
func (a *API) consoleGuard(r *http.Request, rt Route) error {
	if requestInfoFrom(r.Context()).uiSession == "" {
		return nil
	}
	if rt.Perm.Verb != auth.VerbRead {
		return a.deny(r, auth.Forbidden, "a console session only reads: send the token itself as a bearer token to change anything")
	}
	if err := crossOrigin.Check(r); err != nil {
		return a.deny(r, auth.Forbidden, "cross-origin request with a console session's cookie refused")
	}
	return nil
}

// ConsoleSignedIn reports whether r carries the cookie of a valid console
// session (the web console's pages answer only then). It audits nothing:
// the page's own API requests are authenticated, and audited, as any.
func (a *API) ConsoleSignedIn(r *http.Request) bool {
	secret := sessionCookie(r)
	if secret == "" {
		return false
	}
	ses, err := a.store.GetUISessionByHash(r.Context(), auth.HashSecret(secret))
	if err != nil || ses.RevokedAt != nil || !a.now().Before(ses.ExpiresAt) {
		return false
	}
	rec, err := a.store.GetToken(r.Context(), ses.TokenID)
	return err == nil && rec.RevokedAt == nil
}

// signIn opens a console session for the caller's bearer token and sets
// its cookie: HttpOnly (no script reads it), SameSite=Strict (no other
// site's request carries it) and Secure when served over TLS.
func (a *API) signIn(w http.ResponseWriter, r *http.Request) error {
	if requestInfoFrom(r.Context()).uiSession != "" {
		return problem.New(problem.Forbidden, "sign in with a bearer token (Authorization: Bearer TOKEN), not with a console session")
	}
	created, err := a.control.SignIn(r.Context(), a.call(r, http.StatusCreated))
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure whenever served over TLS; isolationd may listen on plain loopback
		Name: SessionCookie, Value: created.Secret, Path: "/", Expires: created.Session.ExpiresAt,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	writeJSON(w, http.StatusCreated, created.Session)
	return nil
}

// signOut revokes the request's console session, if it was made with one,
// and clears the cookie; signing out without a session does nothing.
func (a *API) signOut(w http.ResponseWriter, r *http.Request) error {
	if id := requestInfoFrom(r.Context()).uiSession; id != "" {
		if _, err := a.control.SignOut(r.Context(), a.call(r, http.StatusNoContent), id); err != nil {
			return err
		}
	}
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: as signIn's
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// uiSessionsRevoked ends the long requests (watch, wait_for) of the
// console sessions a commit signed out, as a token's revocation does.
func (a *API) uiSessionsRevoked(c store.Commit) {
	for _, id := range c.UISessions {
		s, err := a.store.GetUISession(context.Background(), id)
		if err == nil && s.RevokedAt == nil {
			continue
		}
		a.tokens.invalidate(id)
	}
}
