package provider

import (
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestAccEnvironmentDataSource_FindsAnEnvironmentByIDAndByProjectAndName(t *testing.T) {
	pa, pb := accName("prj"), accName("prj")
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config: environmentConfig(pa, pb, "a", `
  name      = "web"
  labels    = { app = "web" }
  resources = { cpu_millis = 1500 }`) + `
data "isolation_environment" "by_id" {
  id = isolation_environment.test.id
}

data "isolation_environment" "by_name" {
  project_id = isolation_environment.test.project_id
  name       = isolation_environment.test.name
}
`,
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.CompareValuePairs("data.isolation_environment.by_name", tfjsonpath.New("id"), environmentAddr, tfjsonpath.New("id"), compare.ValuesSame()),
				statecheck.CompareValuePairs("data.isolation_environment.by_id", tfjsonpath.New("address"), environmentAddr, tfjsonpath.New("address"), compare.ValuesSame()),
				statecheck.CompareValuePairs("data.isolation_environment.by_id", tfjsonpath.New("project_id"), "isolation_project.a", tfjsonpath.New("id"), compare.ValuesSame()),
				statecheck.ExpectKnownValue("data.isolation_environment.by_id", tfjsonpath.New("state"), knownvalue.StringExact("ready")),
				statecheck.ExpectKnownValue("data.isolation_environment.by_name", tfjsonpath.New("resources").AtMapKey("cpu_millis"), knownvalue.Int64Exact(1500)),
				statecheck.ExpectKnownValue("data.isolation_environment.by_name", tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{"app": knownvalue.StringExact("web")})),
				statecheck.ExpectKnownValue("data.isolation_environment.by_name", tfjsonpath.New("ttl_seconds"), knownvalue.Null()),
			},
		},
		{
			Config: environmentConfig(pa, pb, "a", `name = "web"`) + `
data "isolation_environment" "id_and_project" {
  id         = isolation_environment.test.id
  project_id = isolation_project.b.id
}
`,
			// project_id goes with name; with id it would be ambiguous.
			ExpectError: errorWith("Invalid Attribute Combination", "project_id", "name"),
		},
		{
			Config: environmentConfig(pa, pb, "a", `name = "web"`) + `
data "isolation_environment" "missing" {
  project_id = isolation_project.b.id
  name       = "web"
}
`,
			ExpectError: errorWith("Unable to read environment", "has no environment named", "web"),
		},
	}))
}
