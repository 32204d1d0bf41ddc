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
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

func TestAccPolicy_ImportsByProjectNameSlashName(t *testing.T) {
	projectA, projectB := accName("acc-pol-a"), accName("acc-pol-b")
	resource.ParallelTest(t, testAccCase(t, append([]resource.TestStep{{
		Config:           policyConfig(projectA, projectB, "b", policyBodyV1),
		ConfigPlanChecks: afterApply(),
	}}, importByNameSteps(policyAddr, "policy", projectB, "web")...)))
}

func TestAccPolicy_Lifecycle(t *testing.T) {
	projectA, projectB := accName("acc-pol-a"), accName("acc-pol-b")
	var firstID string
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			// Create; the server's defaults (protocol tcp, description "")
			// are in state and empty sets are null.
			Config:           policyConfig(projectA, projectB, "a", policyBodyV1),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(policyAddr, plancheck.ResourceActionCreate)),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("id"), knownvalue.StringRegexp(regexp.MustCompile(`.+`))),
				statecheck.CompareValuePairs(policyAddr, tfjsonpath.New("project_id"), "isolation_project.a", tfjsonpath.New("id"), compare.ValuesSame()),
				statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("description"), knownvalue.StringExact("")),
				statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("policy_types"), knownvalue.SetExact([]knownvalue.Check{
					knownvalue.StringExact("ingress"), knownvalue.StringExact("egress"),
				})),
				statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("ingress"), knownvalue.SetExact([]knownvalue.Check{
					rule("from", []knownvalue.Check{selectorPeer("app", "lb")}, port("tcp", 8080, 0), port("udp", 6000, 6010)),
				})),
				statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("egress"), knownvalue.SetExact([]knownvalue.Check{
					rule("to", []knownvalue.Check{cidrPeer("0.0.0.0/0", "10.0.0.0/8", "192.168.0.0/16")}, port("tcp", 443, 0)),
				})),
				statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("created_at"), knownvalue.StringRegexp(regexp.MustCompile(`^\d{4}-\d\d-\d\dT`))),
				captureID(policyAddr, &firstID),
			},
		},
		{
			// Writing the server's defaults out is no change: protocol
			// "tcp" and description "".
			Config: policyConfig(projectA, projectB, "a", strings.Replace(
				strings.Replace(policyBodyV1, `{ port = 8080 }`, `{ protocol = "tcp", port = 8080 }`, 1),
				`name                 = "web"`, `name                 = "web"`+"\n  description          = \"\"", 1)),
			ConfigPlanChecks: noChange,
		},
		{
			// terraform import by id.
			ResourceName:      policyAddr,
			ImportState:       true,
			ImportStateVerify: true,
		},
		{
			// An import {} block adopts it with no change.
			Config:          policyConfig(projectA, projectB, "a", policyBodyV1),
			ResourceName:    policyAddr,
			ImportState:     true,
			ImportStateKind: resource.ImportBlockWithID,
		},
		// Update in place.
		updatedStep(policyConfig(projectA, projectB, "a", policyBodyV2), policyAddr,
			statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("description"), knownvalue.StringExact("web tier")),
			statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("egress"), knownvalue.SetExact([]knownvalue.Check{
				rule("to", []knownvalue.Check{cidrPeer("0.0.0.0/0", "10.0.0.0/8", "192.168.0.0/16")}, port("tcp", 443, 0)),
				rule("to", []knownvalue.Check{cidrPeer("2001:db8::/32")}, port("icmp", 0, 0)),
				rule("to", []knownvalue.Check{fqdnPeer("registry.npmjs.org"), fqdnPeer("*.github.com")}, port("tcp", 443, 0)),
			})),
			expectID(policyAddr, &firstID, true),
			checkAPIPolicy(policyAddr, func(p *apiv1.Policy) error {
				if p.Description != "web tier" || len(p.Egress) != 3 || *p.Ingress[0].Ports[0].Port+*p.Ingress[0].Ports[1].Port != 8443+6000 {
					return fmt.Errorf("server has %+v, want the updated policy", p.PolicySpec)
				}
				return nil
			}),
		),
		{
			// Reordering every set in HCL is no change at all.
			Config:           policyConfig(projectA, projectB, "a", policyBodyV2Reordered),
			ConfigPlanChecks: afterApply(plancheck.ExpectEmptyPlan()),
		},
		{
			// Moving it to another project replaces it.
			Config:            policyConfig(projectA, projectB, "b", policyBodyV2),
			ConfigPlanChecks:  afterApply(plancheck.ExpectResourceAction(policyAddr, plancheck.ResourceActionDestroyBeforeCreate)),
			ConfigStateChecks: []statecheck.StateCheck{expectID(policyAddr, &firstID, false)},
		},
	}))
}

