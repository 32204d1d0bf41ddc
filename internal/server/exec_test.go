package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Exec sessions into real containers, over raw HTTP and a real WebSocket
// (coder/websocket), as any client would speak the protocol.

// execLab is a runc lab with one environment whose workload sleeps, for
// sessions to exec into.
type execLab struct {
	*apiLab
	env     apiv1.Environment
	adminID string
	// ends receives every session.end event as the store commits it.
	ends chan apiv1.AuditEvent
}

func newExecLab(t testing.TB, mods ...func(*server.Config)) *execLab {
	t.Helper()
	needRunc(t)
	cfg := labConfig(t, "netns")
	for _, m := range mods {
		m(&cfg)
	}
	l := startLab(t, cfg)
	ends := make(chan apiv1.AuditEvent, 64)
	l.srv.Store().Subscribe(func(c store.Commit) {
		for _, ev := range c.Events {
			if ev.Action == "session.end" {
				ends <- ev
			}
		}
	})
	l.importImage("busybox:test", imagetest.Busybox(t, imagetest.Options{Cmd: []string{"sh"}}))
	e := l.createWorkload("shell", apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"sleep", "3600"}}, nil)
	if e.State != apiv1.StateReady || e.Workload.State != apiv1.WorkloadRunning {
		t.Fatalf("environment = %s; want ready with its workload running", js(e))
	}
	who, err := l.c.WhoAmI(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &execLab{apiLab: l, env: e, adminID: who.TokenID, ends: ends}
}

// nextEnd waits (at most 20 s) for the next session.end event and returns
// the exit it records.
func (l *execLab) nextEnd() apiv1.ExecExit {
	l.tb.Helper()
	select {
	case ev := <-l.ends:
		var exit apiv1.ExecExit
		raw, _ := json.Marshal(ev.Changes.After)
		if err := json.Unmarshal(raw, &exit); err != nil {
			l.tb.Fatal(err)
		}
		return exit
	case <-time.After(20 * time.Second):
		l.tb.Fatal("no session ended within 20s")
	}
	return apiv1.ExecExit{}
}

// execResult is the answer to POST .../exec: the output by stream and the
// exit, or the problem that refused it.
type execResult struct {
	status  int
	stdout  string
	stderr  string
	exit    *apiv1.ExecExit
	failed  *apiv1.Problem
	problem apiv1.Problem
}

func (l *execLab) token() string { return l.srv.AdminToken() }

func (l *execLab) execURL(envID string) string {
	return l.srv.URL() + "/v1/environments/" + url.PathEscape(envID) + "/exec"
}

// post runs req by POST with token and reads the answer to its end.
func (l *execLab) post(token, envID string, req apiv1.ExecRequest) execResult {
	l.tb.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		l.tb.Fatal(err)
	}
	hreq, err := http.NewRequestWithContext(l.ctx, http.MethodPost, l.execURL(envID), bytes.NewReader(body))
	if err != nil {
		l.tb.Fatal(err)
	}
	hreq.Header.Set("Authorization", "Bearer "+token)
	hreq.Header.Set("Content-Type", "application/json")
	res, err := l.http.Do(hreq)
	if err != nil {
		l.tb.Fatalf("POST exec: %v", err)
	}
	defer res.Body.Close()
	out := execResult{status: res.StatusCode}
	if res.StatusCode != http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(&out.problem); err != nil {
			l.tb.Fatalf("POST exec: %d: %v", res.StatusCode, err)
		}
		return out
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		l.tb.Fatalf("POST exec: Content-Type %q", ct)
	}
	var stdout, stderr strings.Builder
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var f apiv1.ExecFrame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			l.tb.Fatalf("POST exec: frame %q: %v", sc.Text(), err)
		}
		switch {
		case out.exit != nil || out.failed != nil:
			l.tb.Fatalf("POST exec: a frame after the last: %s", sc.Text())
		case f.Exit != nil:
			out.exit = f.Exit
		case f.Error != nil:
			out.failed = f.Error
		case f.Stream == apiv1.StreamStdout:
			stdout.Write(f.Data)
		case f.Stream == apiv1.StreamStderr:
			stderr.Write(f.Data)
		default:
			l.tb.Fatalf("POST exec: frame %s", sc.Text())
		}
	}
	if out.exit == nil && out.failed == nil {
		l.tb.Fatalf("POST exec: the answer ended without an exit (%v); output %q %q", sc.Err(), stdout.String(), stderr.String())
	}
	out.stdout, out.stderr = stdout.String(), stderr.String()
	return out
}

