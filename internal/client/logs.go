package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// LogOptions says which lines of a workload's output Logs reads.
type LogOptions struct {
	// Tail is how many of the last lines to read; nil for all the server
	// keeps (up to its bound, 10000 lines).
	Tail *int
	// Since leaves out older lines: an RFC 3339 time, or a duration such
	// as 10m (that long ago, on the server's clock). "" keeps all.
	Since string
	// Follow keeps reading new lines until ctx is done or the environment
	// is deleted.
	Follow bool
}

// maxLogLine bounds one NDJSON line of a log answer: a line of output is
// at most 16 KiB, which JSON escaping can make six times longer.
const maxLogLine = 1 << 20

// Logs reads an environment's workload output, oldest line first, and
// calls emit with each line (as NDJSON, whatever the server's default):
// it returns when the answer ends, when ctx is done (nil), or with emit's
// first error. IsNotFound(err) when the environment does not exist or has
// no workload output. A stream is not retried: a follower that loses its
// connection gets the error, and may follow again with Since.
func (e *Environments) Logs(ctx context.Context, id string, opts LogOptions, emit func(apiv1.LogLine) error) error {
	q := url.Values{"format": {"ndjson"}}
	if opts.Tail != nil {
		q.Set("tail", strconv.Itoa(*opts.Tail))
	}
	if opts.Since != "" {
		q.Set("since", opts.Since)
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	path := e.item(id) + "/logs"
	// A path below the endpoint's, already escaped: resolving it keeps an
	// id's escapes as they are.
	target, err := e.c.base.Parse(e.c.base.EscapedPath() + path + "?" + q.Encode())
	if err != nil {
		return fmt.Errorf("building GET %s request: %w", path, err)
	}
	h, _, requestID := e.c.headers(request{method: http.MethodGet, path: path}, false)
	h.Set("Accept", "application/x-ndjson, "+apiv1.MediaProblem)
	if !opts.Follow {
		// A follower waits as long as it likes; a read is a request like any other.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.c.requestTimeout)
		defer cancel()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), http.NoBody)
	if err != nil {
		return err
	}
	hr.Header = h
	redactingLogger{next: e.c.logger, secret: e.c.token}.Debug("performing request", "method", http.MethodGet, "url", target.Redacted(), "request_id", requestID, "follow", opts.Follow)
	res, err := e.c.http.Do(hr)
	if err != nil {
		if ctx.Err() != nil && opts.Follow {
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
		return newError(http.MethodGet, path, res.StatusCode, requestID, body)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	for sc.Scan() {
		var l apiv1.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("GET %s (request id %s): decoding a line: %w", path, requestID, err)
		}
		if err := emit(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("GET %s (request id %s): reading: %w", path, requestID, err)
	}
	return nil
}
