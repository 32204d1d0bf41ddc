package provider

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth/tlstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// startServerWith starts an isolationd of the test's own on loopback, shut
// down with the test, with cfg's settings.
func startServerWith(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	srv, err := server.Start(t.Context(), observed(cfg))
	if err != nil {
		t.Fatalf("starting isolationd: %v", err)
	}
	transcript.remember(srv.AdminToken())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutting down isolationd: %v", err)
		}
	})
	return srv
}

// serverProviderConfig configures the provider for a server of the test's
// own; the token and TLS settings come in as variables, so the token is
// never written into a configuration the test framework logs.
const serverProviderConfig = `
variable "endpoint" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

variable "ca_cert_pem" {
  type    = string
  default = null
}

variable "insecure" {
  type    = bool
  default = null
}

variable "max_retries" {
  type    = number
  default = null
}

provider "isolation" {
  endpoint    = var.endpoint
  token       = var.token
  ca_cert_pem = var.ca_cert_pem
  insecure    = var.insecure
  max_retries = var.max_retries
}
`

// serverVariables are the variables of serverProviderConfig for srv, plus extra.
func serverVariables(srv *server.Server, extra config.Variables) config.Variables {
	v := config.Variables{"endpoint": config.StringVariable(srv.URL()), "token": config.StringVariable(srv.AdminToken())}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

func TestTLS_CACertPEMTrustsTheServerWithoutItTheCertificateIsRefusedInsecureSkipsTheCheck(t *testing.T) {
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
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
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
		},
	})
}
