package client

import (
	"context"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// SessionTokens is the /v1/environments/{id}/session-tokens API of one
// environment: short-lived tokens that exec into it and do nothing else,
// minted from the client's token, which must be allowed to exec there.
type SessionTokens struct {
	c    *Client
	path string
}

// SessionTokens returns the session tokens API of environment envID.
func (c *Client) SessionTokens(envID string) *SessionTokens {
	return &SessionTokens{c: c, path: "/v1/environments/" + escape(envID) + "/session-tokens"}
}

// Create mints a session token and returns it with its secret, which the
// server shows this once. It expires after in.TTL (15 minutes when
// empty), or with the client's token if that expires first. As with
// Tokens.Create, a token whose secret was lost in transit is revoked and
// another minted.
func (s *SessionTokens) Create(ctx context.Context, in apiv1.SessionTokenCreate) (*apiv1.TokenCreated, error) {
	return withSecret(ctx, "session token", func(ctx context.Context) (*apiv1.TokenCreated, error) {
		return call[apiv1.TokenCreated](ctx, s.c, request{method: http.MethodPost, path: s.path, body: in})
	}, s.Delete)
}

// Delete revokes session token id: from the server's next request on it
// is refused, and its exec sessions end. IsNotFound(err) when it is
// revoked already (or is not a session token of this environment).
func (s *SessionTokens) Delete(ctx context.Context, id string) error {
	_, err := s.c.do(ctx, request{method: http.MethodDelete, path: s.path + "/" + escape(id)}, nil)
	return err
}
