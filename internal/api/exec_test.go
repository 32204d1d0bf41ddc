package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/simulate"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// The exec routes on the simulate runtime, which runs nothing: every
// attempt is refused before anything starts, as a plain problem, and
// audited as a failed session.start. Sessions that run are tested with
// real containers in internal/server (exec_test.go).

// handshake are the headers of a WebSocket handshake of the exec
// subprotocol, as h.do's header pairs.
var handshake = []string{
	"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13",
	"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol", apiv1.ExecSubprotocol,
}

func withHeaders(base []string, pairs ...string) []string {
	return append(append([]string{}, base...), pairs...)
}

func TestExec_ABadRequestIs400NamingTheFieldBeforeAnythingStarts(t *testing.T) {
	h := newHarness(t)
	env := h.environment(h.project("payments").ID, "api", nil)
	post := "/v1/environments/" + env.ID + "/exec"
	for _, c := range []struct {
		body        string
		slug, field string
	}{
		{`{}`, "validation", "command"},
		{`{"command":[""]}`, "validation", "command"},
		{`{"command":["sh"],"tty":true}`, "validation", "tty"},
		{`{"command":["sh"],"size":{"rows":24,"cols":80}}`, "validation", "size"},
		{`{"command":["sh"],"timeout":"soon"}`, "validation", "timeout"},
		{`{"command":["sh"],"timeout":"48h"}`, "validation", "timeout"},
		{`{"command":["sh"],"working_dir":"home"}`, "validation", "working_dir"},
		{`{"command":["sh"],"gid":5}`, "validation", "gid"},
		{`{"command":["sh"],"stdin":"x"}`, "malformed-request", "stdin"},
	} {
		h.do("POST", post, c.body).problem(t, 400, c.slug, c.field)
	}
	for _, c := range []struct {
		query string
		field string
	}{
		{"", "command"},
		{"command=sh&tty=true&rows=0&cols=80", "rows"},
		{"command=sh&tty=true&rows=24&cols=1001", "cols"},
		{"command=sh&tty=true&rows=24", "rows"},
		{"command=sh&rows=24&cols=80", "rows"},
		{"command=sh&tty=maybe", "tty"},
		{"command=sh&uid=-1", "uid"},
		{"command=sh&env=NOVALUE", "env"},
		{"command=sh&env=A=1&env=A=2", "env"},
		{"command=sh&timeout=0s", "timeout"},
		{"command=sh&working_dir=/a&working_dir=/b", "working_dir"},
		{"command=sh&shell=bash", "shell"},
	} {
		h.do("GET", post+"?"+c.query, nil, handshake...).problem(t, 400, "validation", c.field)
	}
}

func TestExec_AGETThatIsNoWebSocketHandshakeOfTheExecSubprotocolIsRefused(t *testing.T) {
	h := newHarness(t)
	env := h.environment(h.project("payments").ID, "api", nil)
	path := "/v1/environments/" + env.ID + "/exec?command=sh"
	h.do("GET", path, nil).problem(t, 400, "malformed-request", "Upgrade")
	h.do("GET", path, nil, withHeaders(handshake, "Sec-WebSocket-Protocol", "other.v1")...).problem(t, 400, "malformed-request", "Sec-WebSocket-Protocol")
	h.do("GET", path, nil, withHeaders(handshake, "Sec-WebSocket-Version", "8")...).problem(t, 400, "malformed-request", "Sec-WebSocket-Version")
	p := h.do("GET", path, nil, withHeaders(handshake, "Origin", "https://attacker.example")...).problem(t, 403, "forbidden", "")
	if !strings.Contains(p.Detail, "another origin") {
		t.Fatalf("cross-origin detail %q", p.Detail)
	}
}

// heldProvision is the simulate driver whose Provision of an environment
// waits until the test lets it through: the others stay provisioning.
type heldProvision struct {
	*simulate.Driver
	mu    sync.Mutex
	gates map[string]chan struct{}
}

func (d *heldProvision) gate(id string) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	ch, ok := d.gates[id]
	if !ok {
		ch = make(chan struct{})
		d.gates[id] = ch
	}
	return ch
}

func (d *heldProvision) let(id string) { close(d.gate(id)) }

func (d *heldProvision) Provision(ctx context.Context, id, addr string) (enforce.Endpoint, error) {
	select {
	case <-d.gate(id):
	case <-ctx.Done():
		return enforce.Endpoint{}, ctx.Err()
	}
	return d.Driver.Provision(ctx, id, addr)
}

