package provider

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/client/clienttest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// faultyEnvironments and faultyPolicies are the size of the apply the
// fault tests push through the fault proxy.
const (
	faultyEnvironments = 300
	faultyPolicies     = 10
	faultRate          = 0.35
)

// faultyConfig is a project with n environments, in ten label groups, and
// m policies, each selecting one group.
func faultyConfig(n, m int) string {
	return serverProviderConfig + projectHCL("p", "faulty") + fmt.Sprintf(`
resource "isolation_environment" "e" {
  count      = %d
  project_id = isolation_project.p.id
  name       = "env-${count.index}"
  labels     = { group = "g${count.index %% 10}" }
}

resource "isolation_policy" "allow" {
  count                = %d
  project_id           = isolation_project.p.id
  name                 = "allow-${count.index}"
  environment_selector = { match_labels = { group = "g${count.index}" } }
  policy_types         = ["egress"]
  egress = [{
    to    = [{ cidr = "198.18.0.0/15" }]
    ports = [{ protocol = "tcp", port = 443 }]
  }]
}
`, n, m)
}

func TestAccProvider_ApplyOf300EnvironmentsAnd10PoliciesConvergesThroughFaultsAt35Percent(t *testing.T) {
	// The seeds run at once, each on a server of its own: most of the time
	// is Retry-After and backoff, not work.
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			srv := startServerWith(t, server.Config{})
			proxy := clienttest.NewFaultProxy(t, srv.URL(), seed, clienttest.Mixed(faultRate))
			direct, err := client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			resource.ParallelTest(t, resource.TestCase{
				PreCheck:                 func() { testAccPreCheck(t) },
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				CheckDestroy: func(*terraform.State) error {
					return serverHolds(direct, 0, 0, 0)
				},
				Steps: []resource.TestStep{{
					Config:           faultyConfig(faultyEnvironments, faultyPolicies),
					ConfigVariables:  serverVariables(srv, config.Variables{"endpoint": config.StringVariable(proxy.URL)}),
					ConfigPlanChecks: afterApply(),
					Check: func(*terraform.State) error {
						return serverHolds(direct, 1, faultyEnvironments, faultyPolicies)
					},
				}},
			})
			got := proxy.Counts()
			if got.Unavailable == 0 || got.RateLimited == 0 || got.LostAnswers == 0 || got.Delayed == 0 {
				t.Fatalf("fault counts %+v: every kind of fault must have been injected", got)
			}
			t.Logf("seed %d: %d requests, %d faulty (%d 503, %d 429, %d lost answers), %d delayed, in %s",
				seed, got.Requests, got.Faulty(), got.Unavailable, got.RateLimited, got.LostAnswers, got.Delayed, time.Since(start).Round(time.Second))
		})
	}
}

// serverHolds checks that the server holds exactly these numbers of
// projects, environments and policies, each name once.
func serverHolds(c *client.Client, projects, environments, policies int) error {
	ctx := context.Background()
	ps, err := c.Projects().List(ctx, client.ListOptions{})
	if err != nil {
		return err
	}
	es, err := c.Environments().List(ctx, client.ListOptions{})
	if err != nil {
		return err
	}
	pols, err := c.Policies().List(ctx, client.ListOptions{})
	if err != nil {
		return err
	}
	names := map[string]int{}
	for _, p := range ps {
		names["project "+p.Name]++
	}
	for _, e := range es {
		names["environment "+e.ProjectID+"/"+e.Name]++
	}
	for _, p := range pols {
		names["policy "+p.ProjectID+"/"+p.Name]++
	}
	for name, n := range names {
		if n > 1 {
			return fmt.Errorf("%s exists %d times", name, n)
		}
	}
	if len(ps) != projects || len(es) != environments || len(pols) != policies {
		return fmt.Errorf("the server holds %d projects, %d environments and %d policies, want %d, %d and %d",
			len(ps), len(es), len(pols), projects, environments, policies)
	}
	return nil
}

