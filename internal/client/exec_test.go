package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// These tests run the client against a server of their own that speaks
// the exec protocol of internal/apiv1 on a real listener (with the real
// coder/websocket), to reach what the real server does rarely: a session
// that fails midway, an answer cut short, a server that cannot keep up.
// cmd/isolationd's tests run both transports against the real isolationd.

const execToken = "isot_exec-protocol-test-token"

// execServer answers POST and GET (WebSocket) /v1/environments/{id}/exec
// by its command's first word, and records what it was asked.
type execServer struct {
	*httptest.Server
	t      *testing.T
	mu     sync.Mutex
	posts  []*http.Request
	bodies []apiv1.ExecRequest
	// closed learns of every WebSocket session the client closed.
	closed chan struct{}
}

func newExecServer(t *testing.T, tls bool) *execServer {
	t.Helper()
	s := &execServer{t: t, closed: make(chan struct{}, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/environments/{id}/exec", s.post)
	mux.HandleFunc("GET /v1/environments/{id}/exec", s.attach)
	if tls {
		s.Server = httptest.NewTLSServer(mux)
	} else {
		s.Server = httptest.NewServer(mux)
	}
	t.Cleanup(s.Close)
	return s
}

// client is a client of the server; over TLS it trusts the server's
// certificate through CACertPEM, as a user's configuration would.
func (s *execServer) client(t *testing.T) *client.Client {
	t.Helper()
	cfg := client.Config{Endpoint: s.URL, Token: execToken, UserAgent: "exec-test/1.0", RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond}
	if cert := s.Certificate(); cert != nil {
		cfg.CACertPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", apiv1.MediaProblem)
	w.Header().Set(apiv1.HeaderRequestID, "req-refused")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiv1.Problem{Type: "https://isolation.dev/problems/x", Title: http.StatusText(status), Status: status, Detail: detail})
}

func (s *execServer) post(w http.ResponseWriter, r *http.Request) {
	var req apiv1.ExecRequest
	err := json.NewDecoder(r.Body).Decode(&req)
	s.mu.Lock()
	s.posts = append(s.posts, r)
	s.bodies = append(s.bodies, req)
	s.mu.Unlock()
	if err != nil || r.Header.Get("Authorization") != "Bearer "+execToken {
		writeProblem(w, http.StatusBadRequest, "a bad request or token")
		return
	}
	frame := func(f apiv1.ExecFrame) {
		_ = json.NewEncoder(w).Encode(f)
		w.(http.Flusher).Flush()
	}
	switch req.Command[0] {
	case "pending":
		writeProblem(w, http.StatusConflict, "environment "+r.PathValue("id")+" is pending")
		return
	case "busy":
		writeProblem(w, http.StatusServiceUnavailable, "the store is read-only")
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set(apiv1.HeaderRequestID, "req-exec")
	frame(apiv1.ExecFrame{Stream: apiv1.StreamStdout, Data: []byte("hi\n")})
	frame(apiv1.ExecFrame{Stream: apiv1.StreamStderr, Data: []byte("oops\n")})
	switch req.Command[0] {
	case "broken":
		frame(apiv1.ExecFrame{Error: &apiv1.Problem{Type: "https://isolation.dev/problems/internal", Title: "Internal Server Error", Status: 500, Detail: "the runtime lost the process"}})
	case "cut":
	default:
		frame(apiv1.ExecFrame{Exit: &apiv1.ExecExit{SessionID: "ses_1", ExitCode: 3, Reason: apiv1.ExecExited, BytesOut: 8}})
	}
}

// attach upgrades and runs the request's command as the protocol's peer:
// cat echoes stdin to stdout and to stderr upper-cased, says each resize,
// and exits on eof (0) or a signal (128+2 for INT); big sends one message
// of 40 KiB; fail fails the session; refuse is refused before the upgrade.
func (s *execServer) attach(w http.ResponseWriter, r *http.Request) {
	req, err := parseExecQuery(r.URL.Query())
	if err != nil || r.Header.Get("Authorization") != "Bearer "+execToken {
		writeProblem(w, http.StatusBadRequest, fmt.Sprint("a bad query or token: ", err))
		return
	}
	if req.Command[0] == "refuse" {
		writeProblem(w, http.StatusTooManyRequests, "token tok_1 has 32 exec sessions open, the limit (--exec-sessions-per-token)")
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{apiv1.ExecSubprotocol}})
	if err != nil {
		return
	}
	defer func() { _ = conn.CloseNow() }()
	ctx := r.Context()
	send := func(ch byte, data []byte) error {
		return conn.Write(ctx, websocket.MessageBinary, append([]byte{ch}, data...))
	}
	end := func(ctl apiv1.ExecControl) {
		msg, _ := json.Marshal(ctl)
		if conn.Write(ctx, websocket.MessageText, msg) == nil {
			conn.Close(websocket.StatusNormalClosure, "")
		}
	}
	// The request as the server understood it, for the test to compare.
	got, _ := json.Marshal(req)
	if err := send(apiv1.ExecChannelStdout, append(got, '\n')); err != nil {
		return
	}
	switch req.Command[0] {
	case "big":
		if send(apiv1.ExecChannelStdout, bytes.Repeat([]byte("x"), 40<<10)) == nil {
			end(apiv1.ExecControl{Type: apiv1.ExecControlExit, Exit: &apiv1.ExecExit{SessionID: "ses_2", Reason: apiv1.ExecExited}})
		}
		return
	case "fail":
		end(apiv1.ExecControl{Type: apiv1.ExecControlError, Error: &apiv1.Problem{Type: "https://isolation.dev/problems/internal", Title: "Internal Server Error", Status: 500, Detail: "the runtime lost the process", RequestID: "req-ws"}})
		return
	}
	var in int64
	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				s.closed <- struct{}{}
			}
			return
		}
		if typ == websocket.MessageBinary {
			if len(msg) == 0 || msg[0] != apiv1.ExecChannelStdin {
				end(apiv1.ExecControl{Type: apiv1.ExecControlError, Error: &apiv1.Problem{Status: 400, Title: "Bad Request", Detail: "not stdin"}})
				return
			}
			in += int64(len(msg) - 1)
			if send(apiv1.ExecChannelStdout, msg[1:]) != nil || send(apiv1.ExecChannelStderr, bytes.ToUpper(msg[1:])) != nil {
				return
			}
			continue
		}
		var ctl apiv1.ExecControl
		if json.Unmarshal(msg, &ctl) != nil {
			return
		}
		switch ctl.Type {
		case apiv1.ExecControlResize:
			if send(apiv1.ExecChannelStdout, fmt.Appendf(nil, "size %d %d\n", ctl.Size.Rows, ctl.Size.Cols)) != nil {
				return
			}
		case apiv1.ExecControlEOF:
			end(apiv1.ExecControl{Type: apiv1.ExecControlExit, Exit: &apiv1.ExecExit{SessionID: "ses_3", Reason: apiv1.ExecExited, BytesIn: in, BytesOut: 2 * in}})
			return
		case apiv1.ExecControlSignal:
			end(apiv1.ExecControl{Type: apiv1.ExecControlExit, Exit: &apiv1.ExecExit{SessionID: "ses_3", ExitCode: 130, Signal: ctl.Signal, Reason: apiv1.ExecExited}})
			return
		}
	}
}

