package provider

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestAccProjectDataSource_FindsAProjectByIDAndByName(t *testing.T) {
	name := accName("prj")
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config: projectConfig(name, `
  description = "found"
  labels      = { team = "payments" }`) + `
data "isolation_project" "by_id" {
  id = isolation_project.test.id
}

data "isolation_project" "by_name" {
  name = isolation_project.test.name
}
`,
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.CompareValuePairs("data.isolation_project.by_id", tfjsonpath.New("name"), projectAddr, tfjsonpath.New("name"), compare.ValuesSame()),
			statecheck.CompareValuePairs("data.isolation_project.by_name", tfjsonpath.New("id"), projectAddr, tfjsonpath.New("id"), compare.ValuesSame()),
			statecheck.ExpectKnownValue("data.isolation_project.by_name", tfjsonpath.New("description"), knownvalue.StringExact("found")),
			statecheck.ExpectKnownValue("data.isolation_project.by_name", tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{"team": knownvalue.StringExact("payments")})),
			statecheck.CompareValuePairs("data.isolation_project.by_id", tfjsonpath.New("created_at"), projectAddr, tfjsonpath.New("created_at"), compare.ValuesSame()),
		},
	}}))
}

func TestAccProjectDataSource_UnknownNameOrNoLookupKeyIsAnError(t *testing.T) {
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:      fmt.Sprintf(`data "isolation_project" "x" { name = %q }`, accName("nope")),
			ExpectError: errorWith("Unable to read project", "no project is named"),
		},
		{
			Config:      `data "isolation_project" "x" {}`,
			ExpectError: errorWith("Missing Attribute Configuration", "id", "name"),
		},
	}))
}
