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

func TestAccEnvironmentsDataSource_ListsAProjectsEnvironmentsFilteredByLabels(t *testing.T) {
	name := accName("prj")
	config := fmt.Sprintf(`
resource "isolation_project" "p" {
  name = %q
}

resource "isolation_environment" "api" {
  project_id = isolation_project.p.id
  name       = "api"
  labels     = { team = "payments", tier = "dev" }
}

resource "isolation_environment" "db" {
  project_id = isolation_project.p.id
  name       = "db"
  labels     = { team = "payments", tier = "prod" }
}

resource "isolation_environment" "web" {
  project_id = isolation_project.p.id
  name       = "web"
  labels     = { team = "storefront", tier = "dev" }
}

data "isolation_environments" "all" {
  project_id = isolation_project.p.id
  depends_on = [isolation_environment.api, isolation_environment.db, isolation_environment.web]
}

data "isolation_environments" "payments_dev" {
  project_id = isolation_project.p.id
  labels     = { team = "payments", tier = "dev" }
  depends_on = [isolation_environment.api, isolation_environment.db, isolation_environment.web]
}

data "isolation_environments" "none" {
  project_id = isolation_project.p.id
  labels     = { team = "nobody" }
  depends_on = [isolation_environment.api, isolation_environment.db, isolation_environment.web]
}
`, name)
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config:           config,
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownValue("data.isolation_environments.all", tfjsonpath.New("ids"), knownvalue.ListSizeExact(3)),
			statecheck.ExpectKnownValue("data.isolation_environments.payments_dev", tfjsonpath.New("ids"), knownvalue.ListSizeExact(1)),
			statecheck.CompareValuePairs("data.isolation_environments.payments_dev", tfjsonpath.New("ids").AtSliceIndex(0),
				"isolation_environment.api", tfjsonpath.New("id"), compare.ValuesSame()),
			statecheck.ExpectKnownValue("data.isolation_environments.payments_dev", tfjsonpath.New("environments"), knownvalue.ListExact([]knownvalue.Check{
				knownvalue.ObjectPartial(map[string]knownvalue.Check{
					"name":   knownvalue.StringExact("api"),
					"state":  knownvalue.StringExact("ready"),
					"labels": knownvalue.MapExact(map[string]knownvalue.Check{"team": knownvalue.StringExact("payments"), "tier": knownvalue.StringExact("dev")}),
				}),
			})),
			statecheck.ExpectKnownValue("data.isolation_environments.none", tfjsonpath.New("environments"), knownvalue.ListSizeExact(0)),
		},
	}}))
}
