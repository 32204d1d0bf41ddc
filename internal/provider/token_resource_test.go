package provider

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// tokenSecret is a check that copies the token's secret out of the state.
func tokenSecret(into *string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		v, err := stateAttr(s, tokenAddr, "secret")
		*into = v
		return err
	}
}

// secretStatus answers the status a request with secret gets: 200 when
// the token works, 401 when it is refused.
func secretStatus(secret string) (int, error) {
	c, err := client.New(client.Config{Endpoint: testAccEndpoint, Token: secret, MaxRetries: -1})
	if err != nil {
		return 0, err
	}
	_, err = c.Projects().List(context.Background(), client.ListOptions{})
	if err != nil {
		if code := client.StatusCode(err); code != 0 {
			return code, nil
		}
		return 0, err
	}
	return http.StatusOK, nil
}

func expectSecretStatus(secret *string, want int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		got, err := secretStatus(*secret)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("a request with the token's secret answered %d, want %d", got, want)
		}
		return nil
	}
}

func TestAccToken_CreateImportReplaceRevokedOutsideTerraformAndDestroy(t *testing.T) {
	prj := accName("prj")
	later := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	evenLater := time.Now().Add(72 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	body := func(expires string) string {
		return fmt.Sprintf(`
  name       = "ci"
  role       = "viewer"
  project_id = isolation_project.a.id
  expires_at = %q`, expires)
	}
	var first, second, third string
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:           tokenConfig(prj, body(later)),
			ConfigPlanChecks: afterApply(plancheck.ExpectSensitiveValue(tokenAddr, tfjsonpath.New("secret"))),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("secret"), knownvalue.StringRegexp(regexp.MustCompile(`^isot_.{40,}$`))),
				statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("id"), knownvalue.StringRegexp(regexp.MustCompile(`^tok_`))),
				statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("expires_at"), knownvalue.StringExact(later)),
				statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("created_at"), knownvalue.StringRegexp(regexp.MustCompile(`^\d{4}-\d\d-\d\dT`))),
			},
			Check: resource.ComposeTestCheckFunc(tokenSecret(&first), expectSecretStatus(&first, 200)),
		},
		{
			// Importable by id; the secret is not: the server does not have it.
			ResourceName: tokenAddr, ImportState: true, ImportStateVerify: true,
			ImportStateVerifyIgnore: []string{"secret"},
		},
		{
			// Tokens are immutable: a new expiry is a new token, and the
			// old secret stops working.
			Config:           tokenConfig(prj, body(evenLater)),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(tokenAddr, plancheck.ResourceActionReplace)),
			Check: resource.ComposeTestCheckFunc(
				tokenSecret(&second), expectSecretStatus(&second, 200), expectSecretStatus(&first, 401),
			),
		},
		{
			// Revoked outside Terraform: a warning, then a new token.
			PreConfig: func() {
				id, err := tokenIDByName(prj)
				if err == nil {
					err = testAccClient.Tokens().Delete(context.Background(), id, "")
				}
				if err != nil {
					t.Fatalf("revoking outside Terraform: %v", err)
				}
			},
			Config:           tokenConfig(prj, body(evenLater)),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(tokenAddr, plancheck.ResourceActionCreate)),
			Check: resource.ComposeTestCheckFunc(
				tokenSecret(&third), expectSecretStatus(&third, 200), expectSecretStatus(&second, 401),
			),
		},
	}))
	if first == "" || third == "" || first == second || second == third {
		t.Fatal("the secrets were not all read, or a replacement kept the secret")
	}
	if code, err := secretStatus(third); err != nil || code != 401 {
		t.Fatalf("after destroy the last secret answers %d (%v), want 401", code, err)
	}
}

// tokenIDByName finds the live token of a project, for changes behind
// Terraform's back.
func tokenIDByName(projectName string) (string, error) {
	ctx := context.Background()
	projects, err := testAccClient.Projects().List(ctx, client.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, p := range projects {
		if p.Name != projectName {
			continue
		}
		tokens, err := testAccClient.Tokens().List(ctx, client.ListOptions{ProjectID: p.ID})
		if err != nil || len(tokens) != 1 {
			return "", fmt.Errorf("tokens of %s: %v %v", projectName, tokens, err)
		}
		return tokens[0].ID, nil
	}
	return "", fmt.Errorf("no project %s", projectName)
}

func TestAccToken_OrganizationWideRolesTakeNoProject(t *testing.T) {
	prj := accName("prj")
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config: tokenConfig(prj, `
  name = "siem-reader"
  role = "auditor"`),
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("project_id"), knownvalue.Null()),
			statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("expires_at"), knownvalue.Null()),
			statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("role"), knownvalue.StringExact("auditor")),
		},
	}, {
		ResourceName: tokenAddr, ImportState: true, ImportStateVerify: true,
		ImportStateVerifyIgnore: []string{"secret"},
	}}))
}