func TestAccPolicy_ImportBlocksAdoptAPolicyMadeElsewhere(t *testing.T) {
	requireAcc(t)
	ctx := t.Context()
	project := outsideProject(t, accName("acc-pol-imp"))
	dns := 53
	policy, err := testAccClient.Policies().Create(ctx, apiv1.PolicyCreate{
		ProjectID: project.ID,
		PolicySpec: apiv1.PolicySpec{
			Name:        "made-elsewhere",
			PolicyTypes: []string{apiv1.Egress},
			Egress: []apiv1.EgressRule{{
				To:    []apiv1.Peer{{CIDR: "198.51.100.0/24"}},
				Ports: []apiv1.Port{{Protocol: apiv1.ProtocolUDP, Port: &dns}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The configuration someone would write for what the API made, with
	// import blocks: the plan imports both and changes nothing.
	config := fmt.Sprintf(`
import {
  to = isolation_project.p
  id = %q
}

import {
  to = isolation_policy.adopted
  id = %q
}

resource "isolation_project" "p" {
  name = %q
}

resource "isolation_policy" "adopted" {
  project_id           = isolation_project.p.id
  name                 = "made-elsewhere"
  environment_selector = {}
  policy_types         = ["egress"]
  egress = [{
    to    = [{ cidr = "198.51.100.0/24" }]
    ports = [{ protocol = "udp", port = 53 }]
  }]
}
`, project.ID, policy.ID, project.Name)
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config: config,
		ConfigPlanChecks: afterApply(
			plancheck.ExpectResourceAction("isolation_project.p", plancheck.ResourceActionNoop),
			plancheck.ExpectResourceAction("isolation_policy.adopted", plancheck.ResourceActionNoop),
		),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownValue("isolation_policy.adopted", tfjsonpath.New("id"), knownvalue.StringExact(policy.ID)),
			statecheck.ExpectKnownValue("isolation_policy.adopted", tfjsonpath.New("ingress"), knownvalue.Null()),
		},
	}}))
}

func TestAccPolicy_DeletedOutsideTerraformIsRecreated(t *testing.T) {
	config := policyConfig(accName("acc-pol-del"), accName("acc-pol-del-b"), "a", policyBodyV1)
	resource.ParallelTest(t, testAccCase(t, deletedOutsideSteps(t, config, policyAddr, unconditionally(testAccClient.Policies().Delete))))
}

func TestAccPolicy_ChangedOutsideTerraformIsShownByRefreshAndRevertedByApply(t *testing.T) {
	config := policyConfig(accName("acc-pol-drift"), accName("acc-pol-drift-b"), "a", policyBodyV1)
	var id string
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		createdStep(config, policyAddr, &id),
		// Someone opens SSH from anywhere and renames the policy; a
		// refresh-only run records exactly that in state.
		refreshShowsStep(t, policyAddr, func(ctx context.Context) error { return widenPolicyThroughAPI(ctx, id) },
			resource.TestCheckResourceAttr(policyAddr, "name", "web-hacked"),
			resource.TestCheckResourceAttr(policyAddr, "ingress.#", "1"),
			resource.TestCheckTypeSetElemNestedAttrs(policyAddr, "ingress.*.from.*", map[string]string{"cidr": "0.0.0.0/0"}),
			resource.TestCheckTypeSetElemNestedAttrs(policyAddr, "ingress.*.ports.*", map[string]string{"protocol": "tcp", "port": "22"}),
		),
		// Apply puts the configuration back.
		updatedStep(config, policyAddr,
			expectID(policyAddr, &id, true),
			checkAPIPolicy(policyAddr, func(p *apiv1.Policy) error {
				if p.Name != "web" || len(p.Ingress) != 1 || len(p.Ingress[0].Ports) != 2 {
					return fmt.Errorf("server has %+v, want the configuration restored", p.PolicySpec)
				}
				return nil
			}),
		),
	}))
}