func TestExec_AnEnvironmentThatRunsNothingIs409NamingItsStateOnBothRoutes(t *testing.T) {
	held := &heldProvision{Driver: simulate.New(), gates: map[string]chan struct{}{}}
	h := newHarness(t, func(c *server.Config) { c.EnforceDriver = held })
	p := h.project("payments")
	pending := h.environment(p.ID, "pending", nil)
	t.Cleanup(func() { held.let(pending.ID) }) // before the server shuts down
	bare := h.environment(p.ID, "bare", nil)
	var sim apiv1.Environment
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "sim", Workload: &apiv1.WorkloadSpec{Image: "busybox"}}).json(t, 202, &sim)
	held.let(bare.ID)
	held.let(sim.ID)
	for _, c := range []struct {
		env  apiv1.Environment
		want string
	}{
		{pending, `^environment ` + pending.ID + ` is (pending|provisioning); exec needs it ready with its workload running$`},
		{bare, `^environment ` + bare.ID + ` has no workload; exec needs it ready with its workload running$`},
		{sim, `^environment ` + sim.ID + `'s workload is not_run: the simulate runtime runs nothing; `},
	} {
		if c.env.ID != pending.ID {
			h.wait(c.env.ID, "ready")
		}
		path := "/v1/environments/" + c.env.ID + "/exec"
		for _, got := range []apiv1.Problem{
			h.do("POST", path, apiv1.ExecRequest{Command: []string{"sh"}}).problem(t, 409, "invalid-state", ""),
			h.do("GET", path+"?command=sh&tty=true", nil, handshake...).problem(t, 409, "invalid-state", ""),
		} {
			if !regexp.MustCompile(c.want).MatchString(got.Detail) {
				t.Errorf("%s: detail %q, want it to match %s", c.env.Name, got.Detail, c.want)
			}
		}
	}

	// A real WebSocket client gets the same answer, before any upgrade.
	u := strings.Replace(h.url, "http://", "ws://", 1) + "/v1/environments/" + sim.ID + "/exec?command=sh"
	conn, res, err := websocket.Dial(context.Background(), u, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + h.token}}, Subprotocols: []string{apiv1.ExecSubprotocol},
	})
	if err == nil {
		_ = conn.CloseNow()
		t.Fatal("the WebSocket into an environment that runs nothing was accepted")
	}
	body, _ := io.ReadAll(res.Body)
	var prob apiv1.Problem
	if res.StatusCode != http.StatusConflict || res.Header.Get("Content-Type") != apiv1.MediaProblem || json.Unmarshal(body, &prob) != nil || !strings.Contains(prob.Detail, "not_run") {
		t.Fatalf("WebSocket dial: %d %s %s; want the 409 problem", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
}

// Every refused attempt is on the trail as a failed session.start of its
// environment and project, with its status and reason, and what was asked
// when the request was valid; no session opened, so no session.end.
func TestExec_RefusedAttemptsAreAuditedAsFailedStarts(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	sim := func(name string) string {
		var e apiv1.Environment
		h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: name, Workload: &apiv1.WorkloadSpec{Image: "busybox"}}).json(t, 202, &e)
		e, _ = h.wait(e.ID, "ready")
		return "/v1/environments/" + e.ID + "/exec"
	}
	// Two environments: refusals of the same reason within a minute are
	// counted in one aggregate event after the first (as every refusal).
	one, two := sim("one"), sim("two")
	h.do("POST", one, `{"command":[]}`, apiv1.HeaderRequestID, "req-bad").problem(t, 400, "validation", "command")
	h.do("POST", one, apiv1.ExecRequest{Command: []string{"sh", "-c", "id"}, Env: map[string]string{"SECRET": "v4lue"}}, apiv1.HeaderRequestID, "req-409").problem(t, 409, "invalid-state", "")
	h.do("GET", two+"?command=sh&tty=true", nil, withHeaders(handshake, apiv1.HeaderRequestID, "req-ws")...).problem(t, 409, "invalid-state", "")
	h.flushDenials()

	evs, _, err := h.srv.Store().ListAudit(context.Background(), store.AuditQuery{ResourceType: "environment", Limit: store.MaxLimit})
	must(t, err)
	got := map[string]apiv1.AuditEvent{}
	for _, ev := range evs {
		if ev.Action == "session.end" {
			t.Errorf("a refused attempt has an end: %+v", ev)
		}
		if ev.Action == "session.start" {
			got[ev.RequestID] = ev
		}
	}
	for rid, want := range map[string]struct {
		status  int
		command []string
		tty     bool
	}{
		"req-bad": {400, nil, false},
		"req-409": {409, []string{"sh", "-c", "id"}, false},
		"req-ws":  {409, []string{"sh"}, true},
	} {
		ev, ok := got[rid]
		if !ok {
			t.Errorf("%s: no session.start event", rid)
			continue
		}
		if ev.Outcome != apiv1.OutcomeFailure || ev.StatusCode != want.status || ev.ProjectID != p.ID || ev.Reason == "" || ev.Actor.TokenID == "" || ev.Source.IP == "" {
			t.Errorf("%s: event %+v, want a failure answered %d in project %s with a reason, the actor and the source", rid, ev, want.status, p.ID)
		}
		raw, _ := json.Marshal(ev)
		if strings.Contains(string(raw), "v4lue") {
			t.Errorf("%s: the event holds an environment variable's value: %s", rid, raw)
		}
		if want.command == nil {
			if ev.Changes != nil {
				t.Errorf("%s: an invalid request is recorded: %s", rid, raw)
			}
			continue
		}
		var start apiv1.ExecStart
		after, _ := json.Marshal(ev.Changes.After)
		must(t, json.Unmarshal(after, &start))
		if start.SessionID != "" || strings.Join(start.Command, " ") != strings.Join(want.command, " ") || start.TTY != want.tty {
			t.Errorf("%s: changes.after %s, want command %q tty %v and no session", rid, after, want.command, want.tty)
		}
	}
}

