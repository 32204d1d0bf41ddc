package control_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
)

// after decodes an event's changes.after into v.
func after(t *testing.T, ev apiv1.AuditEvent, v any) {
	t.Helper()
	raw, err := json.Marshal(ev.Changes.After)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func TestSession_ItsStartAndEndAreAuditedWithWhoWhereWhatAndHowItEndedNeverItsContent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	env := r.environment(r.project("payments").ID, "api", nil)
	c := call("req_exec", http.StatusSwitchingProtocols)
	c.Source = apiv1.Source{IP: "192.0.2.7", UserAgent: "isolationd/test"}
	uid := uint32(1000)
	req := apiv1.ExecRequest{Command: []string{"sh", "-c", "id"}, Env: map[string]string{"TOKEN": "s3cret-value"}, WorkingDir: "/home", UID: &uid, TTY: true}

	sess, err := r.svc.StartSession(r.ctx, c, env, req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sess.ID, "ses_") || sess.EnvironmentID != env.ID || !sess.Started.Equal(r.clock.Now()) {
		t.Fatalf("session %+v, want a ses_ id in %s started now", sess, env.ID)
	}
	start := r.last().Events
	if len(start) != 1 {
		t.Fatalf("the start wrote %d events, want one", len(start))
	}
	ev := start[0]
	if ev.Action != control.ActionSessionStart || ev.Outcome != apiv1.OutcomeSuccess || ev.Resource != (apiv1.ResourceRef{Type: "environment", ID: env.ID}) ||
		ev.ProjectID != env.ProjectID || ev.Actor != c.Actor || ev.Source != c.Source || ev.RequestID != "req_exec" || ev.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("start event %+v", ev)
	}
	var got apiv1.ExecStart
	after(t, ev, &got)
	want := apiv1.ExecStart{SessionID: sess.ID, Command: req.Command, TTY: true, UID: &uid, WorkingDir: "/home"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("start changes.after (-want +got):\n%s", diff)
	}

	r.clock.Advance(90 * time.Second)
	exit := apiv1.ExecExit{SessionID: sess.ID, ExitCode: 130, Signal: "INT", Reason: apiv1.ExecExited, DurationMS: 90000, BytesIn: 12, BytesOut: 345}
	if err := r.svc.EndSession(r.ctx, sess, control.SessionEnd{Exit: &exit}); err != nil {
		t.Fatal(err)
	}
	end := r.last().Events[0]
	if end.Action != control.ActionSessionEnd || end.Outcome != apiv1.OutcomeSuccess || end.Resource != ev.Resource || end.ProjectID != env.ProjectID ||
		end.Actor != c.Actor || end.RequestID != "req_exec" || !end.Time.Equal(r.clock.Now()) || end.Reason != "" {
		t.Fatalf("end event %+v", end)
	}
	var gotExit apiv1.ExecExit
	after(t, end, &gotExit)
	if gotExit != exit {
		t.Fatalf("end changes.after %+v, want %+v", gotExit, exit)
	}
	for _, e := range []apiv1.AuditEvent{ev, end} {
		raw, _ := json.Marshal(e)
		if strings.Contains(string(raw), "s3cret-value") {
			t.Fatalf("an audit event holds an environment variable's value: %s", raw)
		}
	}
}

func TestSession_ACommandThatDidNotStartEndsAsAFailureWithTheAnswersStatus(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	env := r.environment(r.project("payments").ID, "api", nil)
	sess, err := r.svc.StartSession(r.ctx, call("req_exec", http.StatusOK), env, apiv1.ExecRequest{Command: []string{"nosuch"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.EndSession(r.ctx, sess, control.SessionEnd{Failure: "command nosuch is not in the image", Status: http.StatusBadRequest}); err != nil {
		t.Fatal(err)
	}
	end := r.last().Events[0]
	var got struct {
		SessionID string `json:"session_id"`
	}
	after(t, end, &got)
	if end.Outcome != apiv1.OutcomeFailure || end.StatusCode != http.StatusBadRequest || end.Reason != "command nosuch is not in the image" || got.SessionID != sess.ID {
		t.Fatalf("end event %+v (after %+v), want a failure answered 400 with the reason and the session's id", end, got)
	}
}

func TestSession_ARefusedAttemptIsAFailedStartWithoutASession(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	req := apiv1.ExecRequest{Command: []string{"sh"}}
	ev := r.svc.SessionRefused(call("req_refused", http.StatusConflict), "env_1", "prj_1", &req, "environment env_1 is pending")
	var got apiv1.ExecStart
	after(t, ev, &got)
	if ev.Action != control.ActionSessionStart || ev.Outcome != apiv1.OutcomeFailure || ev.StatusCode != http.StatusConflict || ev.ProjectID != "prj_1" ||
		ev.Resource.ID != "env_1" || ev.Reason != "environment env_1 is pending" || got.SessionID != "" || len(got.Command) != 1 {
		t.Fatalf("refusal event %+v (after %+v)", ev, got)
	}
	if bad := r.svc.SessionRefused(call("req_bad", http.StatusBadRequest), "env_1", "prj_1", nil, "command is required"); bad.Changes != nil {
		t.Fatalf("a request that was not valid is recorded: %+v", bad.Changes)
	}
}

func TestStartSession_FailsClosedWhenTheTrailCannotBeWritten(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	env := r.environment(r.project("payments").ID, "api", nil)
	if err := r.st.Close(); err != nil {
		t.Fatal(err)
	}
	if sess, err := r.svc.StartSession(r.ctx, call("req_exec", http.StatusOK), env, apiv1.ExecRequest{Command: []string{"sh"}}); err == nil || sess != nil {
		t.Fatalf("StartSession on a store that cannot write = %+v, %v; want no session and the error", sess, err)
	}
}
