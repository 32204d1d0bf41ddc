package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"github.com/coder/websocket"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// mediaNDJSON is the media type of the answer to POST .../exec.
const mediaNDJSON = "application/x-ndjson"

// maxStdinMessage is the most stdin one WebSocket message carries: with
// its channel byte, 32 KiB, coder/websocket's default read limit, so a
// server that keeps the default reads every message the client sends.
const maxStdinMessage = 32<<10 - 1

// maxExecMessage bounds one message from the server (its output comes in
// reads of up to 256 KiB), so a broken or hostile server cannot exhaust the
// client's memory.
const maxExecMessage = 1 << 20

// Exec runs req.Command in the environment's container without a terminal
// or stdin (POST /v1/environments/{id}/exec), writing its stdout and
// stderr to the writers (nil discards) as the server streams them, and
// returns how it ended: its exit code, or the signal that killed it, and
// why. An exec is not idempotent, so the request is sent once and never
// retried; it lasts as long as the command (ctx and req.Timeout bound it).
// A refusal (the environment not running, a bad request) and a failure of
// the server during the session are an *Error carrying the API's problem.
func (c *Client) Exec(ctx context.Context, envID string, req apiv1.ExecRequest, stdout, stderr io.Writer) (apiv1.ExecExit, error) {
	path := execPath(envID)
	body, err := json.Marshal(req)
	if err != nil {
		return apiv1.ExecExit{}, fmt.Errorf("encoding POST %s request: %w", path, err)
	}
	out := outputWriters{stdout: orDiscard(stdout), stderr: orDiscard(stderr)}
	var exit *apiv1.ExecExit
	var data []byte // the output frames' bytes, reused: a writer keeps none
	err = c.stream(ctx, streamRequest{method: http.MethodPost, path: path, body: body, accept: mediaNDJSON, follow: true}, func(line []byte) error {
		var f apiv1.ExecFrame
		var derr error
		if data, derr = decodeExecFrame(line, &f, data); derr != nil {
			return &decodeError{derr}
		}
		switch {
		case f.Exit != nil:
			exit = f.Exit
		case f.Error != nil:
			return problemError(http.MethodPost, path, "", *f.Error)
		case exit == nil:
			return out.write(f.Stream, f.Data)
		}
		return nil
	})
	switch {
	case err != nil:
		return apiv1.ExecExit{}, err
	case exit != nil:
		return *exit, nil
	case ctx.Err() != nil:
		return apiv1.ExecExit{}, fmt.Errorf("POST %s: the session was cut before the command exited: %w", path, ctx.Err())
	}
	return apiv1.ExecExit{}, fmt.Errorf("POST %s: the answer ended before the command's exit status", path)
}

// outputPrefixes begin an output frame as the server writes it (the
// fields of apiv1.ExecFrame in order), by stream.
var outputPrefixes = [...]struct {
	stream string
	prefix []byte
}{
	{apiv1.StreamStdout, []byte(`{"stream":"` + apiv1.StreamStdout + `","data":"`)},
	{apiv1.StreamStderr, []byte(`{"stream":"` + apiv1.StreamStderr + `","data":"`)},
}

// decodeExecFrame decodes one line of an exec answer into f. An output
// frame, nearly every line of a large answer, is read without
// encoding/json, whose validation and unquoting of the base64 cost four
// times its decoding (BenchmarkExecThroughput's profile); its bytes go in
// buf, grown as needed and returned. Any other line, or one that is not
// exactly such a frame, goes through json.Unmarshal, so both read a line
// alike (FuzzDecodeExecFrame).
func decodeExecFrame(line []byte, f *apiv1.ExecFrame, buf []byte) ([]byte, error) {
	for _, o := range outputPrefixes {
		rest, ok := bytes.CutPrefix(line, o.prefix)
		if !ok {
			continue
		}
		// base64 skips line ends, which a JSON string may not hold.
		b64, ok := bytes.CutSuffix(bytes.TrimRight(rest, "\r\n"), []byte(`"}`))
		if !ok || len(b64) == 0 || bytes.ContainsAny(b64, "\r\n") {
			break
		}
		if n := base64.StdEncoding.DecodedLen(len(b64)); cap(buf) < n {
			buf = make([]byte, n)
		}
		n, err := base64.StdEncoding.Decode(buf[:cap(buf)], b64)
		if err != nil {
			break
		}
		f.Stream, f.Data = o.stream, buf[:n]
		return buf, nil
	}
	return buf, json.Unmarshal(line, f)
}

