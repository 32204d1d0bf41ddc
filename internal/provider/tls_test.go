package provider

import (
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth/tlstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

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