// run is post as the admin, failing unless the command ran to its exit.
func (l *execLab) run(command ...string) execResult {
	l.tb.Helper()
	r := l.post(l.token(), l.env.ID, apiv1.ExecRequest{Command: command})
	if r.exit == nil {
		l.tb.Fatalf("exec %q: %d %+v %+v", command, r.status, r.problem, r.failed)
	}
	return r
}

// wsSession is a WebSocket exec session as a client sees it: its output
// accumulates, its last control message ends it.
type wsSession struct {
	tb   testing.TB
	conn *websocket.Conn

	mu      sync.Mutex
	output  bytes.Buffer
	changed chan struct{} // closed and replaced on each message
	last    *apiv1.ExecControl
	closed  error // the read error that ended the connection
	done    chan struct{}
}

// attach opens the exec WebSocket of envID with token and query q.
func (l *execLab) attach(token, envID string, q url.Values) *wsSession {
	l.tb.Helper()
	s, res, err := l.dial(token, envID, q)
	if err != nil {
		l.tb.Fatalf("dial exec %v: %v (%+v)", q, err, res)
	}
	return s
}

// dial is attach that returns a refusal: the answer's status and problem.
func (l *execLab) dial(token, envID string, q url.Values) (*wsSession, execResult, error) {
	u := strings.Replace(l.execURL(envID), "http://", "ws://", 1) + "?" + q.Encode()
	conn, res, err := websocket.Dial(l.ctx, u, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}, Subprotocols: []string{apiv1.ExecSubprotocol},
	})
	if err != nil {
		out := execResult{}
		if res != nil {
			out.status = res.StatusCode
			_ = json.NewDecoder(res.Body).Decode(&out.problem)
		}
		return nil, out, err
	}
	if conn.Subprotocol() != apiv1.ExecSubprotocol {
		l.tb.Fatalf("subprotocol %q", conn.Subprotocol())
	}
	s := &wsSession{tb: l.tb, conn: conn, changed: make(chan struct{}), done: make(chan struct{})}
	go s.read()
	l.tb.Cleanup(func() { _ = conn.CloseNow(); <-s.done })
	return s, execResult{status: http.StatusSwitchingProtocols}, nil
}

