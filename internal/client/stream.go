package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// maxStreamLine bounds one line of a streamed answer: a line of output is
// at most 16 KiB, which JSON escaping can make six times longer, and an
// environment is far smaller.
const maxStreamLine = 1 << 20

// streamRequest is a GET whose answer is read line by line as it comes
// (the logs, the watch stream).
type streamRequest struct {
	path   string // below the endpoint, already escaped
	query  url.Values
	accept string // the media type asked for; problems are always accepted
	// follow says the answer lasts as long as the caller wants: it is
	// bounded by ctx alone, and ctx ending it is no error. Otherwise the
	// request timeout bounds it, as any request.
	follow bool
}

// stream performs req and calls line with each line of the answer, in
// order, until the answer ends (nil), ctx ends a follower (nil) or line
// fails (its error, as it is, unless it is a *decodeError, which is told
// with the request). A non-2xx answer is an *Error. A stream is not
// retried: a broken one is an error for the caller to start again.
func (c *Client) stream(ctx context.Context, req streamRequest, line func([]byte) error) error {
	// A path below the endpoint's, already escaped: resolving it keeps an
	// id's escapes as they are.
	target, err := c.base.Parse(c.base.EscapedPath() + req.path + "?" + req.query.Encode())
	if err != nil {
		return fmt.Errorf("building GET %s request: %w", req.path, err)
	}
	h, _, requestID := c.headers(request{method: http.MethodGet, path: req.path}, false)
	h.Set("Accept", req.accept+", "+apiv1.MediaProblem)
	if !req.follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.requestTimeout)
		defer cancel()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), http.NoBody)
	if err != nil {
		return err
	}
	hr.Header = h
	redactingLogger{next: c.logger, secret: c.token}.Debug("performing request", "method", http.MethodGet, "url", target.Redacted(), "request_id", requestID, "follow", req.follow)
	res, err := c.http.Do(hr)
	if err != nil {
		if ctx.Err() != nil && req.follow {
			return nil
		}
		return fmt.Errorf("GET %s (request id %s): %w", target.Redacted(), requestID, err)
	}
	defer res.Body.Close()
	if rid := res.Header.Get(apiv1.HeaderRequestID); rid != "" {
		requestID = rid
	}
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
		return newError(http.MethodGet, req.path, res.StatusCode, requestID, body)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), maxStreamLine)
	for sc.Scan() {
		if err := line(sc.Bytes()); err != nil {
			if de, ok := err.(*decodeError); ok {
				return fmt.Errorf("GET %s (request id %s): decoding a line: %w", req.path, requestID, de.err)
			}
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("GET %s (request id %s): reading: %w", req.path, requestID, err)
	}
	return nil
}

// decodeError is a line of a streamed answer that could not be decoded.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "decoding a line: " + e.err.Error() }