// parseExecQuery reads an exec request from the WebSocket's query, as
// ARCH11's protocol has it.
func parseExecQuery(q url.Values) (apiv1.ExecRequest, error) {
	req := apiv1.ExecRequest{Command: q["command"], WorkingDir: q.Get("working_dir"), Timeout: q.Get("timeout"), TTY: q.Get("tty") == "true"}
	for _, kv := range q["env"] {
		k, v, _ := strings.Cut(kv, "=")
		if req.Env == nil {
			req.Env = map[string]string{}
		}
		req.Env[k] = v
	}
	for name, dst := range map[string]**uint32{"uid": &req.UID, "gid": &req.GID} {
		if s := q.Get(name); s != "" {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return req, err
			}
			v := uint32(n)
			*dst = &v
		}
	}
	if q.Has("rows") {
		rows, err1 := strconv.ParseUint(q.Get("rows"), 10, 16)
		cols, err2 := strconv.ParseUint(q.Get("cols"), 10, 16)
		if err := errors.Join(err1, err2); err != nil {
			return req, err
		}
		req.Size = &apiv1.TerminalSize{Rows: uint16(rows), Cols: uint16(cols)}
	}
	if len(req.Command) == 0 {
		return req, errors.New("no command")
	}
	return req, nil
}

// output is a writer the session's reader writes while the test waits
// for what it expects.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{}
}

func newOutput() *output { return &output{written: make(chan struct{}, 1)} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	select {
	case o.written <- struct{}{}:
	default:
	}
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output ends with want.
func (o *output) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.HasSuffix(o.String(), want) {
		select {
		case <-o.written:
		case <-deadline:
			t.Fatalf("output %q after 10s; want it to end with %q", o.String(), want)
		}
	}
}

func uid(n uint32) *uint32 { return &n }