func (s *wsSession) read() {
	defer close(s.done)
	for {
		typ, msg, err := s.conn.Read(context.Background())
		s.mu.Lock()
		switch {
		case err != nil:
			s.closed = err
		case typ == websocket.MessageBinary && len(msg) > 0 && msg[0] != apiv1.ExecChannelStdin:
			s.output.Write(msg[1:])
		case typ == websocket.MessageText:
			var c apiv1.ExecControl
			if json.Unmarshal(msg, &c) == nil && s.last == nil {
				s.last = &c
			}
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// until waits (at most 20 s) for cond over the output, the last control
// message and the read error.
func (s *wsSession) until(what string, cond func(out string, last *apiv1.ExecControl, closed error) bool) {
	s.tb.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch, out := cond(s.output.String(), s.last, s.closed), s.changed, s.output.String()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			s.tb.Fatalf("exec session: no %s within 20s; output so far %q", what, out)
		}
	}
}

// waitOutput waits for the output to match re.
func (s *wsSession) waitOutput(re string) {
	s.tb.Helper()
	m := regexp.MustCompile(re)
	s.until("output matching "+re, func(out string, _ *apiv1.ExecControl, _ error) bool { return m.MatchString(out) })
}

// end waits for the session's last message, then for the server to close
// the connection, and returns the message.
func (s *wsSession) end() apiv1.ExecControl {
	s.tb.Helper()
	s.until("end of the session", func(_ string, last *apiv1.ExecControl, closed error) bool { return last != nil && closed != nil })
	if cs := websocket.CloseStatus(s.closed); cs != websocket.StatusNormalClosure {
		s.tb.Errorf("the server closed the session with %v (%v), want a normal close", cs, s.closed)
	}
	return *s.last
}

func (s *wsSession) stdin(text string) {
	s.tb.Helper()
	if err := s.conn.Write(context.Background(), websocket.MessageBinary, append([]byte{apiv1.ExecChannelStdin}, text...)); err != nil {
		s.tb.Fatal(err)
	}
}

func (s *wsSession) control(c apiv1.ExecControl) {
	s.tb.Helper()
	msg, _ := json.Marshal(c)
	if err := s.conn.Write(context.Background(), websocket.MessageText, msg); err != nil {
		s.tb.Fatal(err)
	}
}

// exited checks that a session ended with its command's exit.
func exited(tb testing.TB, c apiv1.ExecControl, code int, reason string) apiv1.ExecExit {
	tb.Helper()
	if c.Type != apiv1.ExecControlExit || c.Exit == nil || c.Exit.ExitCode != code || c.Exit.Reason != reason || !strings.HasPrefix(c.Exit.SessionID, "ses_") {
		tb.Fatalf("session ended with %s; want exit code %d, reason %s", js(c), code, reason)
	}
	return *c.Exit
}

// sessionEvents are the audit events of the session id: its start and its
// end (zero events when absent).
func (l *execLab) sessionEvents(id string) (start, end apiv1.AuditEvent) {
	l.tb.Helper()
	evs, _, err := l.srv.Store().ListAudit(l.ctx, store.AuditQuery{ResourceType: "environment", Limit: store.MaxLimit})
	if err != nil {
		l.tb.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Changes == nil || (ev.Action != "session.start" && ev.Action != "session.end") {
			continue
		}
		var ids struct {
			SessionID string `json:"session_id"`
		}
		raw, _ := json.Marshal(ev.Changes.After)
		if json.Unmarshal(raw, &ids) != nil || ids.SessionID != id {
			continue
		}
		if ev.Action == "session.start" {
			start = ev
		} else {
			end = ev
		}
	}
	return start, end
}

// audited checks the session's audit trail: its start with the actor,
// source, environment and what it ran, its end with exactly the exit the
// client got.
func (l *execLab) audited(exit apiv1.ExecExit, tokenID string, command []string, tty bool) {
	l.tb.Helper()
	start, end := l.sessionEvents(exit.SessionID)
	var got apiv1.ExecStart
	raw, _ := json.Marshal(start.Changes.After)
	_ = json.Unmarshal(raw, &got)
	if start.Outcome != apiv1.OutcomeSuccess || start.Actor.TokenID != tokenID || start.Source.IP != "127.0.0.1" || start.Resource.ID != l.env.ID ||
		start.ProjectID != l.env.ProjectID || !slices.Equal(got.Command, command) || got.TTY != tty {
		l.tb.Errorf("session %s: start event %s; want token %s from 127.0.0.1 running %q (tty %v) in %s", exit.SessionID, js(start), tokenID, command, tty, l.env.ID)
	}
	var gotExit apiv1.ExecExit
	raw, _ = json.Marshal(end.Changes.After)
	_ = json.Unmarshal(raw, &gotExit)
	if end.Action != "session.end" || gotExit != exit || end.Actor.TokenID != tokenID || !end.Time.After(start.Time) && !end.Time.Equal(start.Time) {
		l.tb.Errorf("session %s: end event %s; want the exit %s", exit.SessionID, js(end), js(exit))
	}
}

// containerProcs are the host pids in the environment's container (its
// cgroup): the init and the workload, and what sessions left.
func (l *execLab) containerProcs() []string {
	l.tb.Helper()
	b, err := os.ReadFile(filepath.Join(cgroupDir("pids", l.cfg.NetnsPrefix, l.env.Enforcement.Namespace), "cgroup.procs"))
	if err != nil {
		l.tb.Fatal(err)
	}
	procs := strings.Fields(string(b))
	slices.Sort(procs)
	return procs
}

// sessionGoroutines counts the server's goroutines of exec sessions:
// the API's and the runtime's.
func sessionGoroutines() int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	n := 0
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, "internal/api.(*execSession)") || strings.Contains(g, "internal/api.(*wsClient)") ||
			strings.Contains(g, "internal/api.(*API).environmentEnds") || strings.Contains(g, "internal/api.(*API).exec") ||
			strings.Contains(g, "internal/workload/runc.(*execSession") || strings.Contains(g, "internal/workload/runc.(*Runtime).Exec") {
			n++
		}
	}
	return n
}

