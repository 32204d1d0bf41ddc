package provider

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

const projectAddr = "isolation_project.test"

// projectConfig renders an isolation_project; extra is raw HCL inside the block.
func projectConfig(name, extra string) string {
	return fmt.Sprintf(`
resource "isolation_project" "test" {
  name = %q
%s
}
`, name, extra)
}

func TestProject_CreateImportUpdateRenameAndDestroy(t *testing.T) {
	name, renamed := accName("prj"), accName("prj")
	sameID := statecheck.CompareValue(compare.ValuesSame())
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDestroyed("isolation_project", projectGetter(testAccClient)),
		Steps: []resource.TestStep{
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
			{
				ResourceName:      projectAddr,
				ImportState:       true,
				ImportStateVerify: true,
			},
			{
				ResourceName:    projectAddr,
				ImportState:     true,
				ImportStateKind: resource.ImportBlockWithID,
			},
			{
				Config: projectConfig(name, `
  description = "Payments team"
  labels      = { team = "payments", "example.com/tier" = "dev" }`),
				ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionUpdate)),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("description"), knownvalue.StringExact("Payments team")),
					statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{
						"team": knownvalue.StringExact("payments"), "example.com/tier": knownvalue.StringExact("dev"),
					})),
					sameID.AddStateValue(projectAddr, tfjsonpath.New("id")),
				},
			},
			{
				Config:           projectConfig(renamed, `description = "Payments team"`),
				ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionUpdate)),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("name"), knownvalue.StringExact(renamed)),
					statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{})),
					sameID.AddStateValue(projectAddr, tfjsonpath.New("id")),
				},
			},
		},
	})
}

func TestProject_EmptyAndOmittedDescriptionAndLabelsNeverDiffer(t *testing.T) {
	name := accName("prj")
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDestroyed("isolation_project", projectGetter(testAccClient)),
		Steps: []resource.TestStep{
			{
				Config:           projectConfig(name, `description = ""`+"\n"+`labels = {}`),
				ConfigPlanChecks: afterApply(),
			},
			{
				// Writing the defaults out or leaving them out is the same.
				Config: projectConfig(name, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			{
				ResourceName:    projectAddr,
				ImportState:     true,
				ImportStateKind: resource.ImportBlockWithID,
			},
		},
	})
}

func TestProject_DeletedOutsideTerraformIsRecreated(t *testing.T) {
	name := accName("prj")
	var id string
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDestroyed("isolation_project", projectGetter(testAccClient)),
		Steps: []resource.TestStep{
			{
				Config:            projectConfig(name, ""),
				ConfigPlanChecks:  afterApply(),
				ConfigStateChecks: []statecheck.StateCheck{captureID(projectAddr, &id)},
			},
			{
				PreConfig: func() {
					if err := testAccClient.Projects().Delete(context.Background(), id, ""); err != nil {
						t.Fatalf("deleting outside Terraform: %v", err)
					}
				},
				// The refresh finds it gone (a warning, not an error) and the
				// plan proposes to create it again.
				Config:           projectConfig(name, ""),
				ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionCreate)),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("id"), knownvalue.StringFunc(func(v string) error {
						if v == id {
							return fmt.Errorf("id %s is the deleted project's", v)
						}
						return nil
					})),
				},
			},
		},
	})
}

func TestProject_ChangedOutsideTerraformShowsInRefreshAndApplyPutsItBack(t *testing.T) {
	name := accName("prj")
	config := projectConfig(name, `description = "managed by terraform"`)
	var id string
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDestroyed("isolation_project", projectGetter(testAccClient)),
		Steps: []resource.TestStep{
			{
				Config:            config,
				ConfigPlanChecks:  afterApply(),
				ConfigStateChecks: []statecheck.StateCheck{captureID(projectAddr, &id)},
			},
			{
				PreConfig: func() {
					desc, labels := "changed by hand", map[string]string{"owner": "someone"}
					if _, err := testAccClient.Projects().Update(context.Background(), id, apiv1.ProjectPatch{Description: &desc, Labels: &labels}, ""); err != nil {
						t.Fatalf("changing outside Terraform: %v", err)
					}
				},
				// terraform refresh records the change...
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(projectAddr, "description", "changed by hand"),
					resource.TestCheckResourceAttr(projectAddr, "labels.%", "1"),
					resource.TestCheckResourceAttr(projectAddr, "labels.owner", "someone"),
				),
				// ...and the plan that follows proposes to put it back.
				RefreshPlanChecks: resource.RefreshPlanChecks{
					PostRefresh: []plancheck.PlanCheck{plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionUpdate)},
				},
				ExpectNonEmptyPlan: true,
			},
			{
				Config:           config,
				ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionUpdate)),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("description"), knownvalue.StringExact("managed by terraform")),
					statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{})),
				},
			},
		},
	})
}

