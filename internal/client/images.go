package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Images is the /v1/images API: the server's image store.
type Images struct{ collection[apiv1.Image] }

// Images returns the images API.
func (c *Client) Images() *Images {
	return &Images{collection[apiv1.Image]{c, "/v1/images"}}
}

// Get returns the image name; IsNotFound(err) when the store has none.
func (i *Images) Get(ctx context.Context, name string) (*apiv1.Image, error) {
	return i.get(ctx, name)
}

// List returns every image of the store, by name.
func (i *Images) List(ctx context.Context) ([]apiv1.Image, error) {
	return i.list(ctx, ListOptions{})
}

// Delete deletes the image name. While an environment's workload uses it
// the server refuses with a 409 (IsConflict) naming them.
func (i *Images) Delete(ctx context.Context, name, ifMatch string) error {
	return i.delete(ctx, name, ifMatch)
}

// Import sends archive, a tar of an OCI image layout or a docker archive,
// to be stored as name (needs an admin token), and returns the image.
// Unlike the other calls it streams its body, so it makes one attempt and
// is bounded by ctx alone (an archive may take longer than a request
// timeout to send); importing the same archive again is harmless.
func (i *Images) Import(ctx context.Context, name string, archive io.Reader) (*apiv1.Image, error) {
	c := i.c
	req := request{method: http.MethodPost, path: i.path}
	u := c.base.JoinPath(i.path)
	u.RawQuery = url.Values{"name": {name}}.Encode()
	h, _, requestID := c.headers(req, false)
	h.Set("Content-Type", "application/x-tar")
	// Not an idempotent route: the server keeps no body to replay.
	h.Del(apiv1.HeaderIdempotencyKey)
	hr, err := http.NewRequestWithContext(ctx, req.method, u.String(), archive)
	if err != nil {
		return nil, err
	}
	hr.Header = h
	log := redactingLogger{next: c.logger, secret: c.token}
	log.Debug("performing request", "method", req.method, "url", u.Redacted(), "request_id", requestID, "attempt", 1)
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("%s %s (request id %s): %w", req.method, u.Redacted(), requestID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s (request id %s): reading response: %w", req.method, u.Redacted(), requestID, err)
	}
	var img apiv1.Image
	if _, err := c.decode(req, attemptResult{status: resp.StatusCode, header: resp.Header, body: body}, requestID, &img); err != nil {
		return nil, err
	}
	return &img, nil
}
