package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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

// streamRequest is a request whose answer is read line by line as it
// comes (the logs, the watch stream, an exec's output).
type streamRequest struct {
	method string // GET when empty
	path   string // below the endpoint, already escaped
	body   []byte // JSON, sent as it is; nil for none
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
// with the request, or an *Error, which gets the request id). A non-2xx
// answer is an *Error. A stream is not retried, whatever its method: a
// broken one is an error for the caller to start again, and a POST (an
// exec) carries no Idempotency-Key, which would ask the server to keep
// its answer for a replay.
func (c *Client) stream(ctx context.Context, req streamRequest, line func([]byte) error) error {
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	// A path below the endpoint's, already escaped: resolving it keeps an
	// id's escapes as they are.
	target, err := c.base.Parse(c.base.EscapedPath() + req.path + "?" + req.query.Encode())
	if err != nil {
		return fmt.Errorf("building %s %s request: %w", method, req.path, err)
	}
	h, _, requestID := c.headers(request{method: method, path: req.path}, req.body != nil)
	h.Del(apiv1.HeaderIdempotencyKey)
	h.Set("Accept", req.accept+", "+apiv1.MediaProblem)
	if !req.follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.requestTimeout)
		defer cancel()
	}
	var body io.Reader = http.NoBody
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, method, target.String(), body)
	if err != nil {
		return err
	}
	hr.Header = h
	redactingLogger{next: c.logger, secret: c.token}.Debug("performing request", "method", method, "url", target.Redacted(), "request_id", requestID, "follow", req.follow)
	res, err := c.http.Do(hr)
	if err != nil {
		if ctx.Err() != nil && req.follow {
			return nil
		}
		return fmt.Errorf("%s %s (request id %s): %w", method, target.Redacted(), requestID, err)
	}
	defer res.Body.Close()
	if rid := res.Header.Get(apiv1.HeaderRequestID); rid != "" {
		requestID = rid
	}
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
		return newError(method, req.path, res.StatusCode, requestID, body)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), maxStreamLine)
	for sc.Scan() {
		if err := line(sc.Bytes()); err != nil {
			if de, ok := err.(*decodeError); ok {
				return fmt.Errorf("%s %s (request id %s): decoding a line: %w", method, req.path, requestID, de.err)
			}
			// A problem the answer carried (an exec's error line) is told
			// with the request that got it.
			var apiErr *Error
			if errors.As(err, &apiErr) && apiErr.RequestID == "" {
				apiErr.RequestID = requestID
			}
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s %s (request id %s): reading: %w", method, req.path, requestID, err)
	}
	return nil
}

// decodeError is a line of a streamed answer that could not be decoded.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "decoding a line: " + e.err.Error() }
