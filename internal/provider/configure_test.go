package provider

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth/tlstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// configureError is Configure's one error diagnostic; the test fails on
// anything else, or when the diagnostic shows the secret.
func configureError(t *testing.T, endpoint, secret string) *tfprotov6.Diagnostic {
	t.Helper()
	_, diags := configureProvider(t, endpoint, secret)
	if len(diags) != 1 || diags[0].Severity != tfprotov6.DiagnosticSeverityError {
		t.Fatalf("Configure diagnostics = %+v, want one error", diags)
	}
	d := diags[0]
	if strings.Contains(d.Summary+d.Detail, secret) {
		t.Fatalf("the diagnostic shows the token's secret: %s: %s", d.Summary, d.Detail)
	}
	return d
}

// onAttribute reports whether d is about the provider attribute name.
func onAttribute(d *tfprotov6.Diagnostic, name string) bool {
	return d.Attribute != nil && d.Attribute.Equal(tftypes.NewAttributePath().WithAttributeName(name))
}

func TestConfigure_ARefusedTokenFailsOnTheTokenAttribute(t *testing.T) {
	t.Parallel()
	srv := startExtraServer(t, server.Config{})
	d := configureError(t, srv.URL, "isot_nobody-was-ever-given-this-one")
	if !onAttribute(d, "token") || d.Summary != "Invalid provider configuration: token" ||
		!strings.Contains(d.Detail, "refused the token") || !strings.Contains(d.Detail, EnvToken) {
		t.Errorf("diagnostic = %q %q on %v, want the token refused, naming %s", d.Summary, d.Detail, d.Attribute, EnvToken)
	}
}

func TestConfigure_AnEndpointThatIsNotIsolationdFailsOnTheEndpointAttribute(t *testing.T) {
	t.Parallel()
	site := t.TempDir()
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("<html>It works!</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		handler http.Handler
		want    string
	}{
		"a static file server": {http.FileServer(http.Dir(site)), "is not isolationd"},
		"a site answering HTML to everything": {http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<!doctype html><title>Welcome</title>")) // the provider reports what it read
		}), "is not isolationd"},
		"a page echoing the request's headers": {http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no page here for "+r.Header.Get("Authorization"), http.StatusNotFound)
		}), "is not isolationd"},
		// An isolationd from before /v1/whoami, or an endpoint ending in /v1.
		"a server of problems without the route": {http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", apiv1.MediaProblem)
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(apiv1.Problem{Type: "https://isolation.dev/problems/not-found", Title: "Not found", Status: 404, Detail: "no route matches GET /v1/v1/whoami"})
		}), "has no GET /v1/whoami"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := httptest.NewServer(c.handler)
			t.Cleanup(fake.Close)
			d := configureError(t, fake.URL, "isot_a-real-looking-secret-0123456789")
			if !onAttribute(d, "endpoint") || d.Summary != "Invalid provider configuration: endpoint" ||
				!strings.Contains(d.Detail, c.want) || !strings.Contains(d.Detail, EnvEndpoint) {
				t.Errorf("diagnostic = %q %q on %v, want %q naming %s", d.Summary, d.Detail, d.Attribute, c.want, EnvEndpoint)
			}
		})
	}
}

func TestConfigure_AnEndpointNobodyListensOnFailsBeforeAnyRead(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close()
	d := configureError(t, endpoint, "isot_a-real-looking-secret-0123456789")
	if d.Summary != "Unable to reach isolationd" || !strings.Contains(d.Detail, endpoint) {
		t.Errorf("diagnostic = %q %q, want isolationd out of reach at %s", d.Summary, d.Detail, endpoint)
	}
}

func TestAccProvider_CACertPEMTrustsTheServerWithoutItTheCertificateIsRefusedInsecureSkipsTheCheck(t *testing.T) {
	ca, err := tlstest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.ServerCert(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := startServerWith(t, server.Config{TLSCert: certFile, TLSKey: keyFile})
	cfg := serverProviderConfig + `
resource "isolation_project" "tls" {
  name = "over-tls"
}
`
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:           cfg,
			ConfigVariables:  serverVariables(srv, config.Variables{"ca_cert_pem": config.StringVariable(ca.PEM)}),
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("isolation_project.tls", tfjsonpath.New("name"), knownvalue.StringExact("over-tls")),
			},
		},
		{
			// The system's trust store does not know the test's CA.
			Config:          cfg,
			ConfigVariables: serverVariables(srv, nil),
			PlanOnly:        true,
			ExpectError:     errorWith("Unable to reach isolationd", "x509: certificate signed by unknown authority"),
		},
		{
			Config:           cfg,
			ConfigVariables:  serverVariables(srv, config.Variables{"insecure": config.BoolVariable(true)}),
			ConfigPlanChecks: afterApply(),
		},
	}))
}