func TestRuncExec_ACommandRunsInTheContainerAndReturnsItsOutputAndExitCode(t *testing.T) {
	l := newExecLab(t)
	r := l.run("sh", "-c", "echo out; echo err >&2; hostname; exit 3")
	if r.stdout != "out\nshell\n" || r.stderr != "err\n" || r.exit.ExitCode != 3 || r.exit.Reason != apiv1.ExecExited || r.exit.BytesOut != int64(len("out\nerr\nshell\n")) || r.exit.BytesIn != 0 {
		t.Fatalf("exec = %+v, exit %s; want out and the hostname on stdout, err on stderr, exit 3", r, js(r.exit))
	}
	l.audited(*r.exit, l.adminID, []string{"sh", "-c", "echo out; echo err >&2; hostname; exit 3"}, false)

	uid, gid := uint32(1234), uint32(5678)
	r = l.post(l.token(), l.env.ID, apiv1.ExecRequest{
		Command: []string{"sh", "-c", `echo "$(id -u):$(id -g) $(pwd) $GREETING"`}, UID: &uid, GID: &gid, WorkingDir: "/tmp", Env: map[string]string{"GREETING": "hello"},
	})
	if r.exit == nil || r.exit.ExitCode != 0 || r.stdout != "1234:5678 /tmp hello\n" {
		t.Fatalf("exec as 1234:5678 in /tmp = %+v; want the ids, the directory and the variable", r)
	}

	// A program the image does not have is a 400 naming command, and its
	// attempt is on the trail (a start, and its failed end).
	r = l.post(l.token(), l.env.ID, apiv1.ExecRequest{Command: []string{"/bin/nosuch"}})
	if r.status != http.StatusBadRequest || len(r.problem.Errors) == 0 || r.problem.Errors[0].Field != "command" {
		t.Fatalf("exec of a missing program = %d %+v; want 400 naming command", r.status, r.problem)
	}

	// The timeout kills.
	start := time.Now()
	r = l.post(l.token(), l.env.ID, apiv1.ExecRequest{Command: []string{"sleep", "60"}, Timeout: "1s"})
	if r.exit == nil || r.exit.Reason != apiv1.ExecTimedOut || r.exit.Signal != "KILL" || r.exit.ExitCode != 137 || time.Since(start) > 10*time.Second {
		t.Fatalf("exec with a 1s timeout = %+v after %v; want killed (137, KILL) for reason timeout", r, time.Since(start))
	}
}

func TestRuncExec_AnInteractiveShellThroughAWebSocketAndAPTYEchoesResizesAndEndsWithItsExitCode(t *testing.T) {
	l := newExecLab(t)
	s := l.attach(l.token(), l.env.ID, url.Values{"command": {"sh"}, "tty": {"true"}, "rows": {"24"}, "cols": {"80"}})
	s.stdin("stty size\n")
	s.waitOutput(`(?m)^24 80\r?$`)
	s.control(apiv1.ExecControl{Type: apiv1.ExecControlResize, Size: &apiv1.TerminalSize{Rows: 50, Cols: 132}})
	s.stdin("stty size\n")
	s.waitOutput(`(?m)^50 132\r?$`)
	// The terminal echoes what is typed, and the shell runs it.
	s.stdin("echo sum-$((6*7))\n")
	s.waitOutput(`echo sum-\$\(\(6\*7\)\)`)
	s.waitOutput(`(?m)^sum-42\r?$`)
	s.stdin("exit 7\n")
	exit := exited(t, s.end(), 7, apiv1.ExecExited)
	if exit.BytesIn != int64(len("stty size\nstty size\necho sum-$((6*7))\nexit 7\n")) || exit.BytesOut == 0 {
		t.Errorf("exit %s; want the bytes typed in and some out", js(exit))
	}
	l.audited(exit, l.adminID, []string{"sh"}, true)
}

