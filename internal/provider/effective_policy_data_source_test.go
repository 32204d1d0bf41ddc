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

// effectivePolicyConfig is a project with an api and a db environment and
// a policy that lets api reach db on 5432 and db reach the internet on 443,
// with the effective policy of both environments.
func effectivePolicyConfig(project string) string {
	return fmt.Sprintf(`
resource "isolation_project" "p" {
  name = %q
}

resource "isolation_environment" "api" {
  project_id = isolation_project.p.id
  name       = "api"
  labels     = { app = "api" }
}

resource "isolation_environment" "db" {
  project_id = isolation_project.p.id
  name       = "db"
  labels     = { app = "db" }
}

resource "isolation_policy" "db" {
  project_id           = isolation_project.p.id
  name                 = "db"
  environment_selector = { match_labels = { app = "db" } }
  policy_types         = ["ingress", "egress"]
  ingress = [{
    from  = [{ environment_selector = { match_labels = { app = "api" } } }]
    ports = [{ port = 5432 }]
  }]
  egress = [{
    to    = [{ cidr = "0.0.0.0/0", except = ["10.0.0.0/8"] }]
    ports = [{ port = 443 }]
  }]
}

data "isolation_effective_policy" "db" {
  environment_id = isolation_environment.db.id
  depends_on     = [isolation_policy.db, isolation_environment.api]
}

data "isolation_effective_policy" "api" {
  environment_id = isolation_environment.api.id
  depends_on     = [isolation_policy.db]
}
`, project)
}

func TestAccEffectivePolicyDataSource_MergesSelectingPoliciesAndResolvesPeers(t *testing.T) {
	const db, api = "data.isolation_effective_policy.db", "data.isolation_effective_policy.api"
	rule0 := tfjsonpath.New("ingress").AtSliceIndex(0)
	peer0 := rule0.AtMapKey("peers").AtSliceIndex(0)
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{{
			Config:           effectivePolicyConfig(accName("acc-eff")),
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.CompareValuePairs(db, tfjsonpath.New("address"), "isolation_environment.db", tfjsonpath.New("address"), compare.ValuesSame()),
				statecheck.ExpectKnownValue(db, tfjsonpath.New("policies"), knownvalue.ListExact([]knownvalue.Check{
					knownvalue.ObjectPartial(map[string]knownvalue.Check{"name": knownvalue.StringExact("db")}),
				})),
				statecheck.CompareValuePairs(db, tfjsonpath.New("policies").AtSliceIndex(0).AtMapKey("id"), "isolation_policy.db", tfjsonpath.New("id"), compare.ValuesSame()),
				// The ingress rule's selector peer is resolved to the api environment.
				statecheck.ExpectKnownValue(db, rule0.AtMapKey("policy_name"), knownvalue.StringExact("db")),
				statecheck.ExpectKnownValue(db, peer0.AtMapKey("environment_selector"), knownvalue.ObjectExact(map[string]knownvalue.Check{
					"match_labels": knownvalue.MapExact(map[string]knownvalue.Check{"app": knownvalue.StringExact("api")}),
				})),
				statecheck.ExpectKnownValue(db, peer0.AtMapKey("environments"), knownvalue.ListSizeExact(1)),
				statecheck.CompareValuePairs(db, peer0.AtMapKey("environments").AtSliceIndex(0).AtMapKey("id"), "isolation_environment.api", tfjsonpath.New("id"), compare.ValuesSame()),
				statecheck.CompareValuePairs(db, peer0.AtMapKey("environments").AtSliceIndex(0).AtMapKey("address"), "isolation_environment.api", tfjsonpath.New("address"), compare.ValuesSame()),
				statecheck.ExpectKnownValue(db, rule0.AtMapKey("ports"), knownvalue.SetExact([]knownvalue.Check{port("tcp", 5432, 0)})),
				statecheck.ExpectKnownValue(db, tfjsonpath.New("egress"), knownvalue.ListExact([]knownvalue.Check{
					knownvalue.ObjectPartial(map[string]knownvalue.Check{
						"peers": knownvalue.ListExact([]knownvalue.Check{knownvalue.ObjectPartial(map[string]knownvalue.Check{
							"cidr":   knownvalue.StringExact("0.0.0.0/0"),
							"except": knownvalue.SetExact([]knownvalue.Check{knownvalue.StringExact("10.0.0.0/8")}),
						})}),
						"ports": knownvalue.SetExact([]knownvalue.Check{port("tcp", 443, 0)}),
					}),
				})),
				// Nothing selects api: it is isolated, both directions denied.
				statecheck.ExpectKnownValue(api, tfjsonpath.New("policies"), knownvalue.ListSizeExact(0)),
				statecheck.ExpectKnownValue(api, tfjsonpath.New("ingress"), knownvalue.ListSizeExact(0)),
				statecheck.ExpectKnownValue(api, tfjsonpath.New("egress"), knownvalue.ListSizeExact(0)),
			},
		}},
	})
}

func TestAccEffectivePolicyDataSource_UnknownEnvironmentIsAnError(t *testing.T) {
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{{
			Config:      `data "isolation_effective_policy" "x" { environment_id = "env_does-not-exist" }`,
			ExpectError: wordsRE(`Unable to read effective policy of environment`),
		}},
	})
}
