package provider

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

const sessionType = "isolation_environment_session"

// sessionRig is a server of the test's own with an environment, and a
// developer token of its project for the provider.
type sessionRig struct {
	admin *client.Client
	url   string
	env   *apiv1.Environment
	dev   *apiv1.TokenCreated
}

func newSessionRig(t *testing.T) *sessionRig {
	t.Helper()
	srv := startServerWith(t, server.Config{})
	r := &sessionRig{url: srv.URL()}
	var err error
	if r.admin, err = client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	p, err := r.admin.Projects().Create(ctx, apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	if r.env, err = r.admin.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if r.dev, err = r.admin.Tokens().Create(ctx, apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID}); err != nil {
		t.Fatal(err)
	}
	return r
}

// sessionConfig is the ephemeral resource's configuration as the
// protocol carries it, for p's schema.
func sessionConfig(t *testing.T, p tfprotov6.ProviderServer, envID string, ttl any) (*tfprotov6.DynamicValue, tftypes.Object) {
	t.Helper()
	schemas, err := p.GetProviderSchema(t.Context(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	typ := schemas.EphemeralResourceSchemas[sessionType].ValueType().(tftypes.Object)
	cfg, err := tfprotov6.NewDynamicValue(typ, objectWith(typ, map[string]tftypes.Value{
		"environment_id": tftypes.NewValue(tftypes.String, envID),
		"ttl":            tftypes.NewValue(tftypes.String, ttl),
	}))
	if err != nil {
		t.Fatal(err)
	}
	return &cfg, typ
}

// whoamiStatus is the status GET /v1/whoami answers secret at endpoint.
func whoamiStatus(t *testing.T, endpoint, secret string) int {
	t.Helper()
	c, err := client.New(client.Config{Endpoint: endpoint, Token: secret, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(context.Background()); err != nil {
		if code := client.StatusCode(err); code != 0 {
			return code
		}
		t.Fatal(err)
	}
	return http.StatusOK
}

func TestEnvironmentSession_OpenMintsACredentialOfTheEnvironmentAndCloseRevokesIt(t *testing.T) {
	t.Parallel()
	r := newSessionRig(t)
	p := configuredProvider(t, r.url, r.dev.Secret)
	cfg, typ := sessionConfig(t, p, r.env.ID, nil)
	opened, err := p.OpenEphemeralResource(t.Context(), &tfprotov6.OpenEphemeralResourceRequest{TypeName: sessionType, Config: cfg})
	if err != nil || len(opened.Diagnostics) != 0 {
		t.Fatalf("open: %v %+v", err, opened.Diagnostics)
	}
	got, err := opened.Result.Unmarshal(typ)
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]tftypes.Value
	if err := got.As(&vals); err != nil {
		t.Fatal(err)
	}
	str := func(name string) string {
		var s string
		if err := vals[name].As(&s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return s
	}
	secret := str("token")
	if d, err := time.ParseDuration(defaultSessionTTL); err != nil || d != apiv1.DefaultSessionTTL {
		t.Fatalf("the default ttl %q is not the server's %s", defaultSessionTTL, apiv1.DefaultSessionTTL)
	}
	if str("ttl") != "15m" || !strings.HasPrefix(str("id"), "tok_") || str("expires_at") == "" || !mintedSecret.MatchString(secret) {
		t.Fatalf("result %v: want the default ttl, the token's id, expiry and secret", vals)
	}
	c, err := client.New(client.Config{Endpoint: r.url, Token: secret})
	if err != nil {
		t.Fatal(err)
	}
	who, err := c.WhoAmI(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if who.TokenID != str("id") || who.Role != apiv1.RoleSession || who.EnvironmentID != r.env.ID {
		t.Fatalf("the credential is %+v, want a session token of %s", who, r.env.ID)
	}

	closeReq := &tfprotov6.CloseEphemeralResourceRequest{TypeName: sessionType, Private: opened.Private}
	closed, err := p.CloseEphemeralResource(t.Context(), closeReq)
	if err != nil || len(closed.Diagnostics) != 0 {
		t.Fatalf("close: %v %+v", err, closed.Diagnostics)
	}
	if code := whoamiStatus(t, r.url, secret); code != http.StatusUnauthorized {
		t.Fatalf("the credential after Close answers %d, want 401", code)
	}
	// Closing what is revoked already (with its environment, or by hand) is fine.
	if again, err := p.CloseEphemeralResource(t.Context(), closeReq); err != nil || len(again.Diagnostics) != 0 {
		t.Fatalf("close again: %v %+v", err, again.Diagnostics)
	}
}

func TestEnvironmentSession_ATokenThatMayNotExecIsToldWhichRoleIsNeeded(t *testing.T) {
	t.Parallel()
	r := newSessionRig(t)
	viewer, err := r.admin.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: "bob", Role: apiv1.RoleViewer, ProjectID: r.env.ProjectID})
	if err != nil {
		t.Fatal(err)
	}
	p := configuredProvider(t, r.url, viewer.Secret)
	cfg, _ := sessionConfig(t, p, r.env.ID, "5m")
	opened, err := p.OpenEphemeralResource(t.Context(), &tfprotov6.OpenEphemeralResourceRequest{TypeName: sessionType, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if d := opened.Diagnostics; len(d) != 1 || d[0].Summary != "Unable to open environment session" ||
		!strings.Contains(d[0].Detail, "requires role developer") || !strings.Contains(d[0].Detail, "role does not allow") {
		t.Fatalf("diagnostics %+v, want one error naming the role needed", d)
	}
}

func TestEnvironmentSession_ABadTTLFailsValidationNamingTheAttribute(t *testing.T) {
	t.Parallel()
	p, err := testAccProtoV6ProviderFactories["isolation"]()
	if err != nil {
		t.Fatal(err)
	}
	for ttl, want := range map[string]string{
		"30s": "ttl must be between 1m and 24h, got 30s",
		"2d":  `ttl must be a duration such as 15m or 1h30m, got "2d"`,
	} {
		cfg, _ := sessionConfig(t, p, "env_1", ttl)
		resp, err := p.ValidateEphemeralResourceConfig(t.Context(), &tfprotov6.ValidateEphemeralResourceConfigRequest{TypeName: sessionType, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if d := resp.Diagnostics; len(d) != 1 || d[0].Summary != "Invalid ttl" || !strings.Contains(d[0].Detail, want) ||
			!d[0].Attribute.Equal(tftypes.NewAttributePath().WithAttributeName("ttl")) {
			t.Errorf("ttl %s: diagnostics %+v, want one error on ttl saying %q", ttl, d, want)
		}
	}
	cfg, _ := sessionConfig(t, p, "env_1", "1h30m")
	if resp, err := p.ValidateEphemeralResourceConfig(t.Context(), &tfprotov6.ValidateEphemeralResourceConfigRequest{TypeName: sessionType, Config: cfg}); err != nil || len(resp.Diagnostics) != 0 {
		t.Errorf("ttl 1h30m: %v %+v, want valid", err, resp.Diagnostics)
	}
}

// isolationdBinary is the isolationd CLI built from this tree, once per
// test binary, for provisioners to run.
var isolationdBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "isolationd-cli-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "isolationd")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/isolationd").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building isolationd: %v\n%s", err, out)
	}
	return bin, nil
})

// sessionProofConfig opens a session of var.environment_id and hands it
// to a provisioner, which runs isolationd env exec with it and leaves in
// var.out what it saw: the command's output, error and exit code, and the
// credential itself, for the test to try once the run is over.
var sessionProofConfig = `
terraform {
  required_providers {
    isolation = { source = "` + devrun.ProviderSource + `" }
  }
}

variable "environment_id" {
  type = string
}

variable "endpoint" {
  type = string
}

variable "out" {
  type = string
}

variable "isolationd" {
  type = string
}

ephemeral "isolation_environment_session" "shell" {
  environment_id = var.environment_id
  ttl            = "10m"
}

resource "terraform_data" "proof" {
  provisioner "local-exec" {
    command = <<-EOT
      printf '%s' "$ISOLATION_TOKEN" > "$OUT/session.token"
      "$ISOLATIOND" env exec "$ENV" -- cat /etc/acc-image > "$OUT/exec.out" 2> "$OUT/exec.err"
      echo $? > "$OUT/exec.code"
    EOT
    environment = {
      ISOLATION_ENDPOINT = var.endpoint
      ISOLATION_TOKEN    = ephemeral.isolation_environment_session.shell.token
      ENV                = var.environment_id
      OUT                = var.out
      ISOLATIOND         = var.isolationd
    }
  }
}
`

// The whole life of a session credential in a real Terraform (or
// OpenTofu) run, with the files the CLI writes: opened at plan and at
// apply, used by a provisioner to exec into the environment (on the runc
// rig a real command in the container; on the simulate rig the exec is
// authorized and refused as the runtime runs nothing), closed at the end
// of each, refused after, and absent from the saved plan, the state and
// the CLI's trace log.
func TestAccEnvironmentSession_ACredentialWorksDuringTheRunIsRefusedAfterAndIsInNoStateOrPlan(t *testing.T) {
	bin, err := isolationdBinary()
	if err != nil {
		t.Fatal(err)
	}
	onEachRig(t, func(t *testing.T, rig *workloadRig) {
		requireAcc(t)
		ctx := t.Context()
		endpoint, adminToken := testAccEndpoint, testAccToken
		if rig.srv != nil {
			endpoint, adminToken = rig.srv.URL(), rig.srv.AdminToken()
		}
		p, err := rig.client.Projects().Create(ctx, apiv1.ProjectCreate{Name: accName("prj")})
		if err != nil {
			t.Fatal(err)
		}
		env, err := rig.client.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "shell",
			Workload: &apiv1.WorkloadSpec{Image: accImages[0], Command: []string{"/bin/sh", "-c", "exec sleep 3600"}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = rig.client.Environments().Delete(context.Background(), env.ID, "")
			_ = rig.client.Environments().WaitDeleted(context.Background(), env.ID)
			_ = rig.client.Projects().Delete(context.Background(), p.ID, "")
		})
		if err := rig.reports(ctx, env.ID, "running (or recorded)", func(w *apiv1.Workload) bool { return w.State == rig.running }); err != nil {
			t.Fatal(err)
		}
		dev, err := rig.client.Tokens().Create(ctx, apiv1.TokenCreate{Name: "alice", Role: apiv1.RoleDeveloper, ProjectID: p.ID})
		if err != nil {
			t.Fatal(err)
		}

		dir, out := t.TempDir(), t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(sessionProofConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		traceFile := filepath.Join(t.TempDir(), "trace.log")
		var stderr strings.Builder
		tf := &devrun.Terraform{Path: os.Getenv("TF_ACC_TERRAFORM_PATH"), Dir: dir, Stderr: &stderr, Env: []string{
			"TF_CLI_CONFIG_FILE=" + devProvider.cliConfigFile(t), EnvEndpoint + "=" + endpoint, EnvToken + "=" + dev.Secret,
			"TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1", "TF_LOG=TRACE", "TF_LOG_PATH=" + traceFile,
			"TF_VAR_environment_id=" + env.ID, "TF_VAR_endpoint=" + endpoint, "TF_VAR_out=" + out, "TF_VAR_isolationd=" + bin,
		}}
		run := func(args ...string) string {
			t.Helper()
			b, err := tf.Output(ctx, args...)
			if err != nil {
				t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, b, stderr.String())
			}
			return string(b)
		}
		shown := run("plan", "-no-color", "-input=false", "-out=session.tfplan")
		shown += run("apply", "-no-color", "-input=false", "session.tfplan")
		planJSON := run("show", "-no-color", "-json", "session.tfplan")
		stateJSON := run("show", "-no-color", "-json")

		// It worked during the run: the provisioner's exec was authorized,
		// and on the runc rig ran in the container.
		read := func(name string) string {
			b, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatalf("the provisioner left no %s: %v", name, err)
			}
			return strings.TrimSpace(string(b))
		}
		secret := read("session.token")
		if !mintedSecret.MatchString(secret) || secret == dev.Secret {
			t.Fatalf("the provisioner's ISOLATION_TOKEN is not a minted session secret: the suite's secret scan would not see it")
		}
		code, stdout, errs := read("exec.code"), read("exec.out"), read("exec.err")
		switch {
		case rig.runs() && (code != "0" || stdout != "1"):
			t.Errorf("isolationd env exec with the session credential: exit %s, stdout %q, stderr %q; want 0 and the image's 1", code, stdout, errs)
		case !rig.runs() && (code != "125" || !strings.Contains(errs, apiv1.WorkloadNotRun)):
			t.Errorf("isolationd env exec with the session credential on the simulate rig: exit %s, stderr %q; want 125 and the 409 of a workload not_run", code, errs)
		}
		session := sessionTokenOfExec(t, endpoint, adminToken, env.ID)
		if session.Role != apiv1.RoleSession || session.EnvironmentID != env.ID || session.ParentID != dev.ID {
			t.Errorf("the exec's actor is %+v, want a session token of %s minted by %s", session, env.ID, dev.ID)
		}

		// Closed when the run ended: refused from then on; the provider's
		// own token still works.
		if got := whoamiStatus(t, endpoint, secret); got != http.StatusUnauthorized {
			t.Errorf("the session credential after the run answers %d, want 401", got)
		}
		if got := whoamiStatus(t, endpoint, dev.Secret); got != http.StatusOK {
			t.Errorf("the provider's token after the run answers %d, want 200", got)
		}

		// In no file of the run: the saved plan (every file of the
		// archive), the state, what the CLI showed and logged. No secret
		// minted by isolationd is there at all, so neither is the
		// credential opened at plan time, which nobody saw.
		files := map[string]string{"terraform show -json of the plan": planJSON, "terraform show -json": stateJSON, "the CLI's output": shown + stderr.String()}
		for name, path := range map[string]string{"the state file": filepath.Join(dir, "terraform.tfstate"), "the trace log": traceFile} {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files[name] = string(b)
		}
		maps.Copy(files, planArchive(t, filepath.Join(dir, "session.tfplan")))
		if !strings.Contains(files["the trace log"], "OpenEphemeralResource") || !strings.Contains(files["the state file"], "terraform_data") {
			t.Fatal("the trace log shows no ephemeral resource opened, or the state no provisioned resource: the scan would prove nothing")
		}
		for name, text := range files {
			if strings.Contains(text, secret) || strings.Contains(text, dev.Secret) || mintedSecret.MatchString(text) {
				t.Errorf("a token secret appears in %s", name)
			}
		}
		run("destroy", "-no-color", "-input=false", "-auto-approve")
	})
}

// planArchive is the text of every file of a saved plan (a zip archive),
// by name.
func planArchive(t *testing.T, path string) map[string]string {
	t.Helper()
	z, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("the saved plan: %v", err)
	}
	defer z.Close()
	files := map[string]string{}
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		files["the saved plan's "+f.Name] = string(b)
	}
	if len(files) == 0 {
		t.Fatal("the saved plan holds no files")
	}
	return files
}