func TestAccPolicy_UpdateRefusesToOverwriteAConcurrentChange(t *testing.T) {
	projectA, projectB := accName("acc-pol-ifm"), accName("acc-pol-ifm-b")
	var id string
	// Someone changes the policy after Terraform planned and before it
	// applies: the update must fail and say what to do.
	other := newColleague(t, "/v1/policies/", &id, func(ctx context.Context) error { return widenPolicyThroughAPI(ctx, id) })
	steps := concurrentChangeSteps(other, policyAddr, &id,
		policyConfig(projectA, projectB, "a", policyBodyV1), policyConfig(projectA, projectB, "a", policyBodyV2),
		errorWith("changed outside Terraform after Terraform last read it, so nothing was overwritten. Refresh and retry"),
		// Nothing was overwritten: the other writer's change is what a refresh finds.
		resource.TestCheckResourceAttr(policyAddr, "name", "web-hacked"))
	// Refreshed, the same apply goes through.
	steps = append(steps, resource.TestStep{
		Config:           other.provider + policyConfig(projectA, projectB, "a", policyBodyV2),
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("name"), knownvalue.StringExact("web")),
		},
	})
	resource.ParallelTest(t, testAccCase(t, steps))
}

func TestAccPolicy_InvalidInputIsRejectedAtPlanTimeNamingTheAttribute(t *testing.T) {
	// Each body is the policy minus project_id; want names the attribute
	// and the rule it broke.
	cases := []struct {
		name, body, want string
	}{
		{"bad CIDR", ingressWith(`from = [{ cidr = "10.0.0.0/33" }]`),
			`ingress.from.cidr must be an IPv4 or IPv6 prefix in CIDR notation`},
		{"CIDR with host bits", ingressWith(`from = [{ cidr = "10.1.2.3/8" }]`),
			`ingress.from.cidr must not have host bits set: use 10.0.0.0/8`},
		{"except outside its cidr", ingressWith(`from = [{ cidr = "10.0.0.0/8", except = ["192.168.0.0/16"] }]`),
			`ingress.from.except must be strictly inside cidr 10.0.0.0/8, got "192.168.0.0/16"`},
		{"port out of range", ingressWith(`ports = [{ port = 70000 }]`),
			`ingress.ports.port must be between 1 and 65535, got 70000`},
		{"port zero", ingressWith(`ports = [{ port = 0 }]`),
			`ingress.ports.port must be between 1 and 65535, got 0`},
		{"end_port below port", ingressWith(`ports = [{ port = 443, end_port = 80 }]`),
			`ingress.ports.end_port must be at least port (443), got 80`},
		{"unknown protocol", ingressWith(`ports = [{ protocol = "gre", port = 9 }]`),
			`ingress.ports.protocol must be one of tcp, udp, sctp, icmp, got "gre"`},
		{"peer with both cidr and selector", ingressWith(`from = [{ cidr = "10.0.0.0/8", environment_selector = {} }]`),
			`ingress.from must set exactly one of cidr, fqdn and the selectors (environment_selector, project_selector or both)`},
		{"fqdn on ingress", ingressWith(`from = [{ fqdn = "example.com" }]`),
			`ingress.from.fqdn is for egress peers only`},
		{"fqdn star alone", egressWith(`to = [{ fqdn = "*" }]`),
			`egress.to.fqdn must not be * alone`},
		{"fqdn with two stars", egressWith(`to = [{ fqdn = "*.*.com" }]`),
			`egress.to.fqdn may hold * only as its whole leftmost label`},
		{"fqdn an IP literal", egressWith(`to = [{ fqdn = "198.18.0.1" }]`),
			`egress.to.fqdn must be a host name, not an IP address`},
		{"fqdn label too long", egressWith(`to = [{ fqdn = "${join("", [for i in range(64) : "a"])}.com" }]`),
			`is 64 characters long: a label is at most 63`},
		{"fqdn in upper case", egressWith(`to = [{ fqdn = "Registry.npmjs.org" }]`),
			`egress.to.fqdn must be in canonical form, lower case without a trailing dot: "registry.npmjs.org"`},
		{"the same port twice once protocol defaults", ingressWith(`ports = [{ port = 443 }, { protocol = "tcp", port = 443 }]`),
			`ingress.ports lists tcp port 443 twice (protocol defaults to tcp)`},
		{"empty from", ingressWith(`from = []`),
			`ingress.from must not be empty: omit from to allow any peer`},
		{"bad name", `
  name                 = "Bad_Name"
  environment_selector = {}
  policy_types         = ["ingress"]
`, `name must be a DNS label`},
		{"empty policy_types", `
  name                 = "p"
  environment_selector = {}
  policy_types         = []
`, `policy_types must not be empty: list ingress, egress or both`},
		{"unknown policy type", `
  name                 = "p"
  environment_selector = {}
  policy_types         = ["sideways"]
`, `policy_types must be one of ingress, egress, got "sideways"`},
		{"rules of a direction not in policy_types", `
  name                 = "p"
  environment_selector = {}
  policy_types         = ["egress"]
  ingress              = [{ ports = [{ port = 80 }] }]
`, `ingress rules take effect only when policy_types contains "ingress"`},
		{"bad selector label", `
  name                 = "p"
  environment_selector = { match_labels = { "bad key!" = "x" } }
  policy_types         = ["ingress"]
`, `key must be a label key`},
		{"In without values", ingressWith(`from = [{ project_selector = { match_expressions = [{ key = "ns", operator = "In" }] } }]`),
			`ingress.from.project_selector.match_expressions[0].values must be non-empty when operator is In`},
		{"Exists with values", ingressWith(`from = [{ environment_selector = { match_expressions = [{ key = "ns", operator = "Exists", values = ["x"] }] } }]`),
			`ingress.from.environment_selector.match_expressions[0].values must be empty when operator is Exists`},
		{"unknown operator", `
  name                 = "p"
  environment_selector = { match_expressions = [{ key = "tier", operator = "in", values = ["db"] }] }
  policy_types         = ["ingress"]
`, `environment_selector.match_expressions[0].operator must be one of In, NotIn, Exists, DoesNotExist, got "in"`},
		{"expression key syntax", ingressWith(`from = [{ project_selector = { match_expressions = [{ key = "-ns", operator = "DoesNotExist" }] } }]`),
			`ingress.from.project_selector.match_expressions[0].key must be a label key`},
		{"expression value syntax", ingressWith(`from = [{ project_selector = { match_expressions = [{ key = "ns", operator = "NotIn", values = ["a b"] }] } }]`),
			`must be a label value`},
		{"port name syntax", ingressWith(`ports = [{ port_name = "HTTP" }]`),
			`ingress.ports.port_name must be a port name (IANA_SVC_NAME)`},
		{"port name with a number", ingressWith(`ports = [{ port_name = "http", port = 80 }]`),
			`ingress.ports.port must be absent with port_name`},
		{"cidr and project selector", ingressWith(`from = [{ cidr = "10.0.0.0/8", project_selector = {} }]`),
			`ingress.from must set exactly one of cidr, fqdn and the selectors`},
		// The API's limits, at plan time: a policy too big fails naming
		// the first entry past the limit and the limit's number.
		{"more rules than a policy may have", `
  name                 = "p"
  environment_selector = {}
  policy_types         = ["ingress", "egress"]
  ingress              = [for i in range(60) : { ports = [{ port = 1000 + i }] }]
  egress               = [for i in range(41) : { ports = [{ port = 2000 + i }] }]
`, `egress is past the limit of 100 rules per policy (ingress and egress together): it has 101`},
		{"more peers than a policy may have", ingressWith(`from = [for i in range(101) : { cidr = "10.${i}.0.0/16" }]`),
			`ingress.from is past the limit of 100 peers per policy (from and to entries over all rules): it has 101`},
		{"more except entries than a policy may have", ingressWith(`from = [{ cidr = "10.0.0.0/8", except = [for i in range(101) : "10.${i}.0.0/16"] }]`),
			`ingress.from.except is past the limit of 100 except entries per policy (over all peers): it has 101`},
		{"more ports than a policy may have", ingressWith(`ports = [for i in range(101) : { port = 1000 + i }]`),
			`ingress.ports is past the limit of 100 ports per policy (over all rules): it has 101`},
		{"more selector labels than a selector may have", `
  name                 = "p"
  environment_selector = { match_labels = { for i in range(17) : "k${i}" => "v" } }
  policy_types         = ["ingress"]
`, `environment_selector.match_labels is past the limit of 16 labels per selector: it has 17`},
	}
	var steps []resource.TestStep
	for _, tc := range cases {
		config := fmt.Sprintf("resource \"isolation_policy\" \"test\" {\n  project_id = \"prj-never-created\"\n%s\n}\n", tc.body)
		steps = append(steps, planFails(config, errorWith(tc.want)))
	}
	resource.ParallelTest(t, testAccCase(t, steps))
}