// FuzzExecRequests sends arbitrary exec requests, as a POST body or as the
// query of a WebSocket handshake, into an environment whose workload does
// not run (the simulate runtime's). The server never answers anything but
// a 400 naming a field or the 409 of the environment's state: the 409
// exactly when the request is valid (for POST: apiv1 decodes it strictly,
// validates it, and it asks for no terminal).
func FuzzExecRequests(f *testing.F) {
	for _, s := range []struct {
		post bool
		in   string
	}{
		{true, `{"command":["sh","-c","id"],"env":{"A":"1"},"working_dir":"/home","uid":1000,"gid":1000,"timeout":"30s"}`},
		{true, `{"command":["sh"],"tty":true,"size":{"rows":24,"cols":80}}`},
		{true, `{"command":[]}`},
		{true, `{"command":["a\u0000b"]}`},
		{true, `{"command":["sh"],"timeout":"-1s"}`},
		{false, "command=sh&tty=true&rows=24&cols=80"},
		{false, "command=sh&command=-c&command=echo+hi&env=A=1&env=B=2&uid=0&gid=0&working_dir=/"},
		{false, "command=sh&rows=99999&cols=1"},
		{false, "command=%zz"},
		{false, "command=sh;tty=true"},
		{false, "env==x&command=sh"},
		{false, "command=sh&timeout=25h"},
	} {
		f.Add(s.post, s.in)
	}
	var path string
	s := newFuzzServer(f, func(h *harness) {
		var e apiv1.Environment
		h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: h.project("fuzz-exec").ID, Name: "sim", Workload: &apiv1.WorkloadSpec{Image: "busybox"}}).json(h.t, 202, &e)
		h.wait(e.ID, "ready")
		path = "/v1/environments/" + e.ID + "/exec"
	})
	f.Fuzz(func(t *testing.T, post bool, in string) {
		h := s.on(t)
		var r resp
		valid := false
		if post {
			r = h.do("POST", path, in)
			var req apiv1.ExecRequest
			dec := json.NewDecoder(strings.NewReader(in))
			dec.DisallowUnknownFields()
			if dec.Decode(&req) == nil && !dec.More() {
				valid = req.Validate() == nil && !req.TTY && req.Size == nil
			}
		} else {
			if strings.ContainsAny(in, " #\x00\r\n") || !utf8.ValidString(in) {
				return // not a request line any client sends
			}
			r = h.do("GET", path+"?"+in, nil, handshake...)
		}
		switch r.status {
		case http.StatusConflict:
			if p := r.problem(t, 409, "invalid-state", ""); !strings.Contains(p.Detail, "not_run") {
				t.Fatalf("409 %q", p.Detail)
			}
			if post && !valid {
				t.Fatalf("a request apiv1 refuses was taken: %s", in)
			}
		case http.StatusBadRequest:
			var p apiv1.Problem
			must(t, json.Unmarshal(r.body, &p))
			if post && valid && p.Type != api.ProblemBase+"malformed-request" {
				// What encoding/json takes and the server does not is the
				// JSON's form (a field name in another case, trailing data),
				// never its values.
				t.Fatalf("a request apiv1 accepts was refused: %s\n%s", in, r.body)
			}
			if p.Type == api.ProblemBase+"validation" && len(p.Errors) == 0 {
				t.Fatalf("a 400 naming no field: %s", r.body)
			}
		default:
			t.Fatalf("%v %q: %d %s", post, in, r.status, r.body)
		}
	})
}
