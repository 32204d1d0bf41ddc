package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// WorkloadLogs finds the directory holding an environment's workload
// output (internal/workload/logs); workload.Runtime satisfies it. LogDir
// answers workload.ErrUnknown for an environment that runs nothing.
type WorkloadLogs interface {
	LogDir(envID string) (string, error)
}

// Media types of GET /v1/environments/{id}/logs.
const (
	mediaText   = "text/plain; charset=utf-8"
	mediaNDJSON = "application/x-ndjson"
)

// MaxLogTail bounds tail: what an answer holds at most, and what it holds
// when tail is not given.
const MaxLogTail = 10000

// logQuery is what GET /v1/environments/{id}/logs asks for.
type logQuery struct {
	logs.Query
	ndjson bool
}

// logParams are the query parameters of GET /v1/environments/{id}/logs.
var logParams = []string{"tail", "since", "follow", "format"}

// parseLogQuery reads tail, since, follow and format, and the Accept
// header (format wins over it), refusing other parameters and repeated
// ones as lists do.
func parseLogQuery(r *http.Request, now time.Time) (logQuery, error) {
	q, err := query(r)
	if err != nil {
		return logQuery{}, err
	}
	fe := checkParams(q, logParams)
	bad := func(field, message string) { fe = append(fe, apiv1.FieldError{Field: field, Message: message}) }
	lq := logQuery{Query: logs.Query{Tail: MaxLogTail}}
	if s := q.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxLogTail {
			bad("tail", fmt.Sprintf("must be a whole number of lines from 0 to %d", MaxLogTail))
		}
		lq.Tail = n
	}
	if s := q.Get("since"); s != "" {
		if t, err := parseTime(s); err == nil {
			lq.Since = t
		} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
			lq.Since = now.Add(-d)
		} else {
			bad("since", "must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z, or a positive duration such as 10m (that long ago)")
		}
	}
	if s := q.Get("follow"); s != "" {
		if lq.Follow, err = strconv.ParseBool(s); err != nil {
			bad("follow", "must be true or false")
		}
	}
	switch f := q.Get("format"); f {
	case "":
		lq.ndjson = acceptsNDJSON(r.Header.Values("Accept"))
	case "ndjson":
		lq.ndjson = true
	case "text":
	default:
		bad("format", "must be text or ndjson")
	}
	if fe != nil {
		slices.SortFunc(fe, func(a, b apiv1.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return lq, problem.Invalid(fe)
	}
	return lq, nil
}

// acceptsNDJSON reports whether Accept names NDJSON. Any other answer is
// plain text: a client asking for something else still gets the output.
func acceptsNDJSON(accept []string) bool {
	for _, h := range accept {
		for part := range strings.SplitSeq(h, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == mediaNDJSON {
				return true
			}
		}
	}
	return false
}

// environmentLogs answers GET /v1/environments/{id}/logs: the workload's
// output as plain text (a line per line of output, nothing added) or as
// NDJSON apiv1.LogLine values. With follow it streams new lines, flushing
// each, until the client goes away, the environment is deleted, the
// token stops working or the server shuts down.
func (a *API) environmentLogs(w http.ResponseWriter, r *http.Request) error {
	e, err := targetEnvironment(r)
	if err != nil {
		return err
	}
	// Real time, not the server's clock: the lines carry the init's.
	q, err := parseLogQuery(r, time.Now())
	if err != nil {
		return err
	}
	dir, err := a.logDir(e.ID)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if q.Follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go a.endFollow(ctx, cancel, r, e.ID)
	}
	if q.ndjson {
		w.Header().Set("Content-Type", mediaNDJSON)
	} else {
		w.Header().Set("Content-Type", mediaText)
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if q.Follow {
		// The client learns that it follows before the first line comes.
		_ = rc.Flush()
	}
	var buf []byte
	err = logs.Read(ctx, dir, q.Query, func(l apiv1.LogLine) error {
		buf = buf[:0]
		if q.ndjson {
			buf, _ = json.Marshal(l)
		} else {
			buf = append(buf, l.Line...)
		}
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			return err
		}
		if q.Follow {
			return rc.Flush()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		// The answer has started: all that is left is to end it.
		requestInfoFrom(r.Context()).logger.Warn("logs: reading the workload's output", "error", err.Error())
	}
	return nil
}

// logDir is the log directory of envID, or the problem of an environment
// without workload output: the server runs no workloads (the simulate
// driver, --runtime none), or none has run for this environment yet.
func (a *API) logDir(envID string) (string, error) {
	if a.workloadLogs == nil {
		return "", problem.New(problem.NotFound, "environment %q has no workload output: this server runs no workloads (--runtime none)", envID)
	}
	dir, err := a.workloadLogs.LogDir(envID)
	if errors.Is(err, workload.ErrUnknown) {
		return "", problem.New(problem.NotFound, "environment %q has no workload output: no workload has run for it on this server", envID)
	}
	return dir, err
}

// endFollow cancels a follower once the environment is gone or on its
// way out, the caller's token is revoked or expires, or the server
// shuts down; ctx ends with the request.
func (a *API) endFollow(ctx context.Context, cancel context.CancelFunc, r *http.Request, id string) {
	defer cancel()
	revoked := a.revocation(r)
	expired, stop := a.expiry(r)
	defer stop()
	for {
		changed := a.hub.Changed(id)
		e, err := a.store.GetEnvironment(ctx, id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && apiv1.StateIsLeaving(e.State)) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-a.closing:
			return
		case <-revoked:
			return
		case <-expired:
			return
		}
	}
}
