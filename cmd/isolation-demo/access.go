package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
)

// With the runc runtime the demo works in the environments as a developer
// would: it makes a developer token of the quickstart's project, and runs
// the isolationd CLI with it (env list, env exec), so that the connections
// come from inside the api container, through the policy; it shows a
// viewer refused, a session token working until it is revoked, and the
// sessions on the audit trail.

// cliTimeout bounds every CLI command of the demo.
const cliTimeout = 30 * time.Second

// cliRun is one run of the isolationd CLI.
type cliRun struct {
	stdout, stderr string
	code           int
}

// cli runs bin/isolationd with args against the demo's server, as the
// holder of token, and prints the command line and what it printed.
func (d *demo) cli(ctx context.Context, token string, args ...string) (cliRun, error) {
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.binDir, devrun.ServerBinary), args...)
	cmd.Env = []string{"ISOLATION_ENDPOINT=" + d.server.URL, "ISOLATION_TOKEN=" + token, "PATH=/usr/bin:/bin"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	run := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		run.code = exitErr.ExitCode()
	case err != nil:
		return run, fmt.Errorf("isolationd %s: %w", strings.Join(args, " "), err)
	}
	fmt.Fprintf(d.out, "$ isolationd %s\n", shellJoin(args))
	for _, out := range []string{run.stdout, run.stderr} {
		for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			if line != "" {
				fmt.Fprintf(d.out, "  %s\n", line)
			}
		}
	}
	fmt.Fprintf(d.out, "  (exit %d)\n", run.code)
	return run, nil
}

// expectCLI runs the CLI and fails unless it exits with code and its
// output holds want.
func (d *demo) expectCLI(ctx context.Context, token string, code int, want string, args ...string) error {
	run, err := d.cli(ctx, token, args...)
	if err != nil {
		return err
	}
	if run.code != code || !strings.Contains(run.stdout+run.stderr, want) {
		return fmt.Errorf("isolationd %s: exit %d, output %q; want exit %d and %q", shellJoin(args), run.code, run.stdout+run.stderr, code, want)
	}
	return nil
}

func (d *demo) developerAccess(ctx context.Context) error {
	if d.netnsPrefix == "" {
		return nil
	}
	outs, err := d.outputs(ctx)
	if err != nil {
		return err
	}
	d.section("A developer in the environments: exec over the API, every session audited")
	expires := time.Now().Add(time.Hour)
	dev, err := d.api.Tokens().Create(ctx, apiv1.TokenCreate{Name: "demo-developer", Role: apiv1.RoleDeveloper, ProjectID: outs.ProjectID, ExpiresAt: &expires})
	if err != nil {
		return err
	}
	viewer, err := d.api.Tokens().Create(ctx, apiv1.TokenCreate{Name: "demo-viewer", Role: apiv1.RoleViewer, ProjectID: outs.ProjectID, ExpiresAt: &expires})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "POST /v1/tokens: %s (role developer: reads and execs into the project's environments, nothing else) and %s (role viewer)\n", dev.ID, viewer.ID)
	since := time.Now()

	db := outs.Environments["db"].Address
	steps := []struct {
		token, want string
		code        int
		args        []string
	}{
		{dev.Secret, "api", 0, []string{"env", "list"}},
		// From inside api's container, through the policy: db's port is open...
		{dev.Secret, "hello from api, over exec", 0, []string{"env", "exec", "quickstart/api", "--", "sh", "-c", "echo hello from api, over exec | nc -w 2 " + db + " 5432"}},
		// ...and its other ports are not: the SYN is dropped.
		{dev.Secret, "", 1, []string{"env", "exec", "quickstart/api", "--", "nc", "-w", "1", db, "22"}},
		// The command's exit code is the CLI's.
		{dev.Secret, "uid=0", 7, []string{"env", "exec", "quickstart/api", "--", "sh", "-c", "id; exit 7"}},
		{viewer.Secret, "403", 125, []string{"env", "exec", "quickstart/api", "--", "id"}},
	}
	for _, s := range steps {
		if err := d.expectCLI(ctx, s.token, s.code, s.want, s.args...); err != nil {
			return err
		}
	}

	// A session token: exec into one environment, until it is revoked.
	apiID := outs.Environments["api"].ID
	sess, err := d.api.SessionTokens(apiID).Create(ctx, apiv1.SessionTokenCreate{TTL: "5m"})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "POST /v1/environments/%s/session-tokens {\"ttl\": \"5m\"}: %s, exec into api only, until %s\n", apiID, sess.ID, sess.ExpiresAt.Format(time.RFC3339))
	if err := d.expectCLI(ctx, sess.Secret, 0, "hostname: api", "env", "exec", apiID, "--", "sh", "-c", "echo hostname: $(hostname)"); err != nil {
		return err
	}
	if err := d.api.SessionTokens(apiID).Delete(ctx, sess.ID); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "DELETE /v1/environments/%s/session-tokens/%s: revoked\n", apiID, sess.ID)
	if err := d.expectCLI(ctx, sess.Secret, 125, "401", "env", "exec", apiID, "--", "true"); err != nil {
		return err
	}

	if err := d.showSessions(ctx, since); err != nil {
		return err
	}
	for _, t := range []string{dev.ID, viewer.ID} {
		if err := d.api.Tokens().Delete(ctx, t, ""); err != nil {
			return err
		}
	}
	return nil
}

// showSessions prints the sessions' audit events since the step began:
// each start and its end.
func (d *demo) showSessions(ctx context.Context, since time.Time) error {
	events, err := d.api.Audit().List(ctx, client.ListOptions{Filters: url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}}})
	if err != nil {
		return err
	}
	starts, ends := 0, 0
	fmt.Fprintln(d.out, "GET /v1/audit-events: the sessions (their content is never recorded)")
	for _, e := range events {
		switch {
		case e.Action == "session.start" && e.Outcome == apiv1.OutcomeSuccess:
			starts++
		case e.Action == "session.end":
			ends++
		case e.Outcome == apiv1.OutcomeDenied && strings.Contains(e.Resource.ID, "env_"):
		default:
			continue
		}
		fmt.Fprintf(d.out, "  #%-4d %-14s %-8s %-16s %s\n", e.Seq, e.Action, e.Outcome, e.Actor.Name, sessionDetail(e))
	}
	// Four sessions: three of the developer's, one of the session token's.
	if starts != 4 || ends != 4 {
		return fmt.Errorf("the audit trail has %d session starts and %d ends since the step began, want 4 of each", starts, ends)
	}
	return nil
}

// sessionDetail is what an audit event of a session says, in a line.
func sessionDetail(e apiv1.AuditEvent) string {
	if e.Changes == nil || e.Changes.After == nil {
		return e.Reason
	}
	m, ok := e.Changes.After.(map[string]any)
	if !ok {
		return e.Reason
	}
	if e.Action == "session.end" {
		return fmt.Sprintf("exit %v, %v, %v ms, %v bytes out", m["exit_code"], m["reason"], m["duration_ms"], m["bytes_out"])
	}
	return fmt.Sprintf("%v %v", m["session_id"], m["command"])
}
