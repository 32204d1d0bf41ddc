package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

func TestAccProject_CreateImportUpdateRenameAndDestroy(t *testing.T) {
	name, renamed := accName("prj"), accName("prj")
	sameID := statecheck.CompareValue(compare.ValuesSame())
	resource.ParallelTest(t, testAccCase(t, slices.Concat([]resource.TestStep{
		{
			Config:           projectConfig(name, ""),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionCreate)),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("id"), knownvalue.StringRegexp(regexp.MustCompile(`.+`))),
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("name"), knownvalue.StringExact(name)),
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("description"), knownvalue.StringExact("")),
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{})),
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("created_at"), knownvalue.NotNull()),
				sameID.AddStateValue(projectAddr, tfjsonpath.New("id")),
			},
		},
	}, importSteps(projectAddr), []resource.TestStep{
		updatedStep(projectConfig(name, `
  description = "Payments team"
  labels      = { team = "payments", "example.com/tier" = "dev" }`), projectAddr,
			statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("description"), knownvalue.StringExact("Payments team")),
			statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{
				"team": knownvalue.StringExact("payments"), "example.com/tier": knownvalue.StringExact("dev"),
			})),
			sameID.AddStateValue(projectAddr, tfjsonpath.New("id")),
		),
		updatedStep(projectConfig(renamed, `description = "Payments team"`), projectAddr,
			statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("name"), knownvalue.StringExact(renamed)),
			statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{})),
			sameID.AddStateValue(projectAddr, tfjsonpath.New("id")),
		),
	})))
}

func TestAccProject_EmptyAndOmittedDescriptionAndLabelsNeverDiffer(t *testing.T) {
	name := accName("prj")
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:           projectConfig(name, `description = ""`+"\n"+`labels = {}`),
			ConfigPlanChecks: afterApply(),
		},
		{
			// Writing the defaults out or leaving them out is the same.
			Config:           projectConfig(name, ""),
			ConfigPlanChecks: noChange,
		},
		{
			ResourceName:    projectAddr,
			ImportState:     true,
			ImportStateKind: resource.ImportBlockWithID,
		},
	}))
}

func TestAccProject_DeletedOutsideTerraformIsRecreated(t *testing.T) {
	config := projectConfig(accName("prj"), "")
	resource.ParallelTest(t, testAccCase(t, deletedOutsideSteps(t, config, projectAddr, unconditionally(testAccClient.Projects().Delete))))
}

func TestAccProject_ChangedOutsideTerraformShowsInRefreshAndApplyPutsItBack(t *testing.T) {
	config := projectConfig(accName("prj"), `description = "managed by terraform"`)
	var id string
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		createdStep(config, projectAddr, &id),
		refreshShowsStep(t, projectAddr, func(ctx context.Context) error {
			desc, labels := "changed by hand", map[string]string{"owner": "someone"}
			_, err := testAccClient.Projects().Update(ctx, id, apiv1.ProjectPatch{Description: &desc, Labels: &labels}, "")
			return err
		},
			resource.TestCheckResourceAttr(projectAddr, "description", "changed by hand"),
			resource.TestCheckResourceAttr(projectAddr, "labels.%", "1"),
			resource.TestCheckResourceAttr(projectAddr, "labels.owner", "someone"),
		),
		updatedStep(config, projectAddr,
			statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("description"), knownvalue.StringExact("managed by terraform")),
			statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{})),
		),
	}))
}

func TestAccProject_ConcurrentChangeFailsTheApplyWithRefreshAdviceAndOverwritesNothing(t *testing.T) {
	name := accName("prj")
	var id string
	// Someone else changes the project after the plan, before the apply.
	other := newColleague(t, "/v1/projects/", &id, func(ctx context.Context) error {
		desc := "v2 from a colleague"
		_, err := testAccClient.Projects().Update(ctx, id, apiv1.ProjectPatch{Description: &desc}, "")
		return err
	})
	resource.ParallelTest(t, testAccCase(t, concurrentChangeSteps(other, projectAddr, &id,
		projectConfig(name, `description = "v1"`), projectConfig(name, `description = "v2 from terraform"`),
		errorWith("Unable to update project", "changed outside Terraform", "nothing was overwritten", "-refresh-only"),
		// The colleague's change survived; a refresh shows it.
		resource.TestCheckResourceAttr(projectAddr, "description", "v2 from a colleague"))))
}