func TestAccPolicy_ValuesUnknownUntilApplyArePlannedAndApplied(t *testing.T) {
	// The selector's label value is the project's id and the port comes
	// from another resource: both unknown when the policy is first planned,
	// so validation and the protocol default must wait for them.
	projectA, projectB := accName("acc-pol-unk"), accName("acc-pol-unk-b")
	config := policyConfig(projectA, projectB, "a", `
  name                 = "unknowns"
  environment_selector = { match_labels = { project = isolation_project.a.id } }
  policy_types         = ["ingress"]
  ingress = [{
    from  = [{ environment_selector = { match_labels = { project = isolation_project.b.id } } }]
    ports = [{ port = terraform_data.port.output }, { protocol = "udp", port = 53 }]
  }]
`) + `
resource "terraform_data" "port" {
  input = 5432
}
`
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config: config,
		ConfigPlanChecks: afterApply(
			plancheck.ExpectUnknownValue(policyAddr, tfjsonpath.New("environment_selector").AtMapKey("match_labels").AtMapKey("project")),
			plancheck.ExpectResourceAction(policyAddr, plancheck.ResourceActionCreate),
		),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.CompareValuePairs(policyAddr, tfjsonpath.New("environment_selector").AtMapKey("match_labels").AtMapKey("project"),
				"isolation_project.a", tfjsonpath.New("id"), compare.ValuesSame()),
			statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("ingress"), knownvalue.SetExact([]knownvalue.Check{
				knownvalue.ObjectPartial(map[string]knownvalue.Check{
					"ports": knownvalue.SetExact([]knownvalue.Check{port("tcp", 5432, 0), port("udp", 53, 0)}),
				}),
			})),
		},
	}}))
}