// sessionTokenOfExec is the token that exec'd into environment envID, as
// the audit trail shows it: the actor of its session.start, and what that
// token's token.create recorded.
func sessionTokenOfExec(t *testing.T, endpoint, adminToken, envID string) apiv1.Token {
	t.Helper()
	starts := auditEvents(t, endpoint, adminToken, url.Values{"action": {"session.start"}, "resource_id": {envID}})
	if len(starts) == 0 {
		t.Fatalf("no session.start of %s on the audit trail", envID)
	}
	created := auditEvents(t, endpoint, adminToken, url.Values{"action": {"token.create"}, "resource_id": {starts[0].Actor.TokenID}})
	if len(created) != 1 {
		t.Fatalf("token.create of %s: %d events", starts[0].Actor.TokenID, len(created))
	}
	var tok apiv1.Token
	b, err := json.Marshal(created[0].Changes.After)
	if err == nil {
		err = json.Unmarshal(b, &tok)
	}
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// auditEvents lists the audit events q selects, as the admin.
func auditEvents(t *testing.T, endpoint, adminToken string, q url.Values) []apiv1.AuditEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint+"/v1/audit-events?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var page apiv1.List[apiv1.AuditEvent]
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/audit-events?%s: %d, %v", q.Encode(), res.StatusCode, err)
	}
	return page.Items
}