// ErrSessionClosed is Wait's error when the client closed the session
// (Close, or Attach's ctx ending) before the command exited: the command
// got SIGHUP, and no exit status came back.
var ErrSessionClosed = errors.New("the exec session was closed before the command exited")

// ExecSession is a command running in an environment's container over a
// WebSocket (see Attach): write its stdin, resize its terminal, signal it,
// and Wait for its exit. Its methods are safe for concurrent use.
type ExecSession struct {
	conn *websocket.Conn
	ctx  context.Context
	out  outputWriters
	// method and path name the session's request in errors.
	method, path, requestID string

	done     chan struct{} // closed when the session has ended
	stopCtx  func() bool   // stops closing the socket when ctx ends
	mu       sync.Mutex
	exit     *apiv1.ExecExit
	err      error
	closedBy bool // Close (or ctx) ended the session
}

// Attach starts req.Command in the environment's container over the
// WebSocket of GET /v1/environments/{id}/exec: with req.TTY it gets a
// terminal of req.Size (its output then all comes to stdout), without one
// pipes. Output goes to the writers (nil discards) as it comes; the
// command's stdin is what the session is written. ctx bounds the handshake
// and the session: when it ends, the socket is closed and the command gets
// SIGHUP. A refusal (the handshake answered with a problem) is an *Error;
// like Exec, Attach is never retried.
func (c *Client) Attach(ctx context.Context, envID string, req apiv1.ExecRequest, stdout, stderr io.Writer) (*ExecSession, error) {
	path := execPath(envID)
	target, err := c.base.Parse(c.base.EscapedPath() + path + "?" + execQuery(req).Encode())
	if err != nil {
		return nil, fmt.Errorf("building GET %s request: %w", path, err)
	}
	h, _, requestID := c.headers(request{method: http.MethodGet, path: path}, false)
	redactingLogger{next: c.logger, secret: c.token}.Debug("performing request", "method", http.MethodGet, "url", target.Redacted(), "request_id", requestID, "websocket", true)
	handshake, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	conn, res, err := websocket.Dial(handshake, target.String(), &websocket.DialOptions{
		HTTPClient:   c.http,
		HTTPHeader:   h,
		Subprotocols: []string{apiv1.ExecSubprotocol},
	})
	if err != nil {
		if res != nil && res.StatusCode != http.StatusSwitchingProtocols {
			// Every refusal comes before the upgrade, as a problem; Dial
			// keeps the first KiB of its body.
			if rid := res.Header.Get(apiv1.HeaderRequestID); rid != "" {
				requestID = rid
			}
			body, _ := io.ReadAll(res.Body)
			return nil, newError(http.MethodGet, path, res.StatusCode, requestID, body)
		}
		return nil, fmt.Errorf("GET %s (request id %s): %w", target.Redacted(), requestID, err)
	}
	if got := conn.Subprotocol(); got != apiv1.ExecSubprotocol {
		conn.Close(websocket.StatusProtocolError, "subprotocol "+apiv1.ExecSubprotocol+" expected")
		return nil, fmt.Errorf("GET %s (request id %s): the server accepted the WebSocket with subprotocol %q, not %s", path, requestID, got, apiv1.ExecSubprotocol)
	}
	conn.SetReadLimit(maxExecMessage)
	s := &ExecSession{
		conn: conn, ctx: ctx, out: outputWriters{stdout: orDiscard(stdout), stderr: orDiscard(stderr)},
		method: http.MethodGet, path: path, requestID: requestID, done: make(chan struct{}),
	}
	s.stopCtx = context.AfterFunc(ctx, func() { s.close() })
	go s.read()
	return s, nil
}

