package provider

import (
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// The server answers 404 alike for a project that does not exist and one
// outside the token's scope, and its lists filtered by such a project
// may answer an empty page: a data source must fail instead of reporting
// that there is nothing.
func TestAccDataSources_AProjectTheTokenCannotSeeIsAnErrorNotAnEmptyResult(t *testing.T) {
	requireAcc(t)
	a, b := outsideProject(t, accName("seen-a")), outsideProject(t, accName("seen-b"))
	editorB := outsideToken(t, "editor-b", apiv1.RoleEditor, b.ID)

	const missing = "prj_does-not-exist"
	asAdmin := config.Variables{"endpoint": config.StringVariable(testAccEndpoint), "token": config.StringVariable(testAccToken)}
	asEditorB := config.Variables{"endpoint": config.StringVariable(testAccEndpoint), "token": config.StringVariable(editorB.Secret)}
	step := func(vars config.Variables, dataSource string, parts ...string) resource.TestStep {
		return resource.TestStep{
			Config: serverProviderConfig + dataSource, ConfigVariables: vars,
			PlanOnly: true, ExpectError: errorWith(parts...),
		}
	}
	outOfScope := []string{"does not exist, or is outside the scope of the provider's token", "sees only project " + b.ID}

	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		step(asAdmin, `data "isolation_environments" "x" { project_id = "`+missing+`" }`,
			"Unable to list environments", "Project "+missing+" does not exist"),
		step(asAdmin, `data "isolation_tokens" "x" { project_id = "`+missing+`" }`,
			"Unable to list tokens", "Project "+missing+" does not exist"),
		step(asEditorB, `data "isolation_environments" "x" { project_id = "`+a.ID+`" }`,
			append([]string{"Unable to list environments", "Project " + a.ID}, outOfScope...)...),
		step(asEditorB, `data "isolation_environment" "x" {
  project_id = "`+a.ID+`"
  name       = "web"
}`, append([]string{"Unable to read environment", "Project " + a.ID}, outOfScope...)...),
		step(asEditorB, `data "isolation_policy" "x" {
  project_id = "`+a.ID+`"
  name       = "egress"
}`, append([]string{"Unable to read policy", "Project " + a.ID}, outOfScope...)...),
		step(asEditorB, `data "isolation_project" "x" { id = "`+a.ID+`" }`, "Unable to read project", "404"),
		step(asEditorB, `data "isolation_effective_policy" "x" { environment_id = "env_of-another-project" }`,
			"Unable to read effective policy", "404"),
		{
			// The token's own project, which has nothing yet: empty, no error.
			Config:          serverProviderConfig + `data "isolation_environments" "mine" { project_id = "` + b.ID + `" }`,
			ConfigVariables: asEditorB,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("data.isolation_environments.mine", tfjsonpath.New("ids"), knownvalue.ListSizeExact(0)),
			},
		},
	}))
}