func TestRuncExec_TwentySessionsRunAtOnce(t *testing.T) {
	l := newExecLab(t)
	const n = 20
	sessions := make([]*wsSession, n)
	for i := range sessions {
		sessions[i] = l.attach(l.token(), l.env.ID, url.Values{"command": {"cat"}})
	}
	// All twenty are open before any ends: each echoes its own line.
	for i, s := range sessions {
		s.stdin(fmt.Sprintf("line of session %d\n", i))
	}
	for i, s := range sessions {
		s.waitOutput(fmt.Sprintf("^line of session %d\n$", i))
	}
	for _, s := range sessions {
		s.control(apiv1.ExecControl{Type: apiv1.ExecControlEOF})
	}
	for _, s := range sessions {
		exit := exited(t, s.end(), 0, apiv1.ExecExited)
		l.audited(exit, l.adminID, []string{"cat"}, false)
	}
}

func TestRuncExec_ARevokedTokenEndsItsSessionWithinASecond(t *testing.T) {
	l := newExecLab(t)
	tc, err := l.c.Tokens().Create(l.ctx, apiv1.TokenCreate{Name: "dev", Role: apiv1.RoleDeveloper, ProjectID: l.project.ID})
	if err != nil {
		t.Fatal(err)
	}
	s := l.attach(tc.Secret, l.env.ID, url.Values{"command": {"sh"}, "tty": {"true"}})
	s.stdin("echo ready\n")
	s.waitOutput(`(?m)^ready\r?$`)
	if err := l.c.Tokens().Delete(l.ctx, tc.ID, ""); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	exit := exited(t, s.end(), 137, apiv1.ExecRevoked)
	if took := time.Since(revoked); took > time.Second {
		t.Errorf("the session ended %v after its token was revoked, want within a second", took)
	}
	l.audited(exit, tc.ID, []string{"sh"}, true)
}

func TestRuncExec_AWebSocketClosedMidSessionHangsUpItsProcessesAndLeavesNothing(t *testing.T) {
	l := newExecLab(t)
	before := l.containerProcs()
	if n := sessionGoroutines(); n != 0 {
		t.Fatalf("%d session goroutines before any session", n)
	}
	// A shell that records its SIGHUP, with a child of its own.
	s := l.attach(l.token(), l.env.ID, url.Values{"command": {"sh", "-c", `trap 'echo hup > /tmp/hup; exit 1' HUP; sleep 3600 & echo started; wait`}})
	s.waitOutput("started\n")
	if during := l.containerProcs(); len(during) <= len(before) {
		t.Fatalf("the session's processes are not in the container: %v, before %v", during, before)
	}
	if n := sessionGoroutines(); n < 3 {
		t.Fatalf("%d session goroutines while it runs: the count does not see them", n)
	}
	if err := s.conn.CloseNow(); err != nil {
		t.Fatal(err)
	}
	// The end is audited once everything is gone.
	if exit := l.nextEnd(); exit.Reason != apiv1.ExecClosed || exit.ExitCode != 1 {
		t.Fatalf("session ended %s; want reason closed, with the exit code of the shell's trap", js(exit))
	}
	if r := l.run("cat", "/tmp/hup"); r.stdout != "hup\n" {
		t.Fatalf("the shell did not get SIGHUP: /tmp/hup holds %q (%s)", r.stdout, r.stderr)
	}
	if after := l.containerProcs(); !slices.Equal(after, before) {
		t.Fatalf("processes in the container after the session: %v, before it %v", after, before)
	}
	noSessionGoroutines(t)
}

// noSessionGoroutines fails unless the server's session goroutines are
// gone within 10 s: a handler still returns for a moment after its
// client has read the session's last message.
func noSessionGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sessionGoroutines() > 0 {
		if time.Now().After(deadline) {
			var buf bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Fatalf("%d session goroutines left after the sessions ended:\n%s", sessionGoroutines(), buf.String())
		}
		time.Sleep(10 * time.Millisecond) // a bounded poll, ended by the goroutines' exit
	}
}