// A developer token, and a viewer token granted developer, each mint
// session credentials for their project's environments; the grant
// round-trips through the state and an import, and changing it is a new
// token.
func TestAccToken_DeveloperRoleAndGrantMaySessionsOfTheirProject(t *testing.T) {
	prj := accName("prj")
	cfg := func(grant string) string {
		return tokenConfig(prj, `
  name       = "bob"
  role       = "viewer"
  project_id = isolation_project.a.id`+grant) + `
resource "isolation_token" "dev" {
  name       = "alice"
  role       = "developer"
  project_id = isolation_project.a.id
}

resource "isolation_environment" "web" {
  project_id = isolation_project.a.id
  name       = "web"
}
`
	}
	var viewer, dev, envID string
	mints := func(secret *string, want int) resource.TestCheckFunc {
		return func(s *terraform.State) error {
			c, err := client.New(client.Config{Endpoint: testAccEndpoint, Token: *secret, MaxRetries: -1})
			if err != nil {
				return err
			}
			_, err = c.SessionTokens(envID).Create(context.Background(), apiv1.SessionTokenCreate{TTL: "1m"})
			if got := client.StatusCode(err); (err == nil && want != 201) || (err != nil && got != want) {
				return fmt.Errorf("minting a session token answered %d (%v), want %d", got, err, want)
			}
			return nil
		}
	}
	read := func(s *terraform.State) error {
		var err error
		if viewer, err = stateAttr(s, tokenAddr, "secret"); err == nil {
			if dev, err = stateAttr(s, "isolation_token.dev", "secret"); err == nil {
				envID, err = stateAttr(s, "isolation_environment.web", "id")
			}
		}
		return err
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:           cfg(""),
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("developer"), knownvalue.Bool(false)),
				statecheck.ExpectKnownValue("isolation_token.dev", tfjsonpath.New("role"), knownvalue.StringExact("developer")),
			},
			Check: resource.ComposeTestCheckFunc(read, mints(&viewer, 403), mints(&dev, 201)),
		},
		{
			Config: cfg(`
  developer  = true`),
			ConfigPlanChecks:  afterApply(plancheck.ExpectResourceAction(tokenAddr, plancheck.ResourceActionReplace)),
			ConfigStateChecks: []statecheck.StateCheck{statecheck.ExpectKnownValue(tokenAddr, tfjsonpath.New("developer"), knownvalue.Bool(true))},
			Check:             resource.ComposeTestCheckFunc(read, mints(&viewer, 201)),
		},
		{
			ResourceName: tokenAddr, ImportState: true, ImportStateVerify: true,
			ImportStateVerifyIgnore: []string{"secret"},
		},
	}))
}

func TestAccToken_InvalidSettingsFailAtPlanTimeNamingTheAttribute(t *testing.T) {
	prj := accName("prj")
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	cases := []struct {
		body string
		want *regexp.Regexp
	}{
		{`
  name = "x"
  role = "editor"`, errorWith("project_id is required for role editor")},
		{`
  name       = "x"
  role       = "admin"
  project_id = "prj_1"`, errorWith("project_id must be absent for role admin")},
		{`
  name = "x"
  role = "owner"`, errorWith("role", "value must be one of")},
		{`
  name = "Not_A_Name"
  role = "auditor"`, errorWith("name must be a DNS label")},
		{`
  name      = "x"
  role      = "admin"
  developer = true`, errorWith("Invalid developer", "developer must be absent or false for role admin: it already may exec")},
		{`
  name       = "x"
  role       = "developer"
  project_id = "prj_1"
  developer  = true`, errorWith("Invalid developer", "developer must be absent or false for role developer")},
		{`
  name = "x"
  role = "developer"`, errorWith("project_id is required for role developer")},
		{`
  name       = "x"
  role       = "session"
  project_id = "prj_1"`, errorWith("role", "value must be one of")},
		{`
  name       = "x"
  role       = "auditor"
  expires_at = "next tuesday"`, errorWith("expires_at must be an RFC 3339 time")},
	}
	var steps []resource.TestStep
	for _, tc := range cases {
		steps = append(steps, planFails(tokenConfig(prj, tc.body), tc.want))
	}
	// An expiry in the past is the server's to refuse (a config whose
	// token has since expired must still plan), at apply time.
	steps = append(steps, resource.TestStep{
		Config: tokenConfig(prj, fmt.Sprintf(`
  name       = "x"
  role       = "auditor"
  expires_at = %q`, past)),
		ExpectError: errorWith("Unable to create token", "expires_at must be in the future"),
	})
	resource.ParallelTest(t, testAccCase(t, steps))
}