// ingressWith is a valid ingress policy whose one rule is rule.
func egressWith(rule string) string {
	return fmt.Sprintf(`
  name                 = "p"
  environment_selector = {}
  policy_types         = ["egress"]
  egress               = [{ %s }]
`, rule)
}

func ingressWith(rule string) string {
	return fmt.Sprintf(`
  name                 = "p"
  environment_selector = {}
  policy_types         = ["ingress"]
  ingress              = [{ %s }]
`, rule)
}

// widenPolicyThroughAPI plays someone else: it renames the policy and
// replaces its ingress with SSH from anywhere.
func widenPolicyThroughAPI(ctx context.Context, id string) error {
	name := "web-hacked"
	ssh := 22
	ingress := []apiv1.IngressRule{{From: []apiv1.Peer{{CIDR: "0.0.0.0/0"}}, Ports: []apiv1.Port{{Port: &ssh}}}}
	if _, err := testAccClient.Policies().Update(ctx, id, apiv1.PolicyPatch{Name: &name, Ingress: &ingress}, ""); err != nil {
		return fmt.Errorf("changing the policy behind Terraform's back: %w", err)
	}
	return nil
}

// checkAPIPolicy is a state check that reads the policy at addr from the
// server and hands it to check.
func checkAPIPolicy(addr string, check func(*apiv1.Policy) error) statecheck.StateCheck {
	return resourceCheck{addr, func(attrs map[string]any) error {
		p, err := testAccClient.Policies().Get(context.Background(), fmt.Sprint(attrs["id"]))
		if err != nil {
			return err
		}
		return check(p)
	}}
}

