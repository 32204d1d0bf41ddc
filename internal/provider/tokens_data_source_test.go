package provider

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestAccTokensDataSource_ListsTheTokensOfAProjectWithoutSecrets(t *testing.T) {
	prj, other := accName("prj"), accName("prj")
	cfg := fmt.Sprintf(`
resource "isolation_project" "a" {
  name = %q
}

resource "isolation_project" "b" {
  name = %q
}

resource "isolation_token" "editor" {
  name       = "editor"
  role       = "editor"
  project_id = isolation_project.a.id
}

resource "isolation_token" "viewer" {
  name       = "viewer"
  role       = "viewer"
  project_id = isolation_project.a.id
  expires_at = "2099-01-01T00:00:00Z"
}

resource "isolation_token" "elsewhere" {
  name       = "elsewhere"
  role       = "viewer"
  project_id = isolation_project.b.id
}

data "isolation_tokens" "a" {
  project_id = isolation_project.a.id
  depends_on = [isolation_token.editor, isolation_token.viewer, isolation_token.elsewhere]
}

data "isolation_tokens" "all" {
  depends_on = [isolation_token.editor, isolation_token.viewer, isolation_token.elsewhere]
}
`, prj, other)
	listed := func(name, role, expires string) knownvalue.Check {
		var exp knownvalue.Check = knownvalue.Null()
		if expires != "" {
			exp = knownvalue.StringExact(expires)
		}
		return knownvalue.ObjectExact(map[string]knownvalue.Check{
			"id":         knownvalue.StringRegexp(regexp.MustCompile(`^tok_`)),
			"name":       knownvalue.StringExact(name),
			"role":       knownvalue.StringExact(role),
			"project_id": knownvalue.NotNull(),
			"expires_at": exp,
			"created_at": knownvalue.NotNull(),
		})
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config: cfg,
		ConfigStateChecks: []statecheck.StateCheck{
			// Only project a's, in any order (they were created in parallel).
			statecheck.ExpectKnownValue("data.isolation_tokens.a", tfjsonpath.New("tokens"), knownvalue.SetExact([]knownvalue.Check{
				listed("editor", "editor", ""), listed("viewer", "viewer", "2099-01-01T00:00:00Z"),
			})),
			statecheck.ExpectKnownValue("data.isolation_tokens.a", tfjsonpath.New("ids"), knownvalue.ListSizeExact(2)),
			statecheck.CompareValueCollection("data.isolation_tokens.a", []tfjsonpath.Path{tfjsonpath.New("ids")},
				"isolation_token.viewer", tfjsonpath.New("id"), compare.ValuesSame()),
			// Without a filter, every token: the bootstrap admin, these three, and any other test's.
			statecheck.ExpectKnownValue("data.isolation_tokens.all", tfjsonpath.New("tokens"), knownvalue.ListPartial(map[int]knownvalue.Check{
				0: knownvalue.ObjectPartial(map[string]knownvalue.Check{"role": knownvalue.StringExact("admin"), "project_id": knownvalue.Null()}),
			})),
		},
	}}))
}
