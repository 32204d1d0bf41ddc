package provider

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// stateWipeObjects is the configuration of the state-wipe reproduction:
// 12 objects, a project with 5 environments, 5 policies and a token.
const stateWipeObjects = `
resource "isolation_project" "p" {
  name = var.project_name
}

resource "isolation_environment" "e" {
  count      = 5
  project_id = isolation_project.p.id
  name       = "env-${count.index}"
  labels     = { tier = "t${count.index}" }
}

resource "isolation_policy" "p" {
  count                = 5
  project_id           = isolation_project.p.id
  name                 = "pol-${count.index}"
  environment_selector = { match_labels = { tier = "t${count.index}" } }
  policy_types         = ["egress"]
  egress               = [{ to = [{ cidr = "198.18.0.0/15" }], ports = [{ protocol = "tcp", port = 443 }] }]
}

resource "isolation_token" "t" {
  name       = "ci-viewer"
  role       = "viewer"
  project_id = isolation_project.p.id
}

variable "project_name" {
  type = string
}
`

// stateWipeAddrs are the 12 addresses of stateWipeObjects.
func stateWipeAddrs() []string {
	addrs := []string{"isolation_project.p", "isolation_token.t"}
	for i := range 5 {
		addrs = append(addrs, fmt.Sprintf("isolation_environment.e[%d]", i), fmt.Sprintf("isolation_policy.p[%d]", i))
	}
	slices.Sort(addrs)
	return addrs
}

// TestAccProvider_AnotherProjectsTokenOrAFileServerFailsThePlanAndLeavesTheStateUnchanged
// is the reproduction of the state wipe: with another project's editor
// token, or an endpoint that is a plain file server, every object answers
// 404. The plan and the refresh must fail, and `terraform state list` must
// still list the 12 objects with their ids.
func TestAccProvider_AnotherProjectsTokenOrAFileServerFailsThePlanAndLeavesTheStateUnchanged(t *testing.T) {
	// Not parallel: TF_ACC_TEMP_DIR puts Terraform's working directory
	// where the test can run `terraform state list` in it.
	tmp := t.TempDir()
	t.Setenv("TF_ACC_TEMP_DIR", tmp)
	requireAcc(t)

	other := outsideProject(t, accName("other"))
	editor := outsideToken(t, "other-editor", apiv1.RoleEditor, other.ID)

	site := t.TempDir()
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("<html><body>It works!</body></html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := httptest.NewServer(http.FileServer(http.Dir(site)))
	t.Cleanup(files.Close)

	cfg := serverProviderConfig + stateWipeObjects
	name := accName("wipe")
	vars := func(endpoint, token string) config.Variables {
		return providerVariables(endpoint, token, config.Variables{"project_name": config.StringVariable(name)})
	}
	asAdmin := vars(testAccEndpoint, testAccToken)
	asOtherEditor := vars(testAccEndpoint, editor.Secret)
	atFileServer := vars(files.URL, testAccToken)

	addrs := stateWipeAddrs()
	ids := make([]string, len(addrs))
	var captured, unchanged []statecheck.StateCheck
	for i, a := range addrs {
		captured = append(captured, captureID(a, &ids[i]))
		unchanged = append(unchanged, expectID(a, &ids[i], true))
	}
	stateListIs := func(step string) {
		t.Helper()
		if got := terraformStateList(t, tmp); !slices.Equal(got, addrs) {
			t.Fatalf("%s: terraform state list = %q, want the %d objects %q", step, got, len(addrs), addrs)
		}
	}
	outOfScope := errorWith("Unable to read", "sees only project "+other.ID, "stays in the state")
	notIsolationd := errorWith("Invalid provider configuration: endpoint", files.URL+" is not isolationd", "404")

	resource.Test(t, testAccCase(t, []resource.TestStep{
		{
			Config: cfg, ConfigVariables: asAdmin,
			ConfigPlanChecks:  afterApply(),
			ConfigStateChecks: captured,
			Check:             func(*terraform.State) error { stateListIs("after the apply"); return nil },
		},
		{
			// plan (with refresh) as another project's editor
			Config: cfg, ConfigVariables: asOtherEditor,
			PlanOnly:    true,
			ExpectError: outOfScope,
		},
		{
			// terraform refresh writes the state: the wipe happened here.
			PreConfig:    func() { stateListIs("after the plan with another project's token") },
			RefreshState: true,
			ExpectError:  outOfScope,
		},
		{
			PreConfig: func() { stateListIs("after the refresh with another project's token") },
			Config:    cfg, ConfigVariables: atFileServer,
			PlanOnly:    true,
			ExpectError: notIsolationd,
		},
		{
			PreConfig:    func() { stateListIs("after the plan against a file server") },
			RefreshState: true,
			ExpectError:  notIsolationd,
		},
		{
			// Back with the admin's token: nothing to do, the same objects.
			PreConfig: func() { stateListIs("after the refresh against a file server") },
			Config:    cfg, ConfigVariables: asAdmin,
			ConfigPlanChecks:  noChange,
			ConfigStateChecks: unchanged,
		},
	}))
}

// terraformStateList runs the real `terraform state list` in the one
// working directory plugin-testing made under tmp (its TF_ACC_TEMP_DIR).
func terraformStateList(t *testing.T, tmp string) []string {
	t.Helper()
	states, err := filepath.Glob(filepath.Join(tmp, "plugintest*", "work*", "terraform.tfstate"))
	if err != nil || len(states) != 1 {
		t.Fatalf("want one Terraform working directory with a state under %s, found %q (%v)", tmp, states, err)
	}
	cmd := exec.Command(os.Getenv("TF_ACC_TERRAFORM_PATH"), "state", "list")
	cmd.Dir = filepath.Dir(states[0])
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("terraform state list: %v", err)
	}
	list := strings.Fields(string(out))
	slices.Sort(list)
	return list
}
