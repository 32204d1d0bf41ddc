package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// execSessions counts the open exec sessions, per token against the
// limit, and all of them for the shutdown, which waits until every one
// has ended and its end is on the audit trail.
type execSessions struct {
	perToken int
	mu       sync.Mutex
	byToken  map[string]int
	open     int
	closed   bool
	// drained is closed when open falls to 0, for a wait under way.
	drained chan struct{}
}

func newExecSessions(perToken int) *execSessions {
	if perToken <= 0 {
		perToken = DefaultExecSessionsPerToken
	}
	return &execSessions{perToken: perToken, byToken: map[string]int{}}
}

// acquire counts a session of token id, or refuses it: 429 past the
// token's limit, 503 once the server is shutting down. release uncounts it.
func (s *execSessions) acquire(id string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, problem.New(problem.Unavailable, "isolationd is shutting down: it opens no more exec sessions")
	case s.byToken[id] >= s.perToken:
		return nil, problem.New(problem.RateLimited, "the token already has as many exec sessions open as one token may (isolationd serve --exec-sessions-per-token %d); end one first", s.perToken)
	}
	s.byToken[id]++
	s.open++
	var once sync.Once
	return func() { once.Do(func() { s.release(id) }) }, nil
}

func (s *execSessions) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byToken[id]--; s.byToken[id] == 0 {
		delete(s.byToken, id)
	}
	if s.open--; s.open == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// drain refuses new sessions and waits until the open ones have ended