func TestAccProject_InvalidValuesFailAtPlanNamingTheAttribute(t *testing.T) {
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		planFails(projectConfig("Payments_Team", ""), regexp.MustCompile(`(?s)Invalid name.*name must be a DNS label`)),
		planFails(projectConfig("ok", `labels = { "bad key!" = "x" }`), regexp.MustCompile(`(?s)Invalid label.*bad key!`)),
		planFails(projectConfig("ok", `labels = { team = "no spaces allowed" }`), regexp.MustCompile(`(?s)Invalid label.*value must be empty or`)),
		planFails(projectConfig("ok", fmt.Sprintf(`description = %q`, strings.Repeat("x", 1025))), regexp.MustCompile(`(?s)Invalid description.*at most 1024`)),
	}))
}

func TestAccProject_DeletionRefusedWhileEnvironmentsRemainSaysWhatToDo(t *testing.T) {
	name := accName("prj")
	var projectID, envID string
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		createdStep(projectConfig(name, ""), projectAddr, &projectID),
		{
			// An environment made outside this configuration keeps the project alive.
			PreConfig: outside(t, func(ctx context.Context) error {
				env, err := testAccClient.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: projectID, Name: "outsider"})
				if err == nil {
					envID = env.ID
				}
				return err
			}),
			Config:      `# the project is removed from the configuration`,
			ExpectError: errorWith("Unable to delete project", "409", "still holds 1 environment (outsider)", "Delete them first", "force_destroy = true"),
		},
		{
			PreConfig:        outside(t, func(ctx context.Context) error { return deleteEnvironment(ctx, envID) }),
			Config:           `# the project is removed from the configuration`,
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionDestroy)),
		},
	}))
}

func TestAccProject_ForceDestroyDeletesTheEnvironmentsAndPoliciesItStillHoldsFirst(t *testing.T) {
	name := accName("prj")
	var projectID, envID, policyID string
	gone := func(what string, get func(ctx context.Context) error) error {
		if err := get(context.Background()); !client.IsNotFound(err) {
			return fmt.Errorf("%s after the destroy: %v, want 404", what, err)
		}
		return nil
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:           projectConfig(name, "force_destroy = true"),
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{
				captureID(projectAddr, &projectID),
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("force_destroy"), knownvalue.Bool(true)),
			},
		},
		{
			// What others made in the project goes with it.
			PreConfig: outside(t, func(ctx context.Context) error {
				env, err := testAccClient.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: projectID, Name: "outsider"})
				if err != nil {
					return err
				}
				envID = env.ID
				pol, err := testAccClient.Policies().Create(ctx, apiv1.PolicyCreate{ProjectID: projectID,
					PolicySpec: apiv1.PolicySpec{Name: "outsider", PolicyTypes: []string{apiv1.Egress}}})
				if err == nil {
					policyID = pol.ID
				}
				return err
			}),
			Config:           `# the project is removed from the configuration`,
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionDestroy)),
			Check: func(*terraform.State) error {
				return errors.Join(
					gone("environment", func(ctx context.Context) error { _, err := testAccClient.Environments().Get(ctx, envID); return err }),
					gone("policy", func(ctx context.Context) error { _, err := testAccClient.Policies().Get(ctx, policyID); return err }),
					gone("project", func(ctx context.Context) error { _, err := testAccClient.Projects().Get(ctx, projectID); return err }))
			},
		},
	}))
}

func TestAccProject_EnvironmentQuotaIsEnforcedChangedInPlaceAndReportedWithItsUsage(t *testing.T) {
	name := accName("prj")
	config := func(quota string, envs int) string {
		return projectConfig(name, quota) + fmt.Sprintf(`
resource "isolation_environment" "env" {
  count      = %d
  project_id = isolation_project.test.id
  name       = "env-${count.index}"
}

data "isolation_project" "usage" {
  id         = isolation_project.test.id
  depends_on = [isolation_environment.env]
}
`, envs)
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		planFails(config(`environment_quota = -1`, 2), errorWith("environment_quota must be between 0 (no limit) and 1048576, got -1")),
		{
			Config:           config(`environment_quota = 1`, 1),
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("environment_quota"), knownvalue.Int64Exact(1)),
				statecheck.ExpectKnownValue("data.isolation_project.usage", tfjsonpath.New("environment_quota"), knownvalue.Int64Exact(1)),
				statecheck.ExpectKnownValue("data.isolation_project.usage", tfjsonpath.New("environment_count"), knownvalue.Int64Exact(1)),
			},
		},
		{
			Config:      config(`environment_quota = 1`, 2),
			ExpectError: errorWith("Unable to create environment", "environment_quota of 1 environments"),
		},
		{
			Config:           config(`environment_quota = 2`, 2),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionUpdate)),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("environment_quota"), knownvalue.Int64Exact(2)),
				statecheck.ExpectKnownValue("data.isolation_project.usage", tfjsonpath.New("environment_count"), knownvalue.Int64Exact(2)),
			},
		},
		{
			// Left out, the quota stays what it is.
			Config:           config("", 2),
			ConfigPlanChecks: noChange,
		},
	}))
}

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
