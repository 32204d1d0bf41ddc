package provider

import (
	"regexp"
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
	return projectHCL("p", project) + environmentHCL("api", "p", "api", `app = "api"`) + environmentHCL("db", "p", "db", `app = "db"`) + `
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
`
}

func TestAccEffectivePolicyDataSource_MergesSelectingPoliciesAndResolvesPeers(t *testing.T) {
	const db, api = "data.isolation_effective_policy.db", "data.isolation_effective_policy.api"
	rule0 := tfjsonpath.New("ingress").AtSliceIndex(0)
	peer0 := rule0.AtMapKey("peers").AtSliceIndex(0)
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
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
				"match_labels":      knownvalue.MapExact(map[string]knownvalue.Check{"app": knownvalue.StringExact("api")}),
				"match_expressions": knownvalue.Null(),
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
	}}))
}

func TestAccEffectivePolicyDataSource_UnknownEnvironmentIsAnError(t *testing.T) {
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config:      `data "isolation_effective_policy" "x" { environment_id = "env_does-not-exist" }`,
		ExpectError: errorWith(`Unable to read effective policy of environment`),
	}}))
}

// A policy that pins another project's environment address as a CIDR is
// flagged on the effective policy: the peer's covers names the environment
// (the admin token sees every project) and the rule carries the warning.
func TestAccEffectivePolicyDataSource_FlagsACIDRPinningAnotherProjectsEnvironment(t *testing.T) {
	const db = "data.isolation_effective_policy.db"
	// Paths share their backing array: build each one afresh.
	rule0 := func() tfjsonpath.Path { return tfjsonpath.New("ingress").AtSliceIndex(0) }
	covers := func(key string) tfjsonpath.Path {
		return rule0().AtMapKey("peers").AtSliceIndex(0).AtMapKey("covers").AtMapKey(key)
	}
	pinned := func(key string) tfjsonpath.Path { return covers("environments").AtSliceIndex(0).AtMapKey(key) }
	config := projectHCL("a", accName("acc-pin-a")) + projectHCL("b", accName("acc-pin-b")) +
		environmentHCL("other", "a", "other", "") + environmentHCL("db", "b", "db", `app = "db"`) + `
resource "isolation_policy" "pin" {
  project_id           = isolation_project.b.id
  name                 = "pin"
  environment_selector = { match_labels = { app = "db" } }
  policy_types         = ["ingress"]
  ingress = [{
    from  = [{ cidr = "${isolation_environment.other.address}/32" }, { environment_selector = { match_labels = { app = "db" } } }]
    ports = [{ port = 5432 }]
  }]
}

data "isolation_effective_policy" "db" {
  environment_id = isolation_environment.db.id
  depends_on     = [isolation_policy.pin]
}
`
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config:           config,
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownValue(db, covers("count"), knownvalue.Int64Exact(1)),
			statecheck.ExpectKnownValue(db, covers("more"), knownvalue.Bool(false)),
			statecheck.ExpectKnownValue(db, covers("environments"), knownvalue.ListSizeExact(1)),
			statecheck.CompareValuePairs(db, pinned("id"), "isolation_environment.other", tfjsonpath.New("id"), compare.ValuesSame()),
			statecheck.CompareValuePairs(db, pinned("project_id"), "isolation_project.a", tfjsonpath.New("id"), compare.ValuesSame()),
			statecheck.CompareValuePairs(db, pinned("address"), "isolation_environment.other", tfjsonpath.New("address"), compare.ValuesSame()),
			statecheck.ExpectKnownValue(db, rule0().AtMapKey("warnings"), knownvalue.ListExact([]knownvalue.Check{
				knownvalue.StringRegexp(regexp.MustCompile(`covers the addresses of 1 environments of other projects .*environment_selector`)),
			})),
			// The selector peer of its own project is not flagged.
			statecheck.ExpectKnownValue(db, rule0().AtMapKey("peers").AtSliceIndex(1).AtMapKey("covers"), knownvalue.Null()),
		},
	}}))
}
