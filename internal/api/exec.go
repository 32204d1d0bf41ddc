package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// Execer starts commands in environments' containers; workload.Runtime
// satisfies it.
type Execer interface {
	Exec(ctx context.Context, envID string, spec workload.ExecSpec) (workload.Exec, error)
}

// DefaultExecSessionsPerToken is how many exec sessions one token may
// have open at once unless the server is told otherwise
// (isolationd serve --exec-sessions-per-token).
const DefaultExecSessionsPerToken = 32

// execParams are the query parameters of GET /v1/environments/{id}/exec,
// the fields of apiv1.ExecRequest: command and env repeated, rows and
// cols for the terminal's size.
var execParams = []string{"command", "env", "working_dir", "uid", "gid", "tty", "rows", "cols", "timeout"}

// execRun answers POST /v1/environments/{id}/exec: the command runs with
// an empty stdin and no terminal, and the answer streams its output as
// NDJSON apiv1.ExecFrame lines, one per read of it (flushed), then one
// with its exit. Every refusal comes before the answer starts, as an
// ordinary problem.
func (a *API) execRun(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.ExecRequest
	if err := decode(r, &in); err != nil {
		return a.refuseExec(r, nil, err)
	}
	if err := checkExec(in, false, nil); err != nil {
		return a.refuseExec(r, nil, err)
	}
	out := newExecOutput()
	spec := execSpec(in)
	spec.Stdout, spec.Stderr = out.writer(apiv1.ExecChannelStdout), out.writer(apiv1.ExecChannelStderr)
	s, err := a.openSession(r, in, http.StatusOK, spec, out)
	if err != nil {
		out.start(nil)
		return err
	}
	// The answer lasts as long as the session. net/http lifts the
	// request's read deadline once its body is read, and watches the
	// connection: the client going away cancels the request's context.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", mediaNDJSON)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	// The client learns that the command runs before its first output.
	_ = rc.Flush()
	var line []byte
	frame := func(f apiv1.ExecFrame) error {
		line, _ = jsonLine(line[:0], f)
		if _, err := w.Write(line); err != nil {
			return err
		}
		return rc.Flush()
	}
	streams := map[byte]string{apiv1.ExecChannelStdout: apiv1.StreamStdout, apiv1.ExecChannelStderr: apiv1.StreamStderr}
	out.start(func(ch byte, p []byte) error { return frame(apiv1.ExecFrame{Stream: streams[ch], Data: p}) })

	exit, failure := s.run(execClient{
		gone: r.Context().Done(),
		// A client that stopped reading must not hold the session up:
		// what it has not taken within the grace is dropped.
		abort: func() { _ = rc.SetWriteDeadline(time.Now().Add(execOutputGrace)) },
	})
	_ = rc.SetWriteDeadline(time.Now().Add(execOutputGrace))
	last := apiv1.ExecFrame{Exit: &exit}
	if failure != nil {
		p, _ := problemOf(r, failure)
		last = apiv1.ExecFrame{Error: &p}
	}
	out.finish(func() { _ = frame(last) })
	return nil
}

// execOutputGrace is how long output still in flight may take to reach a
// client once its session is ending, and how long the last message may.
const execOutputGrace = 2 * time.Second

// jsonLine appends v as JSON and a newline to buf.
func jsonLine(buf []byte, v any) ([]byte, error) {
	b, err := encode(v)
	return append(buf, b...), err
}

// checkExec is the request's own validation and the transport's rules: a
// terminal needs the WebSocket, a size needs a terminal. fe are the
// errors found before (reading a query); rename maps the request's field
// names to the names the client used.
func checkExec(in apiv1.ExecRequest, websocket bool, fe []apiv1.FieldError, rename ...string) error {
	fe = append(fe, in.Validate()...)
	if in.TTY && !websocket {
		fe = append(fe, apiv1.FieldError{Field: "tty", Message: "needs the WebSocket: GET /v1/environments/{id}/exec with Upgrade: websocket"})
	}
	if in.Size != nil && !in.TTY {
		fe = append(fe, apiv1.FieldError{Field: "size", Message: "needs tty: a size is a terminal's"})
	}
	if len(fe) == 0 {
		return nil
	}
	names := strings.NewReplacer(rename...)
	for i := range fe {
		fe[i].Field = names.Replace(fe[i].Field)
	}
	slices.SortFunc(fe, func(a, b apiv1.FieldError) int { return strings.Compare(a.Field, b.Field) })
	return problem.Invalid(slices.Compact(fe))
}

