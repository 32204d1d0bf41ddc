package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/client/clienttest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

func TestAccEnvironment_CreateImportUpdateReplaceAndDestroy(t *testing.T) {
	pa, pb := accName("prj"), accName("prj")
	const renamed = `
  name        = "web-2"
  description = "the web tier"
  labels      = { app = "web", tier = "dev" }`
	sameID := statecheck.CompareValue(compare.ValuesSame())
	newID := statecheck.CompareValue(compare.ValuesDiffer())
	resource.ParallelTest(t, testAccCase(t, slices.Concat([]resource.TestStep{
		{
			// Create returns only once the environment is ready; the
			// resources left out take the server defaults.
			Config: environmentConfig(pa, pb, "a", `
  name      = "web"
  labels    = { app = "web" }
  resources = { cpu_millis = 2000 }`),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(environmentAddr, plancheck.ResourceActionCreate)),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("state"), knownvalue.StringExact(apiv1.StateReady)),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("address"), knownvalue.StringRegexp(regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`))),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("enforced"), knownvalue.Bool(true)),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("description"), knownvalue.StringExact("")),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("resources"), knownvalue.ObjectExact(map[string]knownvalue.Check{
					"cpu_millis":    knownvalue.Int64Exact(2000),
					"memory_mb":     knownvalue.Int64Exact(apiv1.DefaultMemoryMB),
					"disk_gb":       knownvalue.Int64Exact(apiv1.DefaultDiskGB),
					"max_processes": knownvalue.Int64Exact(apiv1.DefaultMaxProcesses),
				})),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("ttl_seconds"), knownvalue.Null()),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("expires_at"), knownvalue.Null()),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("created_at"), knownvalue.NotNull()),
				statecheck.CompareValuePairs(environmentAddr, tfjsonpath.New("project_id"), "isolation_project.a", tfjsonpath.New("id"), compare.ValuesSame()),
				sameID.AddStateValue(environmentAddr, tfjsonpath.New("id")),
				newID.AddStateValue(environmentAddr, tfjsonpath.New("id")),
			},
		},
	}, importSteps(environmentAddr), []resource.TestStep{
		// Everything but project_id changes in place.
		updatedStep(environmentConfig(pa, pb, "a", renamed+`
  resources   = { memory_mb = 2048 }
  ttl_seconds = 3600`), environmentAddr,
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("name"), knownvalue.StringExact("web-2")),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("state"), knownvalue.StringExact(apiv1.StateReady)),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("resources"), knownvalue.ObjectExact(map[string]knownvalue.Check{
				// cpu_millis, left out now, keeps the value it had.
				"cpu_millis":    knownvalue.Int64Exact(2000),
				"memory_mb":     knownvalue.Int64Exact(2048),
				"disk_gb":       knownvalue.Int64Exact(apiv1.DefaultDiskGB),
				"max_processes": knownvalue.Int64Exact(apiv1.DefaultMaxProcesses),
			})),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("ttl_seconds"), knownvalue.Int64Exact(3600)),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("expires_at"), knownvalue.NotNull()),
			sameID.AddStateValue(environmentAddr, tfjsonpath.New("id")),
		),
		// Removing the TTL removes it on the server.
		updatedStep(environmentConfig(pa, pb, "a", renamed), environmentAddr,
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("ttl_seconds"), knownvalue.Null()),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("expires_at"), knownvalue.Null()),
			sameID.AddStateValue(environmentAddr, tfjsonpath.New("id")),
		),
		{
			// Moving to another project replaces the environment.
			Config:           environmentConfig(pa, pb, "b", renamed),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(environmentAddr, plancheck.ResourceActionDestroyBeforeCreate)),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.CompareValuePairs(environmentAddr, tfjsonpath.New("project_id"), "isolation_project.b", tfjsonpath.New("id"), compare.ValuesSame()),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("state"), knownvalue.StringExact(apiv1.StateReady)),
				newID.AddStateValue(environmentAddr, tfjsonpath.New("id")),
			},
		},
	})))
}

func TestAccEnvironment_ImportsByProjectNameSlashName(t *testing.T) {
	pa, pb := accName("prj"), accName("prj")
	resource.ParallelTest(t, testAccCase(t, append([]resource.TestStep{{
		Config:           environmentConfig(pa, pb, "b", `  name = "web"`),
		ConfigPlanChecks: afterApply(),
	}}, importByNameSteps(environmentAddr, "environment", pb, "web")...)))
}

func TestAccEnvironment_TimeoutsChangeAloneWritesNothingToTheServer(t *testing.T) {
	pa, pb := accName("prj"), accName("prj")
	var id string
	var generation int64
	serverGeneration := func(s *terraform.State) (err error) {
		if id, err = stateAttr(s, environmentAddr, "id"); err != nil {
			return err
		}
		env, err := testAccClient.Environments().Get(context.Background(), id)
		if err != nil {
			return err
		}
		if generation != 0 && env.Generation != generation {
			return fmt.Errorf("generation moved from %d to %d: the timeouts change was sent to the server", generation, env.Generation)
		}
		generation = env.Generation
		return nil
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config: environmentConfig(pa, pb, "a", `
  name = "api"
  timeouts {
    create = "5m"
  }`),
			ConfigPlanChecks: afterApply(),
			Check:            serverGeneration,
		},
		{
			Config: environmentConfig(pa, pb, "a", `
  name = "api"
  timeouts {
    create = "5m"
    update = "2m"
    delete = "3m"
  }`),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(environmentAddr, plancheck.ResourceActionUpdate)),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("timeouts"), knownvalue.ObjectExact(map[string]knownvalue.Check{
					"create": knownvalue.StringExact("5m"), "update": knownvalue.StringExact("2m"), "delete": knownvalue.StringExact("3m"),
				})),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("state"), knownvalue.StringExact(apiv1.StateReady)),
			},
			Check: serverGeneration,
		},
	}))
}

func TestAccEnvironment_DeletedOutsideTerraformIsRecreated(t *testing.T) {
	config := environmentConfig(accName("prj"), accName("prj"), "a", `name = "db"`)
	resource.ParallelTest(t, testAccCase(t, deletedOutsideSteps(t, config, environmentAddr, deleteEnvironment,
		statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("state"), knownvalue.StringExact(apiv1.StateReady)))))
}

func TestAccEnvironment_BeingDeletedOutsideTerraformIsTreatedAsGone(t *testing.T) {
	config := environmentConfig(accName("prj"), accName("prj"), "a", `name = "cache"`)
	// Deleted outside, not yet gone: the plan already proposes a new one.
	resource.ParallelTest(t, testAccCase(t, deletedOutsideSteps(t, config, environmentAddr, unconditionally(testAccClient.Environments().Delete))))
}

func TestAccEnvironment_ChangedOutsideTerraformShowsInRefreshAndApplyPutsItBack(t *testing.T) {
	config := environmentConfig(accName("prj"), accName("prj"), "a", `
  name      = "db"
  labels    = { app = "db" }
  resources = { memory_mb = 512 }`)
	var id string
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		createdStep(config, environmentAddr, &id),
		refreshShowsStep(t, environmentAddr, func(ctx context.Context) error {
			labels, mem := map[string]string{"app": "db", "hacked": "yes"}, int64(4096)
			if _, err := testAccClient.Environments().Update(ctx, id, apiv1.EnvironmentPatch{
				Labels: &labels, Resources: &apiv1.ResourcesSpec{MemoryMB: &mem},
			}, ""); err != nil {
				return err
			}
			_, err := testAccClient.Environments().WaitFor(ctx, id, apiv1.StateReady)
			return err
		},
			resource.TestCheckResourceAttr(environmentAddr, "labels.hacked", "yes"),
			resource.TestCheckResourceAttr(environmentAddr, "resources.memory_mb", "4096"),
		),
		updatedStep(config, environmentAddr,
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{"app": knownvalue.StringExact("db")})),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("resources").AtMapKey("memory_mb"), knownvalue.Int64Exact(512)),
		),
	}))
}

func TestAccEnvironment_ConcurrentChangeFailsTheApplyWithRefreshAdviceAndOverwritesNothing(t *testing.T) {
	pa, pb := accName("prj"), accName("prj")
	var id string
	other := newColleague(t, "/v1/environments/", &id, func(ctx context.Context) error {
		desc := "from a colleague"
		_, err := testAccClient.Environments().Update(ctx, id, apiv1.EnvironmentPatch{Description: &desc}, "")
		return err
	})
	resource.ParallelTest(t, testAccCase(t, concurrentChangeSteps(other, environmentAddr, &id,
		environmentConfig(pa, pb, "a", `name = "app"`), environmentConfig(pa, pb, "a", `
  name        = "app"
  description = "from terraform"`),
		errorWith("Unable to update environment", "changed outside Terraform", "nothing was overwritten", "-refresh-only"),
		resource.TestCheckResourceAttr(environmentAddr, "description", "from a colleague"))))
}

func TestAccEnvironment_FailedCreateReturnsTheServerMessageAndStaysInStateTainted(t *testing.T) {
	// A server of its own whose pool has two addresses: the third
	// environment fails for real, in the reconciler.
	srv := startExtraServer(t, server.Config{AddressPool: "198.18.0.0/30"})
	own, err := client.New(client.Config{Endpoint: srv.URL, Token: srv.Token})
	if err != nil {
		t.Fatal(err)
	}
	name := accName("prj")
	config := func(envs ...string) string {
		c := providerBlock(srv) + projectHCL("p", name)
		for _, e := range envs {
			c += fmt.Sprintf(`
resource "isolation_environment" %q {
  project_id = isolation_project.p.id
  name       = %q
}
`, e, e)
		}
		return c
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy: func(s *terraform.State) error {
			// Nothing orphaned: destroy found and deleted the failed one too.
			envs, err := own.Environments().List(context.Background(), client.ListOptions{})
			if err != nil {
				return err
			}
			if len(envs) != 0 {
				return fmt.Errorf("%d environments left on the server after destroy: %+v", len(envs), envs)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{Config: config("one", "two"), ConfigPlanChecks: afterApply()},
			{
				Config:      config("one", "two", "three"),
				ExpectError: errorWith("Unable to create environment", "did not become ready", "address pool exhausted", "kept in the state as tainted"),
			},
			{
				// The failed environment is in the state, tainted: the plan replaces it.
				Config:             config("one", "two", "three"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("isolation_environment.three", plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectKnownValue("isolation_environment.three", tfjsonpath.New("name"), knownvalue.StringExact("three")),
				}},
			},
		},
	})
}

func TestAccEnvironment_InvalidValuesFailAtPlanNamingTheAttribute(t *testing.T) {
	var steps []resource.TestStep
	for _, tc := range []struct{ body, want string }{
		{`name = "-bad-"`, `(?s)Invalid name.*name must be a DNS label`},
		{`name = "ok"` + "\n" + `resources = { cpu_millis = 50 }`, `(?s)resources.cpu_millis.*cpu_millis must be between 100 and 64000`},
		{`name = "ok"` + "\n" + `resources = { memory_mb = 999999999 }`, `(?s)resources.memory_mb.*memory_mb must be between`},
		{`name = "ok"` + "\n" + `resources = { disk_gb = 0 }`, `(?s)resources.disk_gb.*disk_gb must be between 1 and`},
		{`name = "ok"` + "\n" + `ttl_seconds = 0`, `(?s)Invalid ttl_seconds.*between 1 and 31536000`},
		{`name = "ok"` + "\n" + `labels = { "-x" = "y" }`, `(?s)Invalid label.*-x`},
		{`name = "ok"` + "\n" + `timeouts { create = "soon" }`, `(?s)timeouts.*create`},
	} {
		steps = append(steps, planFails(environmentConfig(accName("prj"), accName("prj"), "a", tc.body), regexp.MustCompile(tc.want)))
	}
	resource.ParallelTest(t, testAccCase(t, steps))
}

func TestAccEnvironment_LostAnswersAreRetriedWithoutDuplicatesOrErrors(t *testing.T) {
	// Between the provider and the server, a network that loses the
	// answer to the first create and to the first delete of an environment.
	isEnvCreate := func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Path == "/v1/environments" }
	isEnvDelete := func(r *http.Request) bool {
		return r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/environments/")
	}
	loseCreate, loseDelete := clienttest.First(isEnvCreate), clienttest.First(isEnvDelete)
	proxy := clienttest.NewLossyProxy(t, testAccEndpoint, func(r *http.Request) bool { return loseCreate(r) || loseDelete(r) })
	viaProxy := &testServer{URL: proxy.URL, Token: testAccToken}

	name := accName("prj")
	var projectID string
	c := testAccCase(t, []resource.TestStep{{
		Config: providerBlock(viaProxy) + projectHCL("p", name) + `
resource "isolation_environment" "test" {
  project_id = isolation_project.p.id
  name       = "flaky-network"
}
`,
		ConfigPlanChecks: afterApply(),
		Check: func(s *terraform.State) (err error) {
			if projectID, err = stateAttr(s, "isolation_project.p", "id"); err != nil {
				return err
			}
			// The retried create was replayed, not repeated: one environment.
			envs, err := testAccClient.Environments().List(context.Background(), client.ListOptions{ProjectID: projectID})
			if err != nil {
				return err
			}
			if len(envs) != 1 {
				return fmt.Errorf("the project has %d environments after one create, want 1: %+v", len(envs), envs)
			}
			return nil
		},
	}})
	c.CheckDestroy = checkNothingLeft(&projectID, func() error {
		if lost := proxy.Lost(); len(lost) != 2 {
			return fmt.Errorf("the proxy lost %v, want one create and one delete answer: the test proved nothing", lost)
		}
		return nil
	})
	resource.ParallelTest(t, c)
}

func TestEnvironment_DestroyWhileAlreadyBeingDeletedWaitsInsteadOfFailing(t *testing.T) {
	t.Parallel()
	// A fake server, to hold the environment in "deleting" as long as the
	// test needs: the DELETE is refused as already deleting (the answer a
	// retried DELETE gets when the first answer was lost), a GET shows it
	// deleting, and the wait then finds it gone.
	var mu sync.Mutex
	var seen []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON := func(status int, v any) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(v)
		}
		if r.URL.Path == "/v1/whoami" {
			// Configure's question, before the operation under test.
			writeJSON(http.StatusOK, apiv1.WhoAmI{TokenID: "tok-1", Name: "fake", Role: apiv1.RoleAdmin, Server: apiv1.ServerInfo{Name: apiv1.ServerName}})
			return
		}
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		switch {
		case r.Method == http.MethodDelete:
			writeJSON(http.StatusConflict, apiv1.Problem{Title: "Conflict", Status: 409, Detail: `environment "env-1" is already deleting`})
		case r.URL.Query().Get("wait_for") == "deleted":
			writeJSON(http.StatusNotFound, apiv1.Problem{Title: "Not Found", Status: 404})
		default:
			writeJSON(http.StatusOK, apiv1.Environment{ID: "env-1", State: apiv1.StateDeleting, ETag: `"3"`})
		}
	}))
	t.Cleanup(fake.Close)

	p := configuredProvider(t, fake.URL, "fake-token")
	typ := resourceType(t, p, "isolation_environment")
	prior, err := tfprotov6.NewDynamicValue(typ, objectWith(typ, map[string]tftypes.Value{"id": tftypes.NewValue(tftypes.String, "env-1")}))
	if err != nil {
		t.Fatal(err)
	}
	planned, err := tfprotov6.NewDynamicValue(typ, tftypes.NewValue(typ, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.ApplyResourceChange(t.Context(), &tfprotov6.ApplyResourceChangeRequest{
		TypeName: "isolation_environment", PriorState: &prior, PlannedState: &planned,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Diagnostics) > 0 {
		t.Fatalf("destroy failed: %+v", resp.Diagnostics[0])
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"DELETE /v1/environments/env-1?", "GET /v1/environments/env-1?", "GET /v1/environments/env-1?timeout="}
	if len(seen) != 3 || seen[0] != want[0] || seen[1] != want[1] || !strings.Contains(seen[2], "wait_for=deleted") {
		t.Fatalf("requests = %q, want DELETE, GET, then a wait for deleted", seen)
	}
}

func TestAccEnvironmentDataSource_FindsAnEnvironmentByIDAndByProjectAndName(t *testing.T) {
	pa, pb := accName("prj"), accName("prj")
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config: environmentConfig(pa, pb, "a", `
  name      = "web"
  labels    = { app = "web" }
  resources = { cpu_millis = 1500 }`) + `
data "isolation_environment" "by_id" {
  id = isolation_environment.test.id
}

data "isolation_environment" "by_name" {
  project_id = isolation_environment.test.project_id
  name       = isolation_environment.test.name
}
`,
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.CompareValuePairs("data.isolation_environment.by_name", tfjsonpath.New("id"), environmentAddr, tfjsonpath.New("id"), compare.ValuesSame()),
				statecheck.CompareValuePairs("data.isolation_environment.by_id", tfjsonpath.New("address"), environmentAddr, tfjsonpath.New("address"), compare.ValuesSame()),
				statecheck.CompareValuePairs("data.isolation_environment.by_id", tfjsonpath.New("project_id"), "isolation_project.a", tfjsonpath.New("id"), compare.ValuesSame()),
				statecheck.ExpectKnownValue("data.isolation_environment.by_id", tfjsonpath.New("state"), knownvalue.StringExact("ready")),
				statecheck.ExpectKnownValue("data.isolation_environment.by_name", tfjsonpath.New("resources").AtMapKey("cpu_millis"), knownvalue.Int64Exact(1500)),
				statecheck.ExpectKnownValue("data.isolation_environment.by_name", tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{"app": knownvalue.StringExact("web")})),
				statecheck.ExpectKnownValue("data.isolation_environment.by_name", tfjsonpath.New("ttl_seconds"), knownvalue.Null()),
			},
		},
		{
			Config: environmentConfig(pa, pb, "a", `name = "web"`) + `
data "isolation_environment" "id_and_project" {
  id         = isolation_environment.test.id
  project_id = isolation_project.b.id
}
`,
			// project_id goes with name; with id it would be ambiguous.
			ExpectError: errorWith("Invalid Attribute Combination", "project_id", "name"),
		},
		{
			Config: environmentConfig(pa, pb, "a", `name = "web"`) + `
data "isolation_environment" "missing" {
  project_id = isolation_project.b.id
  name       = "web"
}
`,
			ExpectError: errorWith("Unable to read environment", "has no environment named", "web"),
		},
	}))
}

func TestAccEnvironmentsDataSource_ListsAProjectsEnvironmentsFilteredByLabels(t *testing.T) {
	name := accName("prj")
	// Each list waits for all three environments.
	list := func(local, labels string) string {
		if labels != "" {
			labels = "\n  labels     = { " + labels + " }"
		}
		return fmt.Sprintf(`
data "isolation_environments" %q {
  project_id = isolation_project.p.id%s
  depends_on = [isolation_environment.api, isolation_environment.db, isolation_environment.web]
}
`, local, labels)
	}
	config := projectHCL("p", name) +
		environmentHCL("api", "p", "api", `team = "payments", tier = "dev"`) +
		environmentHCL("db", "p", "db", `team = "payments", tier = "prod"`) +
		environmentHCL("web", "p", "web", `team = "storefront", tier = "dev"`) +
		list("all", "") + list("payments_dev", `team = "payments", tier = "dev"`) + list("none", `team = "nobody"`)
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config:           config,
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownValue("data.isolation_environments.all", tfjsonpath.New("ids"), knownvalue.ListSizeExact(3)),
			statecheck.ExpectKnownValue("data.isolation_environments.payments_dev", tfjsonpath.New("ids"), knownvalue.ListSizeExact(1)),
			statecheck.CompareValuePairs("data.isolation_environments.payments_dev", tfjsonpath.New("ids").AtSliceIndex(0),
				"isolation_environment.api", tfjsonpath.New("id"), compare.ValuesSame()),
			statecheck.ExpectKnownValue("data.isolation_environments.payments_dev", tfjsonpath.New("environments"), knownvalue.ListExact([]knownvalue.Check{
				knownvalue.ObjectPartial(map[string]knownvalue.Check{
					"name":   knownvalue.StringExact("api"),
					"state":  knownvalue.StringExact("ready"),
					"labels": knownvalue.MapExact(map[string]knownvalue.Check{"team": knownvalue.StringExact("payments"), "tier": knownvalue.StringExact("dev")}),
				}),
			})),
			statecheck.ExpectKnownValue("data.isolation_environments.none", tfjsonpath.New("environments"), knownvalue.ListSizeExact(0)),
		},
	}}))
}

// ttlRig is a server of the test's own whose clock the test moves, so a
// TTL passes when the test says and never while Terraform works.
type ttlRig struct {
	srv   *testServer
	clock *clockwork.FakeClock
	own   *client.Client
}

func newTTLRig(t *testing.T) *ttlRig {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Now().UTC().Truncate(time.Second))
	srv := startExtraServer(t, server.Config{Clock: clock})
	own, err := client.New(client.Config{Endpoint: srv.URL, Token: srv.Token})
	if err != nil {
		t.Fatal(err)
	}
	return &ttlRig{srv: srv, clock: clock, own: own}
}

// expire moves the clock past environment id's TTL and returns once the
// server has torn it down.
func (r *ttlRig) expire(ctx context.Context, id string, ttl time.Duration) error {
	r.clock.Advance(ttl + time.Second)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return r.own.Environments().WaitDeleted(ctx, id)
}

// expiresIn is a state check that the resource at addr expires d after
// the rig's clock now.
func (r *ttlRig) expiresIn(addr string, d time.Duration) statecheck.StateCheck {
	return resourceCheck{addr, func(attrs map[string]any) error {
		want := r.clock.Now().Add(d).UTC().Format(time.RFC3339)
		if got := fmt.Sprint(attrs["expires_at"]); got != want {
			return fmt.Errorf("%s expires at %s, want %s (%s from the server's now)", addr, got, want, d)
		}
		return nil
	}}
}

func TestAccEnvironment_ChangingTTLExtendsItInPlaceFromNowAndAnExpiredOneIsCreatedAgain(t *testing.T) {
	rig := newTTLRig(t)
	name := accName("prj")
	config := func(ttl int) string {
		return providerBlock(rig.srv) + projectHCL("p", name) + fmt.Sprintf(`
resource "isolation_environment" "e" {
  project_id  = isolation_project.p.id
  name        = "short-lived"
  ttl_seconds = %d
}
`, ttl)
	}
	const addr = "isolation_environment.e"
	var id string
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:            config(600),
				ConfigPlanChecks:  afterApply(),
				ConfigStateChecks: []statecheck.StateCheck{captureID(addr, &id), rig.expiresIn(addr, 600*time.Second)},
			},
			{
				// Halfway through, a longer TTL counts from now, in place.
				PreConfig:        func() { rig.clock.Advance(300 * time.Second) },
				Config:           config(900),
				ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)),
				ConfigStateChecks: []statecheck.StateCheck{
					expectID(addr, &id, true), rig.expiresIn(addr, 900*time.Second),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("state"), knownvalue.StringExact(apiv1.StateReady)),
				},
			},
			{
				// Once it expired, the refresh drops it (saying it expired:
				// TestEnvironment_ReadOfAnExpiredEnvironmentSaysWhenItExpired)
				// and the plan creates it again.
				PreConfig:         outside(t, func(ctx context.Context) error { return rig.expire(ctx, id, 900*time.Second) }),
				Config:            config(900),
				ConfigPlanChecks:  afterApply(plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate)),
				ConfigStateChecks: []statecheck.StateCheck{expectID(addr, &id, false), rig.expiresIn(addr, 900*time.Second)},
			},
		},
	})
}

func TestEnvironment_ReadOfAnExpiredEnvironmentSaysWhenItExpired(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Now().UTC().Truncate(time.Second))
	srv := startServerWith(t, server.Config{Clock: clock})
	rig := &ttlRig{clock: clock}
	var err error
	if rig.own, err = client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	prj, err := rig.own.Projects().Create(ctx, apiv1.ProjectCreate{Name: "ttl"})
	if err != nil {
		t.Fatal(err)
	}
	ttl := int64(120)
	env, err := rig.own.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: prj.ID, Name: "short", TTLSeconds: &ttl})
	if err != nil {
		t.Fatal(err)
	}
	if env, err = rig.own.Environments().WaitFor(ctx, env.ID, apiv1.StateReady); err != nil {
		t.Fatal(err)
	}
	if err := rig.expire(ctx, env.ID, 120*time.Second); err != nil {
		t.Fatal(err)
	}
	p := configuredProvider(t, srv.URL(), srv.AdminToken())
	resp, typ := read(t, p, "isolation_environment", map[string]string{"id": env.ID, "project_id": prj.ID})
	want := fmt.Sprintf("expired at %s (ttl_seconds 120)", env.ExpiresAt.UTC().Format(time.RFC3339))
	if len(resp.Diagnostics) != 1 || resp.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityWarning ||
		resp.Diagnostics[0].Summary != "The environment expired" || !strings.Contains(resp.Diagnostics[0].Detail, want) ||
		!strings.Contains(resp.Diagnostics[0].Detail, "creates it again because it expired") {
		t.Fatalf("diagnostics %+v, want one warning saying %q", resp.Diagnostics, want)
	}
	if state, err := resp.NewState.Unmarshal(typ); err != nil || !state.IsNull() {
		t.Fatalf("state %v (%v), want the environment removed from it", state, err)
	}
}
