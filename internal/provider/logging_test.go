package provider

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
)

// Not parallel: it sets the process-wide TF_LOG variables, which the
// in-process provider's log sink and the Terraform CLI both read.
func TestAccProvider_TokenNeverAppearsInTraceLogs(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "trace.log")
	t.Setenv("TF_LOG", "TRACE")          // the provider's log level (terraform-plugin-log sink)
	t.Setenv("TF_ACC_LOG", "TRACE")      // the Terraform CLI's log level
	t.Setenv("TF_ACC_LOG_PATH", logFile) // both write here

	name := accName("prj")
	withEnvToken := environmentConfig(name, accName("prj"), "a", `name = "traced"`)
	// The token in the provider block, too, from a sensitive variable (the
	// testing framework itself logs the configuration text, so the token
	// cannot be written into it literally).
	t.Setenv("TF_VAR_isolation_token", testAccToken)
	withConfigToken := fmt.Sprintf(`
variable "isolation_token" {
  type      = string
  sensitive = true
}

provider "isolation" {
  endpoint = %q
  token    = var.isolation_token
}
`, testAccEndpoint) + environmentConfig(name, accName("prj"), "a", `
  name        = "traced"
  description = "updated"`)
	resource.Test(t, testAccCase(t, []resource.TestStep{
		{Config: withEnvToken, ConfigPlanChecks: afterApply()},
		{ResourceName: environmentAddr, ImportState: true, ImportStateVerify: true},
		{Config: withConfigToken, ConfigPlanChecks: afterApply()},
		{
			// A failing call logs the server's problem; it must not carry the token either.
			Config:      withConfigToken + `data "isolation_project" "missing" { name = "no-such-project" }`,
			ExpectError: errorWith("no project is named"),
		},
	}))

	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("reading the trace log: %v", err)
	}
	logs := string(raw)
	// The scan proves something only if the log holds the provider's
	// requests and the CLI's own trace (Terraform and OpenTofu both log their Go runtime).
	for _, want := range []string{"isolation_client", "performing request", testAccEndpoint, "Go runtime version"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("the trace log (%d bytes) lacks %q: the test would prove nothing", len(logs), want)
		}
	}
	if i := strings.Index(logs, testAccToken); i >= 0 {
		t.Fatalf("the token appears in the TF_LOG=TRACE output: ...%s...", logs[max(0, i-1500):i])
	}
}