func TestConfigure_ASimulateServerIsWarnedAboutOncePerServerInARun(t *testing.T) {
	t.Parallel()
	one, two := startExtraServer(t, server.Config{}), startExtraServer(t, server.Config{})
	// A provider of its own, as one run of Terraform starts one provider
	// process; each provider block (alias) configures it once.
	p, err := providerserver.NewProtocol6WithError(New("test")())()
	if err != nil {
		t.Fatal(err)
	}
	warned := func(diags []*tfprotov6.Diagnostic, endpoint string) bool {
		t.Helper()
		if len(diags) != 1 {
			return false
		}
		d := diags[0]
		return d.Severity == tfprotov6.DiagnosticSeverityWarning && d.Summary == simulateWarning &&
			strings.Contains(d.Detail, endpoint) && strings.Contains(d.Detail, "nothing is isolated there") &&
			strings.Contains(d.Detail, "--driver netns")
	}
	if diags := configure(t, p, one.URL, one.Token); !warned(diags, one.URL) {
		t.Fatalf("first provider block for a simulate server: diagnostics %+v, want the simulate warning naming %s", diags, one.URL)
	}
	if diags := configure(t, p, one.URL, one.Token); len(diags) != 0 {
		t.Errorf("second provider block for the same server: diagnostics %+v, want none (warned once already)", diags)
	}
	if diags := configure(t, p, two.URL, two.Token); !warned(diags, two.URL) {
		t.Errorf("a block for another simulate server: diagnostics %+v, want its own warning", diags)
	}
}

func TestConfigure_AServerOfARealDriverOrOfNoDriverNamedIsNotWarnedAbout(t *testing.T) {
	t.Parallel()
	// What a netns server answers needs no root to say; a server from
	// before whoami named its driver names none.
	for _, driver := range []string{apiv1.DriverNetns, ""} {
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(apiv1.WhoAmI{TokenID: "tok-1", Name: "fake", Role: apiv1.RoleAdmin, // the provider reads what it gets
				Server: apiv1.ServerInfo{Name: apiv1.ServerName, Driver: driver, Runtime: apiv1.RuntimeRunc}})
		}))
		t.Cleanup(fake.Close)
		p, err := providerserver.NewProtocol6WithError(New("test")())()
		if err != nil {
			t.Fatal(err)
		}
		if diags := configure(t, p, fake.URL, "isot_a-real-looking-secret-0123456789"); len(diags) != 0 {
			t.Errorf("driver %q: diagnostics %+v, want none", driver, diags)
		}
	}
}

func TestAccProvider_ARunAgainstASimulateServerShowsOnceThatNothingIsIsolated(t *testing.T) {
	requireAcc(t)
	srv := startExtraServer(t, server.Config{})
	// The real CLI, which terraform-plugin-testing hides warnings from, and
	// two provider blocks for one server, each with something to read, so
	// that Terraform configures both.
	dir := t.TempDir()
	config := fmt.Sprintf(`
terraform {
  required_providers {
    isolation = { source = %q }
  }
}

provider "isolation" {}

provider "isolation" {
  alias = "again"
}

data "isolation_tokens" "one" {}

data "isolation_tokens" "two" {
  provider = isolation.again
}
`, devrun.ProviderSource)
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	tf := &devrun.Terraform{Path: os.Getenv("TF_ACC_TERRAFORM_PATH"), Dir: dir, Stderr: &stderr, Env: []string{
		"TF_CLI_CONFIG_FILE=" + devProvider.cliConfigFile(t), EnvEndpoint + "=" + srv.URL, EnvToken + "=" + srv.Token,
		"TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
	}}
	out, err := tf.Output(t.Context(), "apply", "-auto-approve", "-no-color", "-input=false")
	if err != nil {
		t.Fatalf("terraform apply: %v\n%s%s", err, out, stderr.String())
	}
	shown := string(out) + stderr.String()
	// Terraform runs a provider process per provider block and per walk
	// (the apply's plan, then the apply), each configured once and each
	// warning once; it folds warnings of one summary into the first it
	// shows ("and 3 more similar warnings elsewhere").
	if n := strings.Count(shown, "Warning: "+simulateWarning); n != 1 {
		t.Errorf("the apply shows the simulate warning %d times, want once:\n%s", n, shown)
	}
	if !strings.Contains(shown, srv.URL) {
		t.Errorf("the warning does not name the server %s:\n%s", srv.URL, shown)
	}
}
