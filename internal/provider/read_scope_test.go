package provider

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// A 404 means "deleted outside Terraform" only when the token could have
// seen the object. These tests drive Read over the plugin protocol, as
// Terraform does, to see each diagnostic and the state it leaves.

// scopeFixtures are two projects with objects in A, and tokens of each.
type scopeFixtures struct {
	srv              *testServer
	a, b             *apiv1.Project
	env              *apiv1.Environment
	policy           *apiv1.Policy
	viewerA          *apiv1.TokenCreated
	editorA, editorB *apiv1.TokenCreated
	adminTokenID     string
	deletedProjectID string
}

func newScopeFixtures(t *testing.T) *scopeFixtures {
	t.Helper()
	srv := startExtraServer(t, server.Config{})
	admin, err := client.New(client.Config{Endpoint: srv.URL, Token: srv.Token})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	f := &scopeFixtures{srv: srv}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	f.a, err = admin.Projects().Create(ctx, apiv1.ProjectCreate{Name: "a"})
	must(err)
	f.b, err = admin.Projects().Create(ctx, apiv1.ProjectCreate{Name: "b"})
	must(err)
	gone, err := admin.Projects().Create(ctx, apiv1.ProjectCreate{Name: "gone"})
	must(err)
	must(admin.Projects().Delete(ctx, gone.ID, ""))
	f.deletedProjectID = gone.ID
	f.env, err = admin.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: f.a.ID, Name: "web"})
	must(err)
	port := 443
	f.policy, err = admin.Policies().Create(ctx, apiv1.PolicyCreate{ProjectID: f.a.ID, PolicySpec: apiv1.PolicySpec{
		Name: "egress", PolicyTypes: []string{"egress"},
		Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{CIDR: "198.18.0.0/15"}}, Ports: []apiv1.Port{{Protocol: "tcp", Port: &port}}}},
	}})
	must(err)
	newToken := func(name, role, project string) *apiv1.TokenCreated {
		tc, err := admin.Tokens().Create(ctx, apiv1.TokenCreate{Name: name, Role: role, ProjectID: project})
		must(err)
		transcript.remember(tc.Secret)
		return tc
	}
	f.viewerA = newToken("viewer-a", apiv1.RoleViewer, f.a.ID)
	f.editorA = newToken("editor-a", apiv1.RoleEditor, f.a.ID)
	f.editorB = newToken("editor-b", apiv1.RoleEditor, f.b.ID)
	who, err := admin.WhoAmI(ctx)
	must(err)
	f.adminTokenID = who.TokenID
	return f
}