func TestAccPolicy_ApplyReturnsOnceEveryEnvironmentEnforcesIt(t *testing.T) {
	project := accName("acc-pol-enf")
	config := func(timeouts string) string {
		return fmt.Sprintf(`
resource "isolation_project" "p" {
  name = %q
}

resource "isolation_environment" "env" {
  count      = 3
  project_id = isolation_project.p.id
  name       = "env-${count.index}"
  labels     = { app = "web" }
}

resource "isolation_policy" "test" {
  project_id           = isolation_project.p.id
  name                 = "web"
  environment_selector = { match_labels = { app = "web" } }
  policy_types         = ["ingress"]
  ingress              = [{ ports = [{ port = 443 }] }]
  depends_on           = [isolation_environment.env]
%s
}
`, project, timeouts)
	}
	var generation int64
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config:           config(""),
			ConfigPlanChecks: afterApply(),
			ConfigStateChecks: []statecheck.StateCheck{checkAPIPolicy(policyAddr, func(p *apiv1.Policy) error {
				generation = p.Generation
				envs, err := testAccClient.Environments().List(context.Background(), client.ListOptions{ProjectID: p.ProjectID})
				if err != nil {
					return err
				}
				if len(envs) != 3 {
					return fmt.Errorf("%d environments, want 3", len(envs))
				}
				for _, e := range envs {
					if !e.Enforcement.Enforced || e.Enforcement.ObservedGeneration != e.Enforcement.Generation {
						return fmt.Errorf("environment %s is not enforced yet when apply returned: %+v", e.Name, e.Enforcement)
					}
					ep, err := testAccClient.Environments().EffectivePolicy(context.Background(), e.ID)
					if err != nil {
						return err
					}
					if len(ep.Policies) != 1 || ep.Policies[0].ID != p.ID {
						return fmt.Errorf("environment %s is selected by %+v, want the policy", e.Name, ep.Policies)
					}
				}
				return nil
			})},
		},
		{
			// Changing only the timeouts writes nothing to the server.
			Config: config(`
  timeouts {
    create = "2m"
    update = "2m"
  }`),
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(policyAddr, plancheck.ResourceActionUpdate)),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("timeouts").AtMapKey("update"), knownvalue.StringExact("2m")),
				checkAPIPolicy(policyAddr, func(p *apiv1.Policy) error {
					if p.Generation != generation {
						return fmt.Errorf("policy generation %d, want %d: a timeouts change must not write the policy", p.Generation, generation)
					}
					return nil
				}),
			},
		},
	}))
}

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

