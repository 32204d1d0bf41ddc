package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Tokens is the /v1/tokens API. Managing tokens needs an admin token;
// reading them an admin or auditor token.
type Tokens struct{ collection[apiv1.Token] }

// Tokens returns the tokens API.
func (c *Client) Tokens() *Tokens {
	return &Tokens{collection[apiv1.Token]{c, "/v1/tokens"}}
}

// Create creates a token and returns it with its secret, which the server
// shows this once and never stores.
//
// When the first answer is lost and the retry is answered from the
// server's idempotency record, the token exists but its secret is gone
// for good; Create then revokes that token and creates another, so the
// caller always gets a usable secret and no unknown token stays valid.
func (t *Tokens) Create(ctx context.Context, in apiv1.TokenCreate) (*apiv1.TokenCreated, error) {
	return withSecret(ctx, "token", func(ctx context.Context) (*apiv1.TokenCreated, error) {
		return call[apiv1.TokenCreated](ctx, t.c, request{method: http.MethodPost, path: t.path, body: in})
	}, func(ctx context.Context, id string) error { return t.Delete(ctx, id, "") })
}

// withSecret makes a token (of kind, for errors) with create, and
// returns it with its secret: an answer replayed without one (the first
// was lost) is revoked with revoke and the token made again, once.
func withSecret(ctx context.Context, kind string, create func(context.Context) (*apiv1.TokenCreated, error), revoke func(ctx context.Context, id string) error) (*apiv1.TokenCreated, error) {
	for range 2 {
		out, err := create(ctx)
		if err != nil {
			return nil, err
		}
		if out.Secret != "" {
			return out, nil
		}
		if err := revoke(ctx, out.ID); err != nil && !IsNotFound(err) {
			return nil, fmt.Errorf("%s %s was created but its secret was lost in transit, and revoking it failed (revoke it by hand): %w", kind, out.ID, err)
		}
	}
	return nil, fmt.Errorf("the answers that carry a new %s's secret were lost twice in transit; the tokens made were revoked, try again", kind)
}

// Get returns a token, never its secret; IsNotFound(err) when it does not
// exist or was revoked.
func (t *Tokens) Get(ctx context.Context, id string) (*apiv1.Token, error) {
	return t.get(ctx, id)
}

// List returns every token that is not revoked (opts.ProjectID filters),
// following all pages.
func (t *Tokens) List(ctx context.Context, opts ListOptions) ([]apiv1.Token, error) {
	return t.list(ctx, opts)
}

// Delete revokes a token: from the server's next request on, it is
// refused. IsNotFound(err) when it does not exist or was revoked already.
func (t *Tokens) Delete(ctx context.Context, id, ifMatch string) error {
	return t.delete(ctx, id, ifMatch)
}