func TestProject_ConcurrentChangeFailsTheApplyWithRefreshAdviceAndOverwritesNothing(t *testing.T) {
	name := accName("prj")
	var id string
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDestroyed("isolation_project", projectGetter(testAccClient)),
		Steps: []resource.TestStep{
			{
				Config:            projectConfig(name, `description = "v1"`),
				ConfigPlanChecks:  afterApply(),
				ConfigStateChecks: []statecheck.StateCheck{captureID(projectAddr, &id)},
			},
			{
				Config: projectConfig(name, `description = "v2 from terraform"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					// Someone else changes the project after the plan, before the apply.
					changeOutsideTerraform(func(ctx context.Context) error {
						desc := "v2 from a colleague"
						_, err := testAccClient.Projects().Update(ctx, id, apiv1.ProjectPatch{Description: &desc}, "")
						return err
					}),
				}},
				ExpectError: errorWith("Unable to update project", "changed outside Terraform", "nothing was overwritten", "-refresh-only"),
			},
			{
				// The colleague's change survived; a refresh shows it.
				RefreshState:       true,
				Check:              resource.TestCheckResourceAttr(projectAddr, "description", "v2 from a colleague"),
				ExpectNonEmptyPlan: true,
			},
		},
	})
}

func TestProject_InvalidValuesFailAtPlanNamingTheAttribute(t *testing.T) {
	cases := map[string]struct {
		config string
		want   string
	}{
		"name not a DNS label": {projectConfig("Payments_Team", ""), `(?s)Invalid name.*name must be a DNS label`},
		"label key":            {projectConfig("ok", `labels = { "bad key!" = "x" }`), `(?s)Invalid label.*bad key!`},
		"label value":          {projectConfig("ok", `labels = { team = "no spaces allowed" }`), `(?s)Invalid label.*value must be empty or`},
		"description too long": {projectConfig("ok", fmt.Sprintf(`description = %q`, strings.Repeat("x", 1025))), `(?s)Invalid description.*at most 1024`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resource.ParallelTest(t, resource.TestCase{
				PreCheck:                 func() { testAccPreCheck(t) },
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:      tc.config,
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.want),
				}},
			})
		})
	}
}

func TestProject_DeletionRefusedWhileEnvironmentsRemainSaysWhatToDo(t *testing.T) {
	name := accName("prj")
	var projectID, envID string
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDestroyed("isolation_project", projectGetter(testAccClient)),
		Steps: []resource.TestStep{
			{
				Config:            projectConfig(name, ""),
				ConfigPlanChecks:  afterApply(),
				ConfigStateChecks: []statecheck.StateCheck{captureID(projectAddr, &projectID)},
			},
			{
				// An environment made outside this configuration keeps the project alive.
				PreConfig: func() {
					env, err := testAccClient.Environments().Create(context.Background(), apiv1.EnvironmentCreate{ProjectID: projectID, Name: "outsider"})
					if err != nil {
						t.Fatalf("creating outside Terraform: %v", err)
					}
					envID = env.ID
				},
				Config:      `# the project is removed from the configuration`,
				ExpectError: errorWith("Unable to delete project", "409", "still has environments or policies", "Delete them first"),
			},
			{
				PreConfig: func() {
					ctx := context.Background()
					if err := testAccClient.Environments().Delete(ctx, envID, ""); err != nil {
						t.Fatalf("deleting outside Terraform: %v", err)
					}
					if err := testAccClient.Environments().WaitDeleted(ctx, envID); err != nil {
						t.Fatal(err)
					}
				},
				Config:           `# the project is removed from the configuration`,
				ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionDestroy)),
			},
		},
	})
}

func TestProject_EnvironmentQuotaIsEnforcedChangedInPlaceAndReportedWithItsUsage(t *testing.T) {
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
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:      config(`environment_quota = -1`, 2),
				PlanOnly:    true,
				ExpectError: errorWith("environment_quota must be between 0 (no limit) and 1048576, got -1"),
			},
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
				Config: config("", 2),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
		},
	})
}