// TestAccPolicy_ProjectSelectorsExpressionsNamedPortsAndSCTP: a policy of
// project ci lets in, by project_selector and match_expressions, the
// environments of project shared, on a named port of the destination
// and on an sctp range; the effective policy resolves the peer across
// projects and the name to the number the workload declares.
func TestAccPolicy_ProjectSelectorsExpressionsNamedPortsAndSCTP(t *testing.T) {
	ci, shared := accName("acc-pol-ci"), accName("acc-pol-shared")
	const eff = "data.isolation_effective_policy.runner"
	config := fmt.Sprintf(`
resource "isolation_project" "ci" {
  name = %q
}

resource "isolation_project" "shared" {
  name   = %q
  labels = { team = "shared" }
}

resource "isolation_environment" "runner" {
  project_id = isolation_project.ci.id
  name       = "runner"
  labels     = { role = "runner" }
  workload = {
    image = %q
    ports = [{ name = "metrics", port = 9100 }, { name = "sig", port = 2905, protocol = "sctp" }]
  }
}

resource "isolation_environment" "cache" {
  project_id = isolation_project.shared.id
  name       = "cache"
  labels     = { tier = "cache" }
}

resource "isolation_policy" "test" {
  project_id = isolation_project.ci.id
  name       = "from-shared"
  environment_selector = {
    match_expressions = [{ key = "role", operator = "In", values = ["runner", "builder"] }]
  }
  policy_types = ["ingress"]
  ingress = [{
    from = [{
      project_selector     = { match_labels = { team = "shared" } }
      environment_selector = { match_expressions = [{ key = "tier", operator = "Exists" }] }
    }]
    ports = [{ port_name = "metrics" }, { protocol = "sctp", port_name = "sig" }, { protocol = "sctp", port = 3000, end_port = 3010 }]
  }]
}

data "isolation_effective_policy" "runner" {
  environment_id = isolation_environment.runner.id
  depends_on     = [isolation_policy.test, isolation_environment.cache]
}
`, ci, shared, accImages[0])
	rule0 := tfjsonpath.New("ingress").AtSliceIndex(0)
	peer0 := rule0.AtMapKey("peers").AtSliceIndex(0)
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config:           config,
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownValue(policyAddr, tfjsonpath.New("environment_selector"), knownvalue.ObjectExact(map[string]knownvalue.Check{
				"match_labels": knownvalue.Null(),
				"match_expressions": knownvalue.ListExact([]knownvalue.Check{knownvalue.ObjectExact(map[string]knownvalue.Check{
					"key": knownvalue.StringExact("role"), "operator": knownvalue.StringExact("In"),
					"values": knownvalue.SetExact([]knownvalue.Check{knownvalue.StringExact("runner"), knownvalue.StringExact("builder")}),
				})}),
			})),
			statecheck.ExpectKnownValue("isolation_environment.runner", tfjsonpath.New("workload").AtMapKey("ports"), knownvalue.ListExact([]knownvalue.Check{
				knownvalue.ObjectExact(map[string]knownvalue.Check{"name": knownvalue.StringExact("metrics"), "port": knownvalue.Int64Exact(9100), "protocol": knownvalue.StringExact("tcp")}),
				knownvalue.ObjectExact(map[string]knownvalue.Check{"name": knownvalue.StringExact("sig"), "port": knownvalue.Int64Exact(2905), "protocol": knownvalue.StringExact("sctp")}),
			})),
			// The peer is the cache of the other project, named to the admin.
			statecheck.ExpectKnownValue(eff, peer0.AtMapKey("environments"), knownvalue.ListSizeExact(1)),
			statecheck.CompareValuePairs(eff, peer0.AtMapKey("environments").AtSliceIndex(0).AtMapKey("id"), "isolation_environment.cache", tfjsonpath.New("id"), compare.ValuesSame()),
			statecheck.CompareValuePairs(eff, peer0.AtMapKey("environments").AtSliceIndex(0).AtMapKey("project_id"), "isolation_project.shared", tfjsonpath.New("id"), compare.ValuesSame()),
			statecheck.ExpectKnownValue(eff, peer0.AtMapKey("hidden"), knownvalue.Int64Exact(0)),
			// The names resolve against the runner's own ports.
			statecheck.ExpectKnownValue(eff, rule0.AtMapKey("ports"), knownvalue.SetExact([]knownvalue.Check{
				port("tcp", 9100, 0), port("sctp", 2905, 0), port("sctp", 3000, 3010),
			})),
		},
	}}))
}