func TestAccEnvironment_CreateWhoseDeadlineFiresMidRequestIsKeptInStateAndTheNextApplyConverges(t *testing.T) {
	// The proxy lets the server create the environment, then holds the
	// answer until the provider's create deadline has fired.
	isEnvCreate := func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Path == "/v1/environments" }
	proxy := clienttest.NewFaultProxy(t, testAccEndpoint, 1, clienttest.Faults{Hold: clienttest.First(isEnvCreate)})
	viaProxy := &testServer{URL: proxy.URL, Token: testAccToken}
	name := accName("prj")
	cfg := providerBlock(viaProxy) + projectHCL("p", name) + `
resource "isolation_environment" "slow" {
  project_id = isolation_project.p.id
  name       = "held"
  timeouts {
    create = "2s"
  }
}
`
	var projectID string
	onServer := func() ([]apiv1.Environment, error) {
		ps, err := testAccClient.Projects().List(context.Background(), client.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if p.Name == name {
				projectID = p.ID
			}
		}
		if projectID == "" {
			return nil, fmt.Errorf("project %s is not on the server", name)
		}
		return testAccClient.Environments().List(context.Background(), client.ListOptions{ProjectID: projectID})
	}
	c := testAccCase(t, []resource.TestStep{
		{
			// The deadline fires with the answer held: the provider asks
			// the server about its create, finds it, and keeps it.
			Config:      cfg,
			ExpectError: errorWith("Unable to create environment", "did not become ready", "kept in the state as tainted"),
		},
		{
			// It is in the state, tainted, and the only one on the server.
			Config:             cfg,
			PlanOnly:           true,
			ExpectNonEmptyPlan: true,
			ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
				plancheck.ExpectResourceAction("isolation_environment.slow", plancheck.ResourceActionDestroyBeforeCreate),
				checkOnServer(func() error {
					envs, err := onServer()
					if err != nil {
						return err
					}
					if len(envs) != 1 || envs[0].Name != "held" {
						return fmt.Errorf("the server holds %+v, want the one held environment", envs)
					}
					return nil
				}),
			}},
		},
		{
			// The next apply replaces it, without a 409.
			Config:           cfg,
			ConfigPlanChecks: afterApply(),
			Check: func(*terraform.State) error {
				envs, err := onServer()
				if err != nil {
					return err
				}
				if len(envs) != 1 || envs[0].State != apiv1.StateReady {
					return fmt.Errorf("the server holds %+v, want one ready environment", envs)
				}
				return nil
			},
		},
	})
	c.CheckDestroy = checkNothingLeft(&projectID, func() error {
		if got := proxy.Counts(); got.Held != 1 {
			return fmt.Errorf("the proxy held %d answers, want the first create's: the test proved nothing", got.Held)
		}
		return nil
	})
	resource.ParallelTest(t, c)
}

// checkOnServer is a plan check that looks at the server instead of the plan.
type checkOnServer func() error

func (f checkOnServer) CheckPlan(_ context.Context, _ plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	resp.Error = f()
}

func TestAccEnvironment_NameConflictNamesTheExistingIDAndTheImportCommand(t *testing.T) {
	name := accName("prj")
	var projectID, outsideID string
	project := projectHCL("p", name)
	withEnv := project + `
resource "isolation_environment" "dup" {
  project_id = isolation_project.p.id
  name       = "taken"
}
`
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		createdStep(project, "isolation_project.p", &projectID),
		{
			// Someone made "taken" outside Terraform.
			PreConfig: outside(t, func(ctx context.Context) error {
				env, err := testAccClient.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: projectID, Name: "taken"})
				if err == nil {
					outsideID = env.ID
				}
				return err
			}),
			Config:      withEnv,
			ExpectError: errorWith("Unable to create environment", `The name "taken" is taken by the existing environment env_`, "terraform import isolation_environment.NAME env_"),
		},
		{
			PreConfig: outside(t, func(ctx context.Context) error {
				if !strings.HasPrefix(outsideID, "env_") {
					return fmt.Errorf("outside environment id %q", outsideID)
				}
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				return deleteEnvironment(ctx, outsideID)
			}),
			Config:           project,
			ConfigPlanChecks: afterApply(),
		},
	}))
}

func TestAccToken_CreateWhoseAnswerIsHeldPastItsDeadlineIsRevokedNotLeftValid(t *testing.T) {
	// The server makes the token; its answer, the only place its secret
	// ever was, is held until the provider gives up.
	isTokenCreate := func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Path == "/v1/tokens" }
	proxy := clienttest.NewFaultProxy(t, testAccEndpoint, 1, clienttest.Faults{Hold: clienttest.First(isTokenCreate)})
	name := accName("tok")
	cfg := fmt.Sprintf(`
provider "isolation" {
  endpoint        = %q
  token           = %q
  request_timeout = "2s"
}

resource "isolation_token" "test" {
  name = %q
  role = "auditor"
}
`, proxy.URL, testAccToken, name)
	live := func() ([]apiv1.Token, error) {
		all, err := testAccClient.Tokens().List(context.Background(), client.ListOptions{})
		var named []apiv1.Token
		for _, tok := range all {
			if tok.Name == name {
				named = append(named, tok)
			}
		}
		return named, err
	}
	c := testAccCase(t, []resource.TestStep{
		{
			Config:      cfg,
			ExpectError: errorWith("Unable to create token", "secret was lost in transit, so it was revoked"),
		},
		{
			// Nothing valid was left behind: the next apply makes one token.
			PreConfig: func() {
				if toks, err := live(); err != nil || len(toks) != 0 {
					t.Fatalf("live tokens named %s after the held create: %+v (%v), want none", name, toks, err)
				}
			},
			Config:           cfg,
			ConfigPlanChecks: afterApply(),
			Check: func(*terraform.State) error {
				if toks, err := live(); err != nil || len(toks) != 1 {
					return fmt.Errorf("live tokens named %s: %+v (%v), want one", name, toks, err)
				}
				return nil
			},
		},
	})
	c.CheckDestroy = func(s *terraform.State) error {
		if got := proxy.Counts(); got.Held != 1 {
			return fmt.Errorf("the proxy held %d answers, want the first create's: the test proved nothing", got.Held)
		}
		if toks, err := live(); err != nil || len(toks) != 0 {
			return fmt.Errorf("live tokens named %s after destroy: %+v (%v)", name, toks, err)
		}
		return checkDestroyed(s)
	}
	resource.ParallelTest(t, c)
}
