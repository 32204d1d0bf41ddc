package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// ErrNotIsolationd is wrapped by WhoAmI's error when the endpoint answered,
// but not as isolationd answers: a static file server, a proxy's error
// page, another API. Every object would then look deleted, so callers stop.
var ErrNotIsolationd = errors.New("the endpoint does not answer as isolationd does")

// WhoAmI returns the identity of the client's token (never its secret)
// and the server's name and version. A refused token is a 401
// (StatusCode(err)); an answer that is not isolationd's wraps
// ErrNotIsolationd.
func (c *Client) WhoAmI(ctx context.Context) (*apiv1.WhoAmI, error) {
	var who apiv1.WhoAmI
	meta, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/whoami"}, &who)
	var apiErr *Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Problem.Type == "":
		// Every error of isolationd is an RFC 9457 problem with a type.
		detail := ""
		if apiErr.Problem.Detail != "" {
			detail = ": " + c.scrub(apiErr.Problem.Detail)
		}
		return nil, fmt.Errorf("%w: GET /v1/whoami answered %d %s, not a problem document%s",
			ErrNotIsolationd, apiErr.StatusCode, http.StatusText(apiErr.StatusCode), detail)
	case err != nil && meta != nil && meta.StatusCode/100 == 2:
		return nil, fmt.Errorf("%w: GET /v1/whoami answered %d with a body that is not JSON (%s)",
			ErrNotIsolationd, meta.StatusCode, contentType(meta.Header))
	case err != nil:
		return nil, err
	case who.Server.Name != apiv1.ServerName || who.TokenID == "" || who.Role == "":
		return nil, fmt.Errorf("%w: GET /v1/whoami answered %d with JSON that is not isolationd's (no server named isolationd, or no token)",
			ErrNotIsolationd, meta.StatusCode)
	}
	return &who, nil
}

// scrub removes the token from text the server sent back: an echoing
// endpoint must not put the secret into an error message.
func (c *Client) scrub(s string) string { return strings.ReplaceAll(s, c.token, redacted) }

func contentType(h http.Header) string {
	if ct := h.Get("Content-Type"); ct != "" {
		return "Content-Type " + ct
	}
	return "no Content-Type"
}