// (API.Close ends them).
func (s *execSessions) drain(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.open == 0 {
		s.mu.Unlock()
		return nil
	}
	if s.drained == nil {
		s.drained = make(chan struct{})
	}
	ch := s.drained
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// execSession is a command running for a client, from its audited start
// to its audited end.
type execSession struct {
	a       *API
	ctl     *control.Session
	req     apiv1.ExecRequest
	envID   string
	exec    workload.Exec
	out     *execOutput
	bytesIn atomic.Int64
	log     *slog.Logger
	// started is when the command started, in real time: durations are
	// the process's, whatever the server's clock says.
	started time.Time

	revoked <-chan struct{}
	expired <-chan time.Time
	// done releases what the session holds: its count, its context, the
	// expiry timer.
	done func()
}

// openSession opens an exec session for r into its environment. The
// refusals come first, each audited as a failed start: an environment
// that is not running (409), the token's limit (429). Then the start is
// audited, failing closed, and the command is started with spec (the
// transport's stdin and out in it); the runtime's refusal ends the
// session on the trail and answers (400 naming the field, 409).
func (a *API) openSession(r *http.Request, req apiv1.ExecRequest, status int, spec workload.ExecSpec, out *execOutput) (*execSession, error) {
	env, err := targetEnvironment(r)
	if err != nil {
		return nil, err
	}
	if why := execBlocked(env); why != "" {
		return nil, a.refuseExec(r, &req, notExecable(why))
	}
	if a.execer == nil {
		return nil, a.refuseExec(r, &req, notExecable(notRun(env.ID)))
	}
	info := requestInfoFrom(r.Context())
	release, err := a.sessions.acquire(info.principal.TokenID)
	if err != nil {
		return nil, a.refuseExec(r, &req, err)
	}
	ctl, err := a.control.StartSession(r.Context(), a.call(r, status), env, req)
	if err != nil {
		release()
		return nil, err
	}
	log := info.logger.With("session_id", ctl.ID)
	// The runtime's session ends when the session does, not with the
	// request: a WebSocket's outlives its handshake.
	ctx, cancel := context.WithCancel(context.Background())
	ex, err := a.execer.Exec(ctx, env.ID, spec)
	if err != nil {
		cancel()
		err = execStartError(env.ID, err)
		p, e := problemOf(r, err)
		if endErr := a.control.EndSession(r.Context(), ctl, control.SessionEnd{Failure: p.Detail, Status: httpStatus(e)}); endErr != nil {
			log.Error("exec: audit the end of a session that did not start", "error", endErr.Error())
		}
		release()
		return nil, err
	}
	log.Info("exec session started", "environment_id", env.ID, "tty", req.TTY)
	expired, stopExpiry := a.expiry(r)
	return &execSession{
		a: a, ctl: ctl, req: req, envID: env.ID, exec: ex, out: out, log: log, started: time.Now(),
		revoked: a.revocation(r), expired: expired,
		done: func() { stopExpiry(); cancel(); release() },
	}, nil
}

// execClient is what a session needs of its transport.
type execClient struct {
	// gone is closed when the client went away, or broke the protocol:
	// err (nil for none) then says how.
	gone <-chan struct{}
	err  func() error
	// abort stops the client's stdin and bounds how long output still in
	// flight may take, once the session is ending.
	abort func()
}

type waitResult struct {
	status workload.ExitStatus
	err    error
	at     time.Time
}

// run waits for the session to end and says why: its command exits, its
// timeout passes, the client goes away, its token is revoked or expires,
// its environment goes or its workload stops, or the server shuts down.
// Every session then gets the same end: the transport's abort, SIGKILL at
// once for a timeout or a revoked token, and the runtime's Close (SIGHUP
// to everything the session started, SIGKILL after a grace, every file
// and goroutine released). The end is audited before run returns it;
// failure is set when the session failed on the server's side or the
// client broke the protocol, and is the last thing the client is told.
func (s *execSession) run(cl execClient) (exit apiv1.ExecExit, failure error) {
	defer s.done()
	waited := make(chan waitResult, 1)
	go func() {
		st, err := s.exec.Wait()
		waited <- waitResult{status: st, err: err, at: time.Now()}
	}()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	envEnds := s.a.environmentEnds(ctx, s.envID)
	var timeout <-chan time.Time
	if d := s.req.TimeoutDuration(); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	var (
		res    waitResult
		exited bool
		reason string
	)
	select {
	case res = <-waited:
		exited, reason = true, apiv1.ExecExited
		select {
		case <-envEnds:
			if res.status.Signal != "" {
				// Killed as its container went: the environment ended it.
				reason = apiv1.ExecEnvGone
			}
		default:
		}
	case <-timeout:
		reason = apiv1.ExecTimedOut
	case <-cl.gone:
		reason = apiv1.ExecClosed
		if cl.err != nil {
			failure = cl.err()
		}
	case <-s.revoked:
		reason = apiv1.ExecRevoked
	case <-s.expired:
		reason = apiv1.ExecRevoked
	case <-envEnds:
		reason = apiv1.ExecEnvGone
	case <-s.a.closing:
		reason = apiv1.ExecServerStops
	}
	cl.abort()
	if reason == apiv1.ExecTimedOut || reason == apiv1.ExecRevoked {
		_ = s.exec.Signal(syscall.SIGKILL)
	}
	if err := s.exec.Close(); err != nil {
		s.log.Error("exec: end the session", "error", err.Error())
	}
	if !exited {
		res = <-waited
	}
	if res.err != nil && failure == nil {
		failure = res.err
	}
	exit = apiv1.ExecExit{
		SessionID: s.ctl.ID, ExitCode: res.status.Code, Signal: res.status.Signal, Reason: reason,
		DurationMS: res.at.Sub(s.started).Milliseconds(), BytesIn: s.bytesIn.Load(), BytesOut: s.out.bytes.Load(),
	}
	end := control.SessionEnd{Exit: &exit}
	if failure != nil {
		e, known := asError(failure)
		if !known {
			s.log.Error("exec: the session failed", "error", failure.Error())
		}
		end.Failure = e.Detail
	}
	if err := s.a.control.EndSession(ctx, s.ctl, end); err != nil {
		s.log.Error("exec: audit the end of the session", "error", err.Error())
	}
	s.log.Info("exec session ended", "reason", reason, "exit_code", exit.ExitCode, "duration_ms", exit.DurationMS)
	return exit, failure
}

// environmentEnds is closed once environment id is gone, on its way out,
// or takes no more exec sessions (execBlocked), as the store's commits
// tell; it stops watching when ctx ends.
func (a *API) environmentEnds(ctx context.Context, id string) <-chan struct{} {
	ended := make(chan struct{})
	go func() {
		for {
			changed := a.hub.Changed(id)
			e, err := a.store.GetEnvironment(ctx, id)
			if errors.Is(err, store.ErrNotFound) || (err == nil && execBlocked(e) != "") {
				close(ended)
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ended
}

// execOutput carries a session's output to its client: one message per
// write of the command's output (a read of up to 256 KiB of it), in order.
// Writes wait until the answer has started, since the command may write
// before it has; once sending fails, output is counted and dropped, so
// that the command never waits on a client that is gone.
type execOutput struct {
	bytes atomic.Int64
	ready chan struct{}
	mu    sync.Mutex
	send  func(channel byte, p []byte) error // nil: drop
}

func newExecOutput() *execOutput { return &execOutput{ready: make(chan struct{})} }

// start lets the output go to send; nil drops it (the session did not
// open, or its answer could not start).
func (o *execOutput) start(send func(channel byte, p []byte) error) {
	o.send = send
	close(o.ready)
}

// finish sends the session's last message, after all of its output.
func (o *execOutput) finish(last func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.send != nil {
		last()
	}
}

// writer is the command's stdout or stderr (by channel).
func (o *execOutput) writer(channel byte) io.Writer { return outputStream{o, channel} }

type outputStream struct {
	o       *execOutput
	channel byte
}

func (s outputStream) Write(p []byte) (int, error) {
	s.o.bytes.Add(int64(len(p)))
	<-s.o.ready
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	if s.o.send != nil && s.o.send(s.channel, p) != nil {
		s.o.send = nil
	}
	return len(p), nil
}
