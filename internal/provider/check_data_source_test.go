package provider

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// checkConfig is api and db environments, a policy letting api reach db
// on port, and isolation_check asking, in a postcondition, that api may
// reach db on 5432; a check block asserts SSH into db stays denied (its
// data source outside the block: one inside is read on every plan, so
// the plan after apply would never be empty).
func checkConfig(project string, port int) string {
	return projectHCL("p", project) + environmentHCL("api", "p", "api", `tier = "app"`) + environmentHCL("db", "p", "db", `tier = "app"`) + fmt.Sprintf(`
resource "isolation_policy" "app" {
  project_id           = isolation_project.p.id
  name                 = "app"
  environment_selector = { match_labels = { tier = "app" } }
  policy_types         = ["ingress", "egress"]
  ingress = [{
    from  = [{ environment_selector = { match_labels = { tier = "app" } } }]
    ports = [{ port = %[1]d }]
  }]
  egress = [{
    to    = [{ environment_selector = { match_labels = { tier = "app" } } }]
    ports = [{ port = %[1]d }]
  }]
}

data "isolation_check" "api_to_db" {
  environment_id = isolation_environment.api.id
  direction      = "egress"
  protocol       = "tcp"
  address        = isolation_environment.db.address
  port           = 5432
  depends_on     = [isolation_policy.app]

  lifecycle {
    postcondition {
      condition     = self.allowed
      error_message = "api cannot reach db on 5432: ${coalesce(self.reason, "denied")}"
    }
  }
}

data "isolation_check" "db_ssh" {
  environment_id = isolation_environment.db.id
  direction      = "ingress"
  address        = isolation_environment.api.address
  port           = 22
  depends_on     = [isolation_policy.app]
}

check "db_has_no_ssh" {
  assert {
    condition     = !data.isolation_check.db_ssh.allowed
    error_message = "db takes SSH"
  }
}
`, port)
}

// The suite runs on Terraform and again on OpenTofu (make testacc-tofu),
// so both CLIs fail the apply.
func TestAccCheckDataSource_PostconditionFailsAnApplyWhosePolicyDeniesAnExpectedConnection(t *testing.T) {
	const check = "data.isolation_check.api_to_db"
	project := accName("acc-check")
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:           checkConfig(project, 5432),
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(check, tfjsonpath.New("allowed"), knownvalue.Bool(true)),
				statecheck.ExpectKnownValue(check, tfjsonpath.New("policy_name"), knownvalue.StringExact("app")),
				statecheck.CompareValuePairs(check, tfjsonpath.New("policy_id"), "isolation_policy.app", tfjsonpath.New("id"), compare.ValuesSame()),
				statecheck.ExpectKnownValue(check, tfjsonpath.New("rule_index"), knownvalue.Int64Exact(0)),
				statecheck.ExpectKnownValue("data.isolation_check.db_ssh", tfjsonpath.New("allowed"), knownvalue.Bool(false)),
				statecheck.ExpectKnownValue("data.isolation_check.db_ssh", tfjsonpath.New("policy_id"), knownvalue.Null()),
			},
		},
		{
			// The policy now allows 5433 only: the apply changes it, then
			// the check reads the new rules and fails the apply.
			Config:      checkConfig(project, 5433),
			ExpectError: errorWith("Resource postcondition failed", "api cannot reach db on 5432"),
		},
	}))
}

func TestAccCheckDataSource_RefusesAPortOnICMPAtPlanTime(t *testing.T) {
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{planFails(`
data "isolation_check" "x" {
  environment_id = "env_0123456789abcdef"
  direction      = "egress"
  protocol       = "icmp"
  address        = "198.18.0.1"
  port           = 8
}
`, errorWith("Invalid port"))}))
}

// The server's reason reaches the reason attribute, and a denied packet
// names no rule.
func TestCheckDataSource_AnswerCarriesTheServersReasonAndRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		res  apiv1.CheckResult
		want string // allowed policy_name rule_index reason
	}{
		{"allowed", apiv1.CheckResult{Allowed: true, Matched: &apiv1.Match{PolicyID: "pol_1", PolicyName: "db", RuleIndex: 2}, Reason: "rule 2 of db allows tcp/5432"},
			`true "db" 2 "rule 2 of db allows tcp/5432"`},
		{"denied with a reason", apiv1.CheckResult{Reason: "no policy selects this environment for egress"},
			`false <null> <null> "no policy selects this environment for egress"`},
		{"denied by a server that gives none", apiv1.CheckResult{}, `false <null> <null> <null>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var diags diag.Diagnostics
			m := checkDataSourceModel{Warnings: types.ListNull(types.StringType)}
			m.fromAPI(t.Context(), &tc.res, &diags)
			got := fmt.Sprintf("%s %s %s %s", m.Allowed, m.PolicyName, m.RuleIndex, m.Reason)
			if diags.HasError() || got != tc.want {
				t.Fatalf("got %s (%v), want %s", got, diags, tc.want)
			}
		})
	}
}