// The provider's own token without the role an operation needs: the error
// names the role.
func TestAccToken_ProviderTokenLackingTheRoleIsToldWhichRoleIsNeeded(t *testing.T) {
	requireAcc(t)
	p := outsideProject(t, accName("prj"))
	viewer := outsideToken(t, "read-only", apiv1.RoleViewer, p.ID)
	provider := sharedServerAs("token")
	vars := config.Variables{"token": config.StringVariable(viewer.Secret)}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			ConfigVariables: vars,
			Config: provider + fmt.Sprintf(`
resource "isolation_environment" "test" {
  project_id = %q
  name       = "web"
}
`, p.ID),
			ExpectError: errorWith("Unable to create environment", "requires role editor", "role does not allow"),
		},
		{
			ConfigVariables: vars,
			Config: provider + `
resource "isolation_project" "test" {
  name = "not-allowed"
}
`,
			ExpectError: errorWith("Unable to create project", "requires role admin"),
		},
	}))
}

// Not parallel: it sets the process-wide TF_LOG variables. The created
// token's secret is used as a provider's token in the second step, so it
// crosses every path a token takes: a create answer, the state, a
// provider configuration and request headers.
func TestAccToken_SecretNeverAppearsInTraceLogs(t *testing.T) {
	readLog := traceLog(t)

	prj := accName("prj")
	base := tokenConfig(prj, `
  name       = "deployer"
  role       = "editor"
  project_id = isolation_project.a.id`)
	// The editor's provider is a provider instance of its own: in-process
	// test providers are shared by every configuration of one local name,
	// so an alias would overwrite the admin provider's client.
	asEditor := base + `
provider "isolationeditor" {
  token = isolation_token.test.secret
}

resource "isolation_environment" "by_editor" {
  provider   = isolationeditor
  project_id = isolation_project.a.id
  name       = "deployed"
}
`
	var secret string
	resource.Test(t, resource.TestCase{
		PreCheck: func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: map[string]func() (tfprotov6.ProviderServer, error){
			"isolation":       testAccProtoV6ProviderFactories["isolation"],
			"isolationeditor": providerserver.NewProtocol6WithError(New("test")()),
		},
		CheckDestroy: checkDestroyed,
		Steps: []resource.TestStep{
			{Config: base, ConfigPlanChecks: afterApply(), Check: tokenSecret(&secret)},
			{Config: asEditor, ConfigPlanChecks: afterApply()},
			{Config: asEditor + `
resource "isolation_project" "forbidden" {
  provider = isolationeditor
  name     = "forbidden"
}
`, ExpectError: errorWith("Unable to create project", "requires role admin")},
		},
	})
	logs := readLog("/v1/tokens")
	if secret == "" {
		t.Fatal("the created token's secret was not read from the state")
	}
	for name, s := range map[string]string{"the provider's token": testAccToken, "the created token's secret": secret} {
		if i := strings.Index(logs, s); i >= 0 {
			t.Errorf("%s appears in the TF_LOG=TRACE output: ...%s...", name, logs[max(0, i-1500):i])
		}
	}
}

func TestTokenModel_KeepsTheWrittenExpiryWhenItIsTheSameInstant(t *testing.T) {
	t.Parallel()
	utc := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range []struct {
		cur  types.String
		api  *time.Time
		want types.String
	}{
		{types.StringValue("2031-05-06T09:08:09+02:00"), &utc, types.StringValue("2031-05-06T09:08:09+02:00")},
		{types.StringValue("2031-05-06T07:08:09Z"), &utc, types.StringValue("2031-05-06T07:08:09Z")},
		{types.StringValue("2032-01-01T00:00:00Z"), &utc, types.StringValue("2031-05-06T07:08:09Z")},
		{types.StringNull(), &utc, types.StringValue("2031-05-06T07:08:09Z")},
		{types.StringValue("2031-05-06T07:08:09Z"), nil, types.StringNull()},
	} {
		if got := sameInstantOr(tc.cur, tc.api); !got.Equal(tc.want) {
			t.Errorf("sameInstantOr(%s, %v) = %s, want %s", tc.cur, tc.api, got, tc.want)
		}
	}
}

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
			"id":             knownvalue.StringRegexp(regexp.MustCompile(`^tok_`)),
			"name":           knownvalue.StringExact(name),
			"role":           knownvalue.StringExact(role),
			"project_id":     knownvalue.NotNull(),
			"developer":      knownvalue.Bool(false),
			"environment_id": knownvalue.Null(),
			"parent_id":      knownvalue.Null(),
			"expires_at":     exp,
			"created_at":     knownvalue.NotNull(),
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
