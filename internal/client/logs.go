package client

import (
	"context"
	"encoding/json"
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
	return e.c.stream(ctx, streamRequest{path: e.item(id) + "/logs", query: q, accept: "application/x-ndjson", follow: opts.Follow}, func(b []byte) error {
		var l apiv1.LogLine
		if err := json.Unmarshal(b, &l); err != nil {
			return &decodeError{err}
		}
		return emit(l)
	})
}
