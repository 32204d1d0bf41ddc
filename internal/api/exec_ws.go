package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// maxClientMessage bounds a message from an exec client: 32 KiB of stdin
// and its channel byte, or a control message.
const maxClientMessage = 32<<10 + 1

// execAttach answers GET /v1/environments/{id}/exec: the request in the
// query, then an upgrade to a WebSocket of apiv1.ExecSubprotocol carrying
// stdin, stdout and stderr (binary messages, by channel), and resizes,
// signals and stdin's end from the client and the session's end from the
// server (text messages, apiv1.ExecControl). Every refusal comes before
// the upgrade, as an ordinary problem; the command starts before it too,
// so that a command the image does not have is a 400, not a message.
func (a *API) execAttach(w http.ResponseWriter, r *http.Request) error {
	in, err := execQuery(r)
	if err != nil {
		return a.refuseExec(r, nil, err)
	}
	if err := checkUpgrade(r); err != nil {
		return a.refuseExec(r, &in, err)
	}
	stdin, stdinW := io.Pipe()
	out := newExecOutput()
	spec := execSpec(in)
	spec.Stdin, spec.Stdout = stdin, out.writer(apiv1.ExecChannelStdout)
	if !in.TTY {
		spec.Stderr = out.writer(apiv1.ExecChannelStderr)
	}
	s, err := a.openSession(r, in, http.StatusSwitchingProtocols, spec, out)
	if err != nil {
		out.start(nil)
		stdinW.Close()
		return err
	}
	// The origin and the handshake were checked above: Accept fails only
	// when the connection does.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{apiv1.ExecSubprotocol}})
	if err != nil {
		out.start(nil)
		stdinW.Close()
		gone := make(chan struct{})
		close(gone)
		_, _ = s.run(execClient{gone: gone, err: func() error { return err }, abort: func() {}})
		return nil
	}
	conn.SetReadLimit(maxClientMessage)
	// Output waits for a client that reads slowly; one that stopped
	// reading loses its connection a grace after its session ends.
	outCtx, cancelOut := context.WithCancel(context.Background())
	defer cancelOut()
	out.start(func(ch byte, p []byte) error {
		msg := make([]byte, 1+len(p))
		msg[0] = ch
		copy(msg[1:], p)
		return conn.Write(outCtx, websocket.MessageBinary, msg)
	})
	c := &wsClient{s: s, conn: conn, stdin: stdinW, gone: make(chan struct{})}
	go c.read() //nolint:gosec // G118: the session outlives the request, whose context ends with the upgrade
	pinging, stopPings := context.WithCancel(context.Background())
	pinged := make(chan struct{})
	go c.keepAlive(pinging, pinged)
	defer func() { stopPings(); <-pinged }()
	var grace *time.Timer
	exit, failure := s.run(execClient{gone: c.gone, err: func() error { return c.err }, abort: func() {
		stdinW.Close()
		grace = time.AfterFunc(execOutputGrace, cancelOut)
	}})
	// The command's output is all written: only the last message is left.
	grace.Stop()
	if exit.Reason == apiv1.ExecClosed && failure == nil {
		// The client went away: there is nobody to tell.
		_ = conn.CloseNow()
		<-c.gone
		return nil
	}
	last := apiv1.ExecControl{Type: apiv1.ExecControlExit, Exit: &exit}
	if failure != nil {
		p, _ := problemOf(r, failure)
		last = apiv1.ExecControl{Type: apiv1.ExecControlError, Error: &p}
	}
	out.finish(func() {
		ctx, cancel := context.WithTimeout(context.Background(), execOutputGrace)
		defer cancel()
		msg, _ := json.Marshal(last)
		_ = conn.Write(ctx, websocket.MessageText, msg)
	})
	_ = conn.Close(websocket.StatusNormalClosure, "")
	<-c.gone
	return nil
}