func TestRuncExec_AnEnvironmentNotRunningIs409NamingItsStateAndDeletingOneEndsItsSessions(t *testing.T) {
	l := newExecLab(t)
	bare := l.createEnv("bare", nil)
	r := l.post(l.token(), bare.ID, apiv1.ExecRequest{Command: []string{"sh"}})
	if r.status != http.StatusConflict || !strings.Contains(r.problem.Detail, "has no workload") {
		t.Fatalf("exec into an environment without a workload = %d %+v; want 409 saying so", r.status, r.problem)
	}
	never := apiv1.RestartNever
	done := l.createWorkload("done", apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"sleep", "2"}, Restart: never}, nil)
	l.watchUntil(done.ID, "exited", func(e apiv1.Environment) bool { return e.Workload != nil && e.Workload.State == apiv1.WorkloadExited })
	_, refused, err := l.dial(l.token(), done.ID, url.Values{"command": {"sh"}, "tty": {"true"}})
	if err == nil || refused.status != http.StatusConflict || !strings.Contains(refused.problem.Detail, "workload is exited") {
		t.Fatalf("WebSocket into an exited workload = %v %+v; want 409 naming the state before the upgrade", err, refused)
	}

	s := l.attach(l.token(), l.env.ID, url.Values{"command": {"sleep", "3600"}})
	if err := l.c.Environments().Delete(l.ctx, l.env.ID, ""); err != nil {
		t.Fatal(err)
	}
	exit := exited(t, s.end(), 129, apiv1.ExecEnvGone)
	l.audited(exit, l.adminID, []string{"sleep", "3600"}, false)
}

func TestRuncExec_ATokenPastItsLimitOfSessionsIs429(t *testing.T) {
	l := newExecLab(t, func(c *server.Config) { c.ExecSessionsPerToken = 2 })
	tc, err := l.c.Tokens().Create(l.ctx, apiv1.TokenCreate{Name: "dev", Role: apiv1.RoleDeveloper, ProjectID: l.project.ID})
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"command": {"sleep", "3600"}}
	first, _ := l.attach(tc.Secret, l.env.ID, q), l.attach(tc.Secret, l.env.ID, q)
	r := l.post(tc.Secret, l.env.ID, apiv1.ExecRequest{Command: []string{"true"}})
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.problem.Detail, "exec-sessions-per-token 2") {
		t.Fatalf("a third session = %d %+v; want 429 naming the limit", r.status, r.problem)
	}
	if _, refused, err := l.dial(tc.Secret, l.env.ID, q); err == nil || refused.status != http.StatusTooManyRequests {
		t.Fatalf("a third WebSocket = %v %+v; want 429 before the upgrade", err, refused)
	}
	// Another token has its own count; an ended session frees its place.
	if r := l.run("true"); r.exit.ExitCode != 0 {
		t.Fatalf("the admin's exec = %+v", r)
	}
	l.nextEnd() // the admin's
	if err := first.conn.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	if exit := l.nextEnd(); exit.Reason != apiv1.ExecClosed {
		t.Fatalf("the closed session ended %s", js(exit))
	}
	if r := l.post(tc.Secret, l.env.ID, apiv1.ExecRequest{Command: []string{"true"}}); r.exit == nil || r.exit.ExitCode != 0 {
		t.Fatalf("after one session closed: %d %+v", r.status, r.problem)
	}
}

func TestRuncExec_ShuttingDownEndsEverySessionAndAuditsItsEndFirst(t *testing.T) {
	l := newExecLab(t)
	s := l.attach(l.token(), l.env.ID, url.Values{"command": {"sh", "-c", "echo ready; exec sleep 3600"}})
	s.waitOutput("ready\n")
	dir := l.cfg.DataDir
	l.shutdown()
	exit := exited(t, s.end(), 129, apiv1.ExecServerStops)
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, server.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, _, err := st.ListAudit(context.Background(), store.AuditQuery{Action: "session.end", Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var got apiv1.ExecExit
	if len(evs) == 1 {
		raw, _ := json.Marshal(evs[0].Changes.After)
		_ = json.Unmarshal(raw, &got)
	}
	if got != exit {
		t.Fatalf("session.end events after the shutdown: %s; want the one exit %s", js(evs), js(exit))
	}
}
