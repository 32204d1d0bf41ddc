package control

import (
	"context"
	"errors"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Audit actions of exec sessions: developer access, the most sensitive
// thing the server grants, is on the trail from its start to its end.
const (
	ActionSessionStart = "session.start"
	ActionSessionEnd   = "session.end"
)

// Session is an exec session whose start is on the audit trail.
type Session struct {
	ID            string
	EnvironmentID string
	ProjectID     string
	// Started is when its start was audited, on the service's clock.
	Started time.Time
	call    Call
}

// SessionEnd is how a session ended, for its audit event.
type SessionEnd struct {
	// Exit is the session's end; nil when its command never started.
	Exit *apiv1.ExecExit
	// Failure says why the session failed on the server's side, or why
	// its command did not start; "" when it ran to its end.
	Failure string
	// Status, when set, replaces the start's status code: the answer of a
	// session whose command did not start.
	Status int
}

// StartSession audits the start of an exec session into env before its
// command starts, and fails closed: without the event on the trail there
// is no session. The event holds who (the actor and the source of c),
// where, and what (req's command, terminal, user and directory, never its
// environment variables' values).
func (s *Service) StartSession(ctx context.Context, c Call, env apiv1.Environment, req apiv1.ExecRequest) (*Session, error) {
	sess := &Session{ID: NewID("ses_"), EnvironmentID: env.ID, ProjectID: env.ProjectID, call: c}
	ev := s.sessionEvent(c, ActionSessionStart, env.ID, env.ProjectID, apiv1.OutcomeSuccess)
	ev.Changes = &apiv1.Changes{After: execStart(sess.ID, req)}
	if err := s.appendAudit(ctx, ev); err != nil {
		return nil, err
	}
	sess.Started = ev.Time
	return sess, nil
}

// EndSession audits the end of sess: its exit code, signal, reason,
// duration and byte counts (never the bytes). It does not wait for the
// caller's context: a session whose client went away still ends on the
// trail.
func (s *Service) EndSession(ctx context.Context, sess *Session, end SessionEnd) error {
	c := sess.call
	if end.Status != 0 {
		c.Status = end.Status
	}
	outcome := apiv1.OutcomeSuccess
	if end.Failure != "" {
		outcome = apiv1.OutcomeFailure
	}
	ev := s.sessionEvent(c, ActionSessionEnd, sess.EnvironmentID, sess.ProjectID, outcome)
	ev.Reason = end.Failure
	var after any = struct {
		SessionID string `json:"session_id"`
	}{sess.ID}
	if end.Exit != nil {
		after = end.Exit
	}
	ev.Changes = &apiv1.Changes{After: after}
	ctx = context.WithoutCancel(ctx)
	err := s.appendAudit(ctx, ev)
	if errors.Is(err, store.ErrFull) {
		// A full disk makes the store release its reserve: this attempt
		// has room.
		err = s.appendAudit(ctx, ev)
	}
	return err
}

// SessionRefused is the audit event of an exec attempt refused before a
// session opened (a bad request, an environment that is not running, a
// token at its limit): a failed session.start with the reason, and what
// was asked when the request could be read (req nil otherwise). The API
// appends it with the other refusals (AppendRefusals).
func (s *Service) SessionRefused(c Call, envID, projectID string, req *apiv1.ExecRequest, reason string) apiv1.AuditEvent {
	ev := s.sessionEvent(c, ActionSessionStart, envID, projectID, apiv1.OutcomeFailure)
	ev.Reason = reason
	if req != nil {
		ev.Changes = &apiv1.Changes{After: execStart("", *req)}
	}
	return ev
}

func (s *Service) sessionEvent(c Call, action, envID, projectID, outcome string) apiv1.AuditEvent {
	return s.Event(c, action, ref("environment", envID), projectID, outcome)
}

func execStart(id string, req apiv1.ExecRequest) apiv1.ExecStart {
	return apiv1.ExecStart{SessionID: id, Command: req.Command, TTY: req.TTY, UID: req.UID, GID: req.GID, WorkingDir: req.WorkingDir}
}