// checkUpgrade refuses, before anything starts, what websocket.Accept
// would: a request that is not a WebSocket handshake of the exec
// subprotocol, or one from a web page of another origin.
func checkUpgrade(r *http.Request) error {
	switch {
	case !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket"):
		return problem.Field(problem.Malformed, "Upgrade", "must be websocket, with Connection: Upgrade: GET /v1/environments/{id}/exec is a WebSocket (POST it for a command without a terminal or stdin)")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return problem.Field(problem.Malformed, "Sec-WebSocket-Version", "must be 13")
	case len(r.Header.Values("Sec-WebSocket-Key")) != 1:
		return problem.Field(problem.Malformed, "Sec-WebSocket-Key", "must be given once")
	case !headerHas(r.Header, "Sec-WebSocket-Protocol", apiv1.ExecSubprotocol):
		return problem.Field(problem.Malformed, "Sec-WebSocket-Protocol", "must offer "+apiv1.ExecSubprotocol)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if u, err := url.Parse(origin); err != nil || !strings.EqualFold(u.Host, r.Host) {
			return problem.New(problem.Forbidden, "a WebSocket from a page of another origin is refused")
		}
	}
	return nil
}

// headerHas reports whether a header's comma-separated tokens hold
// token, in any case.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// wsClient reads what the client of a WebSocket session sends.
type wsClient struct {
	s     *execSession
	conn  *websocket.Conn
	stdin *io.PipeWriter
	// gone is closed when the connection ends or the client broke the
	// protocol; err is then the problem it broke it with.
	gone chan struct{}
	err  error
}

func (c *wsClient) read() {
	defer close(c.gone)
	for {
		typ, msg, err := c.conn.Read(context.Background())
		if err != nil {
			return
		}
		if c.err = c.handle(typ, msg); c.err != nil {
			return
		}
	}
}

// Pings keep proxies from cutting an idle shell (many do after a minute),
// and find a client that vanished without closing its connection: it has
// pingTimeout to answer each, sent every pingInterval, or the session ends
// as if it had closed it.
const (
	pingInterval = 30 * time.Second
	pingTimeout  = 15 * time.Second
)

// keepAlive pings the client until ctx ends, and closes the connection
// when a ping goes unanswered; done is closed when it returns.
func (c *wsClient) keepAlive(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := c.conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			_ = c.conn.CloseNow()
			return
		}
	}
}

// handle takes one message: stdin (channel 0), a resize, a signal or the
// end of stdin. Anything else breaks the protocol and ends the session.
func (c *wsClient) handle(typ websocket.MessageType, msg []byte) error {
	if typ == websocket.MessageBinary {
		if len(msg) == 0 || msg[0] != apiv1.ExecChannelStdin {
			return problem.New(problem.Malformed, "a binary message must start with channel 0 (stdin); 1 and 2 are the server's")
		}
		// Stdin after its end (eof) goes nowhere and counts for nothing.
		n, _ := c.stdin.Write(msg[1:])
		c.s.bytesIn.Add(int64(n))
		return nil
	}
	var ctl apiv1.ExecControl
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ctl); err != nil {
		return problem.New(problem.Malformed, "a text message must be an exec control message (JSON with type resize, signal or eof)")
	}
	switch ctl.Type {
	case apiv1.ExecControlResize:
		switch {
		case !c.s.req.TTY:
			return problem.Field(problem.Validation, "size", "needs tty: only a terminal has a size")
		case ctl.Size == nil:
			return problem.Field(problem.Validation, "size", "is required with type resize")
		}
		if fe := ctl.Size.Validate("size"); fe != nil {
			return problem.Invalid(fe)
		}
		return c.s.exec.Resize(*ctl.Size)
	case apiv1.ExecControlSignal:
		if !slices.Contains(apiv1.ExecSignals, ctl.Signal) {
			return problem.Field(problem.Validation, "signal", "must be one of "+strings.Join(apiv1.ExecSignals, ", "))
		}
		// The command may have exited already: nothing to tell then.
		_ = c.s.exec.Signal(unix.SignalNum("SIG" + ctl.Signal))
		return nil
	case apiv1.ExecControlEOF:
		return c.stdin.Close()
	}
	return problem.Field(problem.Validation, "type", "must be resize, signal or eof")
}
