package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
)

// Not parallel: it sets the process-wide TF_LOG variables, which the
// in-process provider's log sink and the Terraform CLI both read.
func TestAccProvider_TokenNeverAppearsInTraceLogs(t *testing.T) {
	readLog := traceLog(t)

	name := accName("prj")
	withEnvToken := environmentConfig(name, accName("prj"), "a", `name = "traced"`)
	// The token in the provider block, too, from a sensitive variable (the
	// testing framework itself logs the configuration text, so the token
	// cannot be written into it literally).
	t.Setenv("TF_VAR_isolation_token", testAccToken)
	withConfigToken := sharedServerAs("isolation_token") + environmentConfig(name, accName("prj"), "a", `
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

	logs := readLog(testAccEndpoint)
	if i := strings.Index(logs, testAccToken); i >= 0 {
		t.Fatalf("the token appears in the TF_LOG=TRACE output: ...%s...", logs[max(0, i-1500):i])
	}
}
