package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

const assertionAddr = "isolation_assertion.test"

// assertionConfig is a project with environments web and db, web's
// egress open, db's ingress open to web on dbPort, and
// isolation_assertion.test (body) depending on both policies.
func assertionConfig(project string, dbPort int, body string) string {
	return projectHCL("a", project) +
		environmentHCL("web", "a", "web", `tier = "web"`) +
		environmentHCL("db", "a", "db", `tier = "db"`) + fmt.Sprintf(`
resource "isolation_policy" "egress" {
  project_id           = isolation_project.a.id
  name                 = "open-egress"
  environment_selector = {}
  policy_types         = ["egress"]
  egress               = [{ to = [{ cidr = "0.0.0.0/0" }] }]
}

resource "isolation_policy" "db" {
  project_id           = isolation_project.a.id
  name                 = "db-ingress"
  environment_selector = { match_labels = { tier = "db" } }
  policy_types         = ["ingress"]
  ingress = [{
    from  = [{ environment_selector = { match_labels = { tier = "web" } } }]
    ports = [{ port = %d }]
  }]
}

resource "isolation_assertion" "test" {
  project_id = isolation_project.a.id
%s
  depends_on = [isolation_policy.egress, isolation_policy.db, isolation_environment.web, isolation_environment.db]
}
`, dbPort, body)
}

const assertionWebReachesDB = `
  name   = "web-reaches-db"
  from   = { environment = "web" }
  to     = { environment_selector = { match_labels = { tier = "db" } } }
  port   = 5432
  expect = "allow"
`

// importAssertionID is the PROJECT_ID/ASSERTION_ID an assertion imports by.
func importAssertionID(s *terraform.State) (string, error) {
	rs, ok := s.RootModule().Resources[assertionAddr]
	if !ok {
		return "", fmt.Errorf("%s is not in the state", assertionAddr)
	}
	return rs.Primary.Attributes["project_id"] + "/" + rs.Primary.ID, nil
}

func TestAccAssertion_CreateImportReplaceAndDestroy(t *testing.T) {
	project := accName("prj")
	var id string
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:           assertionConfig(project, 5432, assertionWebReachesDB),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(assertionAddr, plancheck.ResourceActionCreate)),
			ConfigStateChecks: []statecheck.StateCheck{
				captureID(assertionAddr, &id),
				statecheck.ExpectKnownValue(assertionAddr, tfjsonpath.New("protocol"), knownvalue.StringExact("tcp")),
				statecheck.ExpectKnownValue(assertionAddr, tfjsonpath.New("description"), knownvalue.StringExact("")),
				statecheck.ExpectKnownValue(assertionAddr, tfjsonpath.New("from").AtMapKey("environment"), knownvalue.StringExact("web")),
				statecheck.ExpectKnownValue(assertionAddr, tfjsonpath.New("to").AtMapKey("cidr"), knownvalue.Null()),
			},
		},
		{ResourceName: assertionAddr, ImportState: true, ImportStateVerify: true, ImportStateIdFunc: importAssertionID},
		{
			// Assertions have no PATCH: a change replaces it.
			Config: assertionConfig(project, 5432, `
  name     = "web-no-ssh-to-db"
  from     = { environment_selector = { match_expressions = [{ key = "tier", operator = "In", values = ["web"] }] } }
  to       = { environment = "db" }
  port     = 22
  expect   = "deny"
`),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(assertionAddr, plancheck.ResourceActionReplace)),
			ConfigStateChecks: []statecheck.StateCheck{
				expectID(assertionAddr, &id, false),
				statecheck.ExpectKnownValue(assertionAddr, tfjsonpath.New("from").AtMapKey("environment_selector").AtMapKey("match_expressions").AtSliceIndex(0).AtMapKey("operator"), knownvalue.StringExact("In")),
			},
		},
		// Selectors with expressions read back as they were written.
		{ResourceName: assertionAddr, ImportState: true, ImportStateVerify: true, ImportStateIdFunc: importAssertionID},
	}))
}

func TestAccAssertion_APolicyChangeThatBreaksItFailsTheApplyAndChangesNothing(t *testing.T) {
	project := accName("prj")
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{Config: assertionConfig(project, 5432, assertionWebReachesDB), ConfigPlanChecks: afterApply()},
		{
			Config:      assertionConfig(project, 5433, assertionWebReachesDB),
			ExpectError: errorWith("Unable to update policy", "breaks assertion", "web-reaches-db", "tcp/5432 from web", "nothing was changed"),
		},
		{
			// The policy kept its port: the configuration of the first
			// step plans nothing.
			Config:           assertionConfig(project, 5432, assertionWebReachesDB),
			ConfigPlanChecks: noChange,
		},
	}))
}

func TestAccAssertion_OneThatDoesNotHoldFailsTheApply(t *testing.T) {
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config: assertionConfig(accName("prj"), 5432, `
  name   = "web-ssh-db"
  from   = { environment = "web" }
  to     = { environment = "db" }
  port   = 22
  expect = "allow"
`),
		ExpectError: errorWith("Unable to create assertion", "does not hold now", "tcp/22 from web", "depends_on"),
	}}))
}

func TestAccAssertion_DeletedOutsideTerraformIsRecreated(t *testing.T) {
	project := accName("prj")
	config := assertionConfig(project, 5432, assertionWebReachesDB)
	var projectID string
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{Config: config, ConfigStateChecks: []statecheck.StateCheck{captureID("isolation_project.a", &projectID)}},
		{
			PreConfig: outside(t, func(ctx context.Context) error {
				list, err := testAccClient.Assertions(projectID).List(ctx)
				if err != nil || len(list) != 1 {
					return fmt.Errorf("listing the project's assertions: %v (%d found)", err, len(list))
				}
				return testAccClient.Assertions(projectID).Delete(ctx, list[0].ID, "")
			}),
			Config:           config,
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(assertionAddr, plancheck.ResourceActionCreate)),
		},
	}))
}

func TestAccAssertion_InvalidValuesFailAtPlanNamingTheAttribute(t *testing.T) {
	config := func(body string) string {
		return projectHCL("a", "plan-only") + `
resource "isolation_assertion" "test" {
  project_id = isolation_project.a.id
  name       = "x"
` + body + `
}
`
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		planFails(config(`
  from   = { environment = "web" }
  to     = { cidr = "10.0.0.1/8" }
  port   = 22
  expect = "deny"`), regexp.MustCompile(`(?s)Invalid cidr.*to\.cidr must not have host bits set: use 10\.0\.0\.0/8`)),
		planFails(config(`
  from   = { environment = "web" }
  to     = { environment = "db", fqdn = "a.example" }
  port   = 22
  expect = "deny"`), regexp.MustCompile(`(?s)Invalid to.*must set exactly one of environment, cidr, fqdn`)),
		planFails(config(`
  from   = { environment = "web" }
  to     = { environment = "db" }
  expect = "maybe"`), regexp.MustCompile(`(?s)Invalid port.*must be between 1 and 65535.*Invalid expect.*must be one of allow, deny`)),
		planFails(config(`
  from   = { environment_selector = { match_expressions = [{ key = "tier", operator = "In" }] } }
  to     = { environment = "db" }
  port   = 22
  expect = "deny"`), regexp.MustCompile(`(?s)match_expressions.*values`)),
	}))
}