func TestExec_WritesTheOutputAsItComesAndReturnsTheExit(t *testing.T) {
	t.Parallel()
	s := newExecServer(t, false)
	req := apiv1.ExecRequest{Command: []string{"sh", "-c", "echo hi; echo oops >&2; exit 3"}, Env: map[string]string{"A": "1"}, UID: uid(1000), Timeout: "30s"}
	var stdout, stderr bytes.Buffer
	exit, err := s.client(t).Exec(t.Context(), "env_a/b", req, &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "hi\n" || stderr.String() != "oops\n" || exit.ExitCode != 3 || exit.Reason != apiv1.ExecExited || exit.SessionID != "ses_1" {
		t.Fatalf("stdout %q, stderr %q, exit %+v; want hi, oops and exit code 3", stdout.String(), stderr.String(), exit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.posts[0]
	if r.URL.EscapedPath() != "/v1/environments/env_a%2Fb/exec" {
		t.Errorf("path %s; want the id escaped as one segment", r.URL.EscapedPath())
	}
	for h, want := range map[string]string{"Authorization": "Bearer " + execToken, "User-Agent": "exec-test/1.0", "Content-Type": apiv1.MediaJSON, apiv1.HeaderIdempotencyKey: ""} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("header %s %q; want %q", h, got, want)
		}
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
		t.Errorf("Accept %q; want NDJSON", r.Header.Get("Accept"))
	}
	if diff := cmp.Diff(req, s.bodies[0]); diff != "" {
		t.Errorf("the server got another request (-sent +got):\n%s", diff)
	}
}

func TestExec_ARefusalIsTheAPIProblemAndIsNeverRetried(t *testing.T) {
	t.Parallel()
	s := newExecServer(t, false)
	c := s.client(t)
	for _, tc := range []struct {
		command string
		status  int
		says    string
	}{
		{"pending", 409, "environment env_1 is pending"},
		// A 503 would be retried by any other call: an exec runs a
		// command, so it is sent once.
		{"busy", 503, "the store is read-only"},
	} {
		_, err := c.Exec(t.Context(), "env_1", apiv1.ExecRequest{Command: []string{tc.command}}, nil, nil)
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status || !strings.Contains(err.Error(), tc.says) || apiErr.RequestID != "req-refused" {
			t.Errorf("%s: error %v; want a %d *client.Error saying %q with the request id", tc.command, err, tc.status, tc.says)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.posts) != 2 {
		t.Errorf("the server got %d requests for 2 execs; want each sent once", len(s.posts))
	}
}

func TestExec_AnErrorLineIsTheProblemAfterTheOutputBeforeIt(t *testing.T) {
	t.Parallel()
	s := newExecServer(t, false)
	var stdout bytes.Buffer
	_, err := s.client(t).Exec(t.Context(), "env_1", apiv1.ExecRequest{Command: []string{"broken"}}, &stdout, nil)
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || !strings.Contains(err.Error(), "the runtime lost the process") || apiErr.RequestID != "req-exec" {
		t.Fatalf("error %v; want a 500 *client.Error with the problem's detail and the answer's request id", err)
	}
	if stdout.String() != "hi\n" {
		t.Errorf("stdout %q; want the output that came before the error", stdout.String())
	}
}

func TestExec_AnAnswerEndingWithoutAnExitIsAnError(t *testing.T) {
	t.Parallel()
	s := newExecServer(t, false)
	_, err := s.client(t).Exec(t.Context(), "env_1", apiv1.ExecRequest{Command: []string{"cut"}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "ended before the command's exit status") {
		t.Fatalf("error %v; want one saying the answer ended before the exit", err)
	}
}

func TestAttach_StreamsStdinBothWaysResizesAndEndsWithTheExit(t *testing.T) {
	t.Parallel()
	// Over TLS: the handshake uses the client's CA and token.
	s := newExecServer(t, true)
	req := apiv1.ExecRequest{
		Command: []string{"cat", "-"}, Env: map[string]string{"B": "2", "A": "x=y"}, WorkingDir: "/srv",
		UID: uid(0), GID: uid(10), TTY: true, Size: &apiv1.TerminalSize{Rows: 30, Cols: 100}, Timeout: "1m",
	}
	stdout, stderr := newOutput(), newOutput()
	sess, err := s.client(t).Attach(t.Context(), "env_1", req, stdout, stderr)
	if err != nil {
		t.Fatal(err)
	}
	stdout.waitFor(t, "\n")
	var got apiv1.ExecRequest
	if err := json.Unmarshal([]byte(stdout.String()), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(req, got); diff != "" {
		t.Errorf("the server read another request from the query (-sent +got):\n%s", diff)
	}
	if _, err := sess.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	stdout.waitFor(t, "hello\n")
	stderr.waitFor(t, "HELLO\n")
	if err := sess.Resize(apiv1.TerminalSize{Rows: 50, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	stdout.waitFor(t, "size 50 120\n")
	if err := sess.Resize(apiv1.TerminalSize{Rows: 0, Cols: 120}); err == nil || !strings.Contains(err.Error(), "size.rows") {
		t.Errorf("resize to 0 rows: %v; want it refused naming size.rows", err)
	}
	if err := sess.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	exit, err := sess.Wait()
	if err != nil || exit.BytesIn != 6 || exit.Reason != apiv1.ExecExited {
		t.Fatalf("exit %+v, %v; want the exit after eof, 6 bytes in", exit, err)
	}
	if _, err := sess.Write([]byte("late")); err == nil || !strings.Contains(err.Error(), "has ended") {
		t.Errorf("writing after the exit: %v; want an error saying the session has ended", err)
	}
}

func TestAttach_StdinIsSentInMessagesTheServerReadsAndBigOutputIsRead(t *testing.T) {
	t.Parallel()
	s := newExecServer(t, false)
	c := s.client(t)
	// The server keeps coder/websocket's default read limit of 32 KiB.
	stdout := newOutput()
	sess, err := c.Attach(t.Context(), "env_1", apiv1.ExecRequest{Command: []string{"cat"}}, stdout, nil)
	if err != nil {
		t.Fatal(err)
	}
	stdout.waitFor(t, "\n")
	in := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB
	if n, err := sess.Write(in); err != nil || n != len(in) {
		t.Fatalf("write %d of %d: %v", n, len(in), err)
	}
	stdout.waitFor(t, "cdef")
	if err := sess.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if exit, err := sess.Wait(); err != nil || exit.BytesIn != int64(len(in)) {
		t.Fatalf("exit %+v, %v; want all %d bytes in", exit, err, len(in))
	}
	if !strings.HasSuffix(stdout.String(), string(in)) {
		t.Errorf("the echo lost bytes: %d of stdout for %d sent", len(stdout.String()), len(in))
	}

	// The server's reads are up to 32 KiB, a message of more with its
	// channel byte.
	big := newOutput()
	sess, err = c.Attach(t.Context(), "env_1", apiv1.ExecRequest{Command: []string{"big"}}, big, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Wait(); err != nil || !strings.HasSuffix(big.String(), strings.Repeat("x", 40<<10)) {
		t.Fatalf("a 40 KiB message: %v, %d bytes of stdout", err, len(big.String()))
	}
}

func TestAttach_ASignalEndsTheCommandWithItsExit(t *testing.T) {
	t.Parallel()
	s := newExecServer(t, false)
	sess, err := s.client(t).Attach(t.Context(), "env_1", apiv1.ExecRequest{Command: []string{"cat"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Signal("SIGINT"); err == nil {
		t.Error("Signal(SIGINT) accepted; want the name without SIG refused")
	}
	if err := sess.Signal("INT"); err != nil {
		t.Fatal(err)
	}
	if exit, err := sess.Wait(); err != nil || exit.ExitCode != 130 || exit.Signal != "INT" {
		t.Fatalf("exit %+v, %v; want 130 by INT", exit, err)
	}
}

func TestAttach_ClosingOrCancellingEndsTheSessionOnTheServer(t *testing.T) {
	t.Parallel()
	s := newExecServer(t, false)
	c := s.client(t)
	for _, how := range []string{"Close", "ctx"} {
		ctx, cancel := context.WithCancel(t.Context())
		stdout := newOutput()
		sess, err := c.Attach(ctx, "env_1", apiv1.ExecRequest{Command: []string{"cat"}}, stdout, nil)
		if err != nil {
			t.Fatal(err)
		}
		stdout.waitFor(t, "\n")
		if how == "Close" {
			sess.Close()
		} else {
			cancel()
		}
		if _, err := sess.Wait(); !errors.Is(err, client.ErrSessionClosed) {
			t.Errorf("%s: Wait: %v; want ErrSessionClosed", how, err)
		}
		select {
		case <-s.closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the server saw no close in 10s", how)
		}
		cancel()
	}
}

func TestAttach_ARefusalOrAFailedSessionIsTheAPIProblem(t *testing.T) {
	t.Parallel()
	s := newExecServer(t, false)
	c := s.client(t)
	_, err := c.Attach(t.Context(), "env_1", apiv1.ExecRequest{Command: []string{"refuse"}}, nil, nil)
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.RequestID != "req-refused" || !strings.Contains(err.Error(), "the limit (--exec-sessions-per-token)") {
		t.Errorf("a refused handshake: %v; want the 429 *client.Error with its detail and request id", err)
	}

	sess, err := c.Attach(t.Context(), "env_1", apiv1.ExecRequest{Command: []string{"fail"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sess.Wait()
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || !strings.Contains(err.Error(), "the runtime lost the process") {
		t.Errorf("a failed session: %v; want the 500 *client.Error of its error message", err)
	}
}
