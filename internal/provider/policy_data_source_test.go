package provider

import (
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestAccPolicyDataSource_ReadsByIDAndByProjectAndName(t *testing.T) {
	projectA, projectB := accName("acc-polds"), accName("acc-polds-b")
	config := policyConfig(projectA, projectB, "a", policyBodyV2) + `
data "isolation_policy" "by_id" {
  id = isolation_policy.test.id
}

data "isolation_policy" "by_name" {
  project_id = isolation_policy.test.project_id
  name       = isolation_policy.test.name
}
`
	var checks []statecheck.StateCheck
	for _, ds := range []string{"data.isolation_policy.by_id", "data.isolation_policy.by_name"} {
		for _, attr := range []string{"id", "project_id", "name", "description", "environment_selector", "policy_types", "ingress", "egress", "created_at"} {
			checks = append(checks, statecheck.CompareValuePairs(ds, tfjsonpath.New(attr), policyAddr, tfjsonpath.New(attr), compare.ValuesSame()))
		}
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:      `data "isolation_policy" "neither" { project_id = "prj-x" }`,
			PlanOnly:    true,
			ExpectError: errorWith(`Exactly one of these attributes must be configured: [id,name]`),
		},
		{
			Config:            config,
			ConfigPlanChecks:  afterApply(),
			ConfigStateChecks: checks,
		},
		{
			Config: config + `
data "isolation_policy" "missing" {
  project_id = isolation_project.a.id
  name       = "no-such-policy"
}
`,
			ExpectError: errorWith(`has no policy named "no-such-policy"`),
		},
		{
			// Back to a configuration that reads, for the final destroy.
			Config:           config,
			ConfigPlanChecks: afterApply(),
		},
	}))
}