// stateID is the id in a Read's new state, "" when it was removed.
func stateID(t *testing.T, resp *tfprotov6.ReadResourceResponse, typ tftypes.Object) string {
	t.Helper()
	v, err := resp.NewState.Unmarshal(typ)
	if err != nil {
		t.Fatal(err)
	}
	if v.IsNull() {
		return ""
	}
	var attrs map[string]tftypes.Value
	if err := v.As(&attrs); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := attrs["id"].As(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRead_NotFoundRemovesTheObjectOnlyWhenTheTokenSeesItsProject(t *testing.T) {
	t.Parallel()
	f := newScopeFixtures(t)
	type tc struct {
		name     string
		token    string
		typeName string
		attrs    map[string]string
		// gone: a warning and a removal; else an error naming each of wantErr.
		gone    bool
		wantErr []string
	}
	scopeB := []string{"Unable to read", f.editorB.ID, `"editor-b"`, "role editor", "sees only project " + f.b.ID}
	cases := []tc{
		{"an environment deleted, read with its project's editor token", f.editorA.Secret, "isolation_environment",
			map[string]string{"id": "env_deleted", "project_id": f.a.ID}, true, nil},
		{"a policy deleted, read with its project's editor token", f.editorA.Secret, "isolation_policy",
			map[string]string{"id": "pol_deleted", "project_id": f.a.ID}, true, nil},
		{"an environment of a deleted project, read by the admin", f.srv.Token, "isolation_environment",
			map[string]string{"id": "env_deleted", "project_id": f.deletedProjectID}, true, nil},
		{"a deleted project, read by the admin", f.srv.Token, "isolation_project",
			map[string]string{"id": f.deletedProjectID}, true, nil},
		{"an organization token deleted, read by the admin", f.srv.Token, "isolation_token",
			map[string]string{"id": "tok_deleted"}, true, nil},

		{"another project's environment", f.editorB.Secret, "isolation_environment",
			map[string]string{"id": f.env.ID, "project_id": f.a.ID}, false, append(scopeB, "not project "+f.a.ID, "environment "+f.env.ID)},
		{"another project's policy", f.editorB.Secret, "isolation_policy",
			map[string]string{"id": f.policy.ID, "project_id": f.a.ID}, false, append(scopeB, "not project "+f.a.ID, "policy "+f.policy.ID)},
		{"another project", f.editorB.Secret, "isolation_project",
			map[string]string{"id": f.a.ID}, false, append(scopeB, "not project "+f.a.ID)},
		{"another project's token", f.editorB.Secret, "isolation_token",
			map[string]string{"id": f.viewerA.ID, "project_id": f.a.ID}, false, append(scopeB, "not project "+f.a.ID)},
		{"an imported environment, its project not yet in the state", f.editorB.Secret, "isolation_environment",
			map[string]string{"id": f.env.ID}, false, append(scopeB, "not objects outside that project")},
		{"the organization's admin token", f.editorB.Secret, "isolation_token",
			map[string]string{"id": f.adminTokenID}, false, append(scopeB, "not objects outside that project", "an admin or auditor token")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := configuredProvider(t, f.srv.URL, c.token)
			resp, typ := read(t, p, c.typeName, c.attrs)
			if len(resp.Diagnostics) != 1 {
				t.Fatalf("diagnostics = %+v, want exactly one", resp.Diagnostics)
			}
			d := resp.Diagnostics[0]
			got := stateID(t, resp, typ)
			if c.gone {
				if d.Severity != tfprotov6.DiagnosticSeverityWarning || !strings.Contains(d.Summary, "deleted outside Terraform") || got != "" {
					t.Fatalf("diagnostic %s %q, state id %q; want the deleted-outside-Terraform warning and no state", d.Severity, d.Summary, got)
				}
				return
			}
			if d.Severity != tfprotov6.DiagnosticSeverityError || got != c.attrs["id"] {
				t.Fatalf("diagnostic %s %q %q, state id %q; want an error and the state kept", d.Severity, d.Summary, d.Detail, got)
			}
			msg := d.Summary + " " + d.Detail
			for _, part := range c.wantErr {
				if !strings.Contains(msg, part) {
					t.Errorf("the error does not say %q:\n%s", part, msg)
				}
			}
			if strings.Contains(msg, c.token) {
				t.Errorf("the error shows the token's secret:\n%s", msg)
			}
		})
	}
}

func TestRead_OneProjectCheckPerProjectPerRunEvenWhenReadsRunAtOnce(t *testing.T) {
	t.Parallel()
	f := newScopeFixtures(t)
	var mu sync.Mutex
	gets := map[string]int{}
	counting := newProxy(t, f.srv.URL, func(r *http.Request) error {
		if r.Method == http.MethodGet {
			mu.Lock()
			gets[r.URL.Path]++
			mu.Unlock()
		}
		return nil
	})

	// Another project's editor refreshes 16 objects of project A at once, as
	// Terraform does with -parallelism: every Read gets 404.
	p := configuredProvider(t, counting.URL, f.editorB.Secret)
	const reads = 16
	var wg sync.WaitGroup
	errs := make(chan string, reads)
	for i := range reads {
		wg.Go(func() {
			typeName := []string{"isolation_environment", "isolation_policy"}[i%2]
			resp, _ := read(t, p, typeName, map[string]string{"id": f.env.ID, "project_id": f.a.ID})
			if len(resp.Diagnostics) != 1 || resp.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityError {
				errs <- typeName + ": " + resp.Diagnostics[0].Summary
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("want an error from every Read, got %s", e)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := gets["/v1/projects/"+f.a.ID]; n != 1 {
		t.Errorf("GET /v1/projects/%s was sent %d times for %d Reads, want once per run", f.a.ID, n, reads)
	}
	if n := gets["/v1/whoami"]; n != 1 {
		t.Errorf("GET /v1/whoami was sent %d times, want once, at Configure", n)
	}
}

// The acceptance tests show that an object deleted outside Terraform is
// planned for creation; the CLI does not expose the warning, so this test
// checks it at the protocol: Read answers a warning (not an error) and no
// state.
func TestRead_ObjectDeletedOutsideTerraformIsAWarningAndLeavesTheStateEmpty(t *testing.T) {
	t.Parallel()
	srv := startExtraServer(t, server.Config{})
	p := configuredProvider(t, srv.URL, srv.Token)

	for typeName, attrs := range map[string]map[string]string{
		"isolation_project":     {"id": "prj_does_not_exist"},
		"isolation_environment": {"id": "env_does_not_exist"},
		"isolation_policy":      {"id": "pol_deleted-long-ago", "name": "gone"},
	} {
		t.Run(typeName, func(t *testing.T) {
			resp, typ := read(t, p, typeName, attrs)
			if len(resp.Diagnostics) != 1 || resp.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityWarning ||
				!strings.Contains(resp.Diagnostics[0].Summary, "deleted outside Terraform") {
				t.Fatalf("diagnostics = %+v, want exactly one warning that the %s was deleted outside Terraform", resp.Diagnostics, typeName)
			}
			newState, err := resp.NewState.Unmarshal(typ)
			if err != nil {
				t.Fatal(err)
			}
			if !newState.IsNull() {
				t.Fatalf("state after reading a deleted %s = %s, want null (removed)", typeName, newState)
			}
		})
	}
}

// The server answers 404 alike for a project that does not exist and one
// outside the token's scope, and its lists filtered by such a project
// may answer an empty page: a data source must fail instead of reporting
// that there is nothing.
func TestAccDataSources_AProjectTheTokenCannotSeeIsAnErrorNotAnEmptyResult(t *testing.T) {
	requireAcc(t)
	a, b := outsideProject(t, accName("seen-a")), outsideProject(t, accName("seen-b"))
	editorB := outsideToken(t, "editor-b", apiv1.RoleEditor, b.ID)

	const missing = "prj_does-not-exist"
	// Each step reads as token on the shared server.
	step := func(token, dataSource string, parts ...string) resource.TestStep {
		return resource.TestStep{
			Config: serverProviderConfig + dataSource, ConfigVariables: providerVariables(testAccEndpoint, token, nil),
			PlanOnly: true, ExpectError: errorWith(parts...),
		}
	}
	outOfScope := []string{"does not exist, or is outside the scope of the provider's token", "sees only project " + b.ID}

	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		step(testAccToken, `data "isolation_environments" "x" { project_id = "`+missing+`" }`,
			"Unable to list environments", "Project "+missing+" does not exist"),
		step(testAccToken, `data "isolation_tokens" "x" { project_id = "`+missing+`" }`,
			"Unable to list tokens", "Project "+missing+" does not exist"),
		step(editorB.Secret, `data "isolation_environments" "x" { project_id = "`+a.ID+`" }`,
			append([]string{"Unable to list environments", "Project " + a.ID}, outOfScope...)...),
		step(editorB.Secret, `data "isolation_environment" "x" {
  project_id = "`+a.ID+`"
  name       = "web"
}`, append([]string{"Unable to read environment", "Project " + a.ID}, outOfScope...)...),
		step(editorB.Secret, `data "isolation_policy" "x" {
  project_id = "`+a.ID+`"
  name       = "egress"
}`, append([]string{"Unable to read policy", "Project " + a.ID}, outOfScope...)...),
		step(editorB.Secret, `data "isolation_project" "x" { id = "`+a.ID+`" }`, "Unable to read project", "404"),
		step(editorB.Secret, `data "isolation_effective_policy" "x" { environment_id = "env_of-another-project" }`,
			"Unable to read effective policy", "404"),
		{
			// The token's own project, which has nothing yet: empty, no error.
			Config:          serverProviderConfig + `data "isolation_environments" "mine" { project_id = "` + b.ID + `" }`,
			ConfigVariables: providerVariables(testAccEndpoint, editorB.Secret, nil),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("data.isolation_environments.mine", tfjsonpath.New("ids"), knownvalue.ListSizeExact(0)),
			},
		},
	}))
}