// execQuery reads the request of GET .../exec from its query and checks
// it as checkExec does, naming the query's parameters.
func execQuery(r *http.Request) (apiv1.ExecRequest, error) {
	var in apiv1.ExecRequest
	q, err := query(r)
	if err != nil {
		return in, err
	}
	var fe []apiv1.FieldError
	bad := func(field, message string) { fe = append(fe, apiv1.FieldError{Field: field, Message: message}) }
	for k, vs := range q {
		switch {
		case !slices.Contains(execParams, k):
			bad(k, "is not a query parameter of this route")
		case len(vs) > 1 && k != "command" && k != "env":
			bad(k, "must be given at most once")
		}
	}
	in.Command, in.WorkingDir, in.Timeout = q["command"], q.Get("working_dir"), q.Get("timeout")
	for _, kv := range q["env"] {
		k, v, ok := strings.Cut(kv, "=")
		if _, dup := in.Env[k]; !ok || dup {
			bad("env", "must be NAME=VALUE, each name once")
			continue
		}
		if in.Env == nil {
			in.Env = map[string]string{}
		}
		in.Env[k] = v
	}
	in.UID, in.GID = queryID(q, "uid", bad), queryID(q, "gid", bad)
	if s := q.Get("tty"); s != "" {
		if in.TTY, err = strconv.ParseBool(s); err != nil {
			bad("tty", "must be true or false")
		}
	}
	rows, cols := queryUint16(q, "rows", bad), queryUint16(q, "cols", bad)
	switch {
	case q.Has("rows") != q.Has("cols"):
		bad("rows", "and cols go together: a terminal's size is both")
	case rows != nil && cols != nil:
		in.Size = &apiv1.TerminalSize{Rows: *rows, Cols: *cols}
	}
	return in, checkExec(in, true, fe, "size.rows", "rows", "size.cols", "cols", "size", "rows")
}

// queryID is a uid or gid parameter, nil when absent or wrong (said with bad).
func queryID(q url.Values, name string, bad func(field, message string)) *uint32 {
	if !q.Has(name) {
		return nil
	}
	n, err := strconv.ParseUint(q.Get(name), 10, 32)
	if err != nil {
		bad(name, "must be a whole number from 0 to 4294967295")
		return nil
	}
	id := uint32(n)
	return &id
}

// queryUint16 is a terminal dimension, nil when absent or wrong (said
// with bad; the range is apiv1's to check).
func queryUint16(q url.Values, name string, bad func(field, message string)) *uint16 {
	if !q.Has(name) {
		return nil
	}
	n, err := strconv.ParseUint(q.Get(name), 10, 16)
	if err != nil {
		bad(name, fmt.Sprintf("must be a whole number from 1 to %d", apiv1.MaxTerminalRows))
		return nil
	}
	v := uint16(n)
	return &v
}

// execSpec is what the runtime runs for in, without the transport's
// stdin and output.
func execSpec(in apiv1.ExecRequest) workload.ExecSpec {
	spec := workload.ExecSpec{Command: in.Command, Env: in.Env, WorkingDir: in.WorkingDir, UID: in.UID, GID: in.GID, TTY: in.TTY}
	if in.TTY {
		spec.Size = apiv1.DefaultTerminalSize
		if in.Size != nil {
			spec.Size = *in.Size
		}
	}
	return spec
}

// execBlocked says why environment e takes no exec session, "" when it
// takes one: it must be ready (or updating) with its workload running.
func execBlocked(e apiv1.Environment) string {
	switch {
	case e.State != apiv1.StateReady && e.State != apiv1.StateUpdating:
		return fmt.Sprintf("environment %s is %s", e.ID, e.State)
	case e.Workload == nil:
		return fmt.Sprintf("environment %s has no workload", e.ID)
	case e.Workload.State == apiv1.WorkloadNotRun:
		return notRun(e.ID)
	case e.Workload.State != apiv1.WorkloadRunning:
		return fmt.Sprintf("environment %s's workload is %s", e.ID, e.Workload.State)
	}
	return ""
}

func notRun(envID string) string {
	return fmt.Sprintf("environment %s's workload is %s: the simulate runtime runs nothing", envID, apiv1.WorkloadNotRun)
}

// notExecable is the 409 of an environment that takes no exec session.
func notExecable(why string) *problem.Error {
	return problem.New(problem.State, "%s; exec needs it ready with its workload running", why)
}

// execStartError is the answer to the runtime's refusal to start a
// command: a program or user not in the image names its field, a
// container that does not run is a 409; anything else is the server's.
func execStartError(envID string, err error) error {
	var se *workload.SpecError
	switch {
	case errors.As(err, &se):
		field := se.Field
		if field == "" {
			field = "command"
		}
		return problem.Field(problem.Validation, field, se.Message)
	case errors.Is(err, workload.ErrNoExec):
		return notExecable(notRun(envID))
	case errors.Is(err, workload.ErrNeedsRestart):
		return problem.New(problem.State, "environment %s: %v", envID, err)
	case errors.Is(err, workload.ErrUnknown):
		return notExecable(fmt.Sprintf("environment %s's workload is not running", envID))
	}
	return err
}

// refuseExec audits an exec attempt refused before a session opened (a
// failed session.start with the reason, and the request when it was
// valid) and returns err to answer it with.
func (a *API) refuseExec(r *http.Request, valid *apiv1.ExecRequest, err error) error {
	e, _ := asError(err)
	env := targetEnvironmentJSON(r)
	ev := a.control.SessionRefused(a.call(r, httpStatus(e)), idFromPath(r), env.ProjectID, valid, truncateField(e.Detail))
	a.recordRefusal(r, ev, "exec refused")
	return err
}