// Write sends p to the command's stdin, in messages the server reads
// whole. After the session ended it fails.
func (s *ExecSession) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxStdinMessage)]
		msg := make([]byte, 1+len(chunk))
		msg[0] = apiv1.ExecChannelStdin
		copy(msg[1:], chunk)
		if err := s.conn.Write(s.ctx, websocket.MessageBinary, msg); err != nil {
			return n, s.sendError("writing stdin", err)
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// CloseStdin closes the command's stdin (the server closes its end of the
// pipe): a command reading it to the end, such as cat, then exits. With a
// terminal, write ^D (0x04) instead, as a person would.
func (s *ExecSession) CloseStdin() error {
	return s.control(apiv1.ExecControl{Type: apiv1.ExecControlEOF})
}

// Resize gives the command's terminal a new size (with TTY).
func (s *ExecSession) Resize(size apiv1.TerminalSize) error {
	if fe := size.Validate("size"); len(fe) > 0 {
		return fmt.Errorf("resize: %s %s", fe[0].Field, fe[0].Message)
	}
	return s.control(apiv1.ExecControl{Type: apiv1.ExecControlResize, Size: &size})
}

// Signal sends the command a signal, by name without "SIG" (one of
// apiv1.ExecSignals: "INT", "TERM", "KILL", ...).
func (s *ExecSession) Signal(name string) error {
	if !slices.Contains(apiv1.ExecSignals, name) {
		return fmt.Errorf("signal %q: must be one of %v", name, apiv1.ExecSignals)
	}
	return s.control(apiv1.ExecControl{Type: apiv1.ExecControlSignal, Signal: name})
}

// Wait blocks until the session has ended and returns how the command
// ended. The error is an *Error when the server failed the session,
// ErrSessionClosed when the client closed it first, or the connection's
// failure when it broke before an exit status came.
func (s *ExecSession) Wait() (apiv1.ExecExit, error) {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exit != nil {
		return *s.exit, nil
	}
	return apiv1.ExecExit{}, s.err
}

// Close ends the session from the client's side: the server gives the
// command SIGHUP (then SIGKILL), and Wait returns ErrSessionClosed unless
// the command had already exited. It returns when the session has ended.
func (s *ExecSession) Close() error {
	s.close()
	<-s.done
	return nil
}

// close starts the closing handshake, once the session knows it is ours.
func (s *ExecSession) close() {
	s.mu.Lock()
	s.closedBy = s.exit == nil && s.err == nil
	s.mu.Unlock()
	go s.conn.Close(websocket.StatusNormalClosure, "the client ended the session")
}

// control sends one control message.
func (s *ExecSession) control(ctl apiv1.ExecControl) error {
	msg, err := json.Marshal(ctl)
	if err != nil {
		return err
	}
	if err := s.conn.Write(s.ctx, websocket.MessageText, msg); err != nil {
		return s.sendError("sending "+ctl.Type, err)
	}
	return nil
}

// sendError says why a message could not be sent: the session ended, or
// the connection broke.
func (s *ExecSession) sendError(what string, err error) error {
	select {
	case <-s.done:
		return fmt.Errorf("%s: the exec session has ended", what)
	default:
		return fmt.Errorf("%s %s %s (request id %s): %w", what, s.method, s.path, s.requestID, err)
	}
}

// read takes the server's messages until the socket closes: output to
// the writers, then the exit (or error) control that ends the session.
func (s *ExecSession) read() {
	defer close(s.done)
	defer s.stopCtx()
	defer func() { _ = s.conn.CloseNow() }()
	// ctx ending closes the socket with a handshake (Attach), rather than
	// cutting the read.
	ctx := context.WithoutCancel(s.ctx)
	for {
		typ, msg, err := s.conn.Read(ctx)
		if err != nil {
			s.end(nil, s.readError(err))
			return
		}
		switch typ {
		case websocket.MessageBinary:
			if len(msg) == 0 {
				continue
			}
			stream := ""
			switch msg[0] {
			case apiv1.ExecChannelStdout:
				stream = apiv1.StreamStdout
			case apiv1.ExecChannelStderr:
				stream = apiv1.StreamStderr
			}
			if err := s.out.write(stream, msg[1:]); err != nil {
				s.end(nil, err)
				s.conn.Close(websocket.StatusNormalClosure, "the client cannot write the output")
				return
			}
		case websocket.MessageText:
			var ctl apiv1.ExecControl
			if err := json.Unmarshal(msg, &ctl); err != nil {
				s.end(nil, fmt.Errorf("%s %s (request id %s): decoding a control message: %w", s.method, s.path, s.requestID, err))
				s.conn.Close(websocket.StatusProtocolError, "a control message that is not JSON")
				return
			}
			switch {
			case ctl.Type == apiv1.ExecControlExit && ctl.Exit != nil:
				s.end(ctl.Exit, nil)
			case ctl.Type == apiv1.ExecControlError && ctl.Error != nil:
				s.end(nil, problemError(s.method, s.path, s.requestID, *ctl.Error))
			}
			// Other types are a later protocol's: ignored, as unknown
			// channels are, so an older client keeps working.
		}
	}
}

// end records how the session ended; the first outcome stays.
func (s *ExecSession) end(exit *apiv1.ExecExit, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exit == nil && s.err == nil {
		s.exit, s.err = exit, err
	}
}

// readError is the session's error when the socket closed before an exit.
func (s *ExecSession) readError(err error) error {
	s.mu.Lock()
	closedBy := s.closedBy
	s.mu.Unlock()
	if closedBy {
		return ErrSessionClosed
	}
	return fmt.Errorf("%s %s (request id %s): the session ended before the command's exit status: %w", s.method, s.path, s.requestID, err)
}

// outputWriters are where a session's output goes.
type outputWriters struct{ stdout, stderr io.Writer }

// write sends data of stream to its writer; another stream is a later
// protocol's, and is dropped.
func (o outputWriters) write(stream string, data []byte) error {
	w := o.stdout
	switch stream {
	case apiv1.StreamStdout:
	case apiv1.StreamStderr:
		w = o.stderr
	default:
		return nil
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("writing the command's %s: %w", stream, err)
	}
	return nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func execPath(envID string) string { return "/v1/environments/" + escape(envID) + "/exec" }

// execQuery is req as the query of the WebSocket handshake, which has no
// body: command and env repeated, in order (env sorted by name).
func execQuery(req apiv1.ExecRequest) url.Values {
	q := url.Values{"command": req.Command}
	for _, k := range slices.Sorted(maps.Keys(req.Env)) {
		q.Add("env", k+"="+req.Env[k])
	}
	if req.WorkingDir != "" {
		q.Set("working_dir", req.WorkingDir)
	}
	if req.UID != nil {
		q.Set("uid", strconv.FormatUint(uint64(*req.UID), 10))
	}
	if req.GID != nil {
		q.Set("gid", strconv.FormatUint(uint64(*req.GID), 10))
	}
	if req.TTY {
		q.Set("tty", "true")
	}
	if req.Size != nil {
		q.Set("rows", strconv.Itoa(int(req.Size.Rows)))
		q.Set("cols", strconv.Itoa(int(req.Size.Cols)))
	}
	if req.Timeout != "" {
		q.Set("timeout", req.Timeout)
	}
	return q
}
