package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	fwresource "github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/workloadspec"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc/inittest"
)

// runningWeb is an environment as a runc server answers it: its workload
// runs, restarted twice already.
func runningWeb() apiv1.Environment {
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return apiv1.Environment{
		ID: "env_1", ProjectID: "prj_1", Name: "web", Labels: map[string]string{}, State: apiv1.StateReady,
		Resources:   apiv1.Resources{CPUMillis: 1000, MemoryMB: 1024, DiskGB: 20, MaxProcesses: 1024},
		CreatedAt:   started,
		Enforcement: apiv1.Enforcement{Driver: apiv1.DriverNetns, Runtime: apiv1.RuntimeRunc, Enforced: true, Address: "10.0.0.2", Namespace: "iso1"},
		Workload: &apiv1.Workload{
			WorkloadSpec: apiv1.WorkloadSpec{Image: "app:1", Command: []string{"/app", "serve"}, Env: map[string]string{"PORT": "8080"}, Restart: apiv1.RestartAlways},
			State:        apiv1.WorkloadRunning, RestartCount: 2, StartedAt: &started, ImageDigest: "sha256:" + strings.Repeat("ab", 32),
		},
	}
}

// modelOf is the resource's model of env.
func modelOf(env apiv1.Environment) environmentModel {
	var m environmentModel
	m.fromAPI(&env)
	return m
}

func TestEnvironment_ThePlanWarnsOfAnUpdateThatRestartsOrStopsTheWorkload(t *testing.T) {
	t.Parallel()
	const restarts = `restarts the workload of environment "web" (same address, same home volume).`
	tests := []struct {
		name           string
		change         func(*apiv1.Environment)
		summary, start string // start is the beginning of the detail
	}{
		{"no change", func(*apiv1.Environment) {}, "", ""},
		{"cpu, memory and processes apply in place, as does a growing disk", func(e *apiv1.Environment) {
			e.Resources = apiv1.Resources{CPUMillis: 2000, MemoryMB: 2048, DiskGB: 40, MaxProcesses: 256}
		}, "", ""},
		{"a new image and command", func(e *apiv1.Environment) {
			e.Workload.Image, e.Workload.Command = "app:2", []string{"/app", "serve", "--v2"}
		}, "The workload restarts", "Changing workload.image and workload.command " + restarts},
		{"every part of the spec", func(e *apiv1.Environment) {
			e.Workload.WorkloadSpec = apiv1.WorkloadSpec{Image: "app:2", Args: []string{"-v"}, WorkingDir: "/srv", Restart: apiv1.RestartNever}
		}, "The workload restarts", "Changing workload.image, workload.command, workload.args, workload.env, workload.working_dir and workload.restart " + restarts},
		{"a shrinking disk", func(e *apiv1.Environment) { e.Resources.DiskGB = 10 },
			"The workload restarts", "Shrinking resources.disk_gb from 20 to 10 " + restarts},
		{"env and a shrinking disk", func(e *apiv1.Environment) {
			e.Workload.Env = map[string]string{"PORT": "9090"}
			e.Resources.DiskGB = 10
		}, "The workload restarts", "Changing workload.env and shrinking resources.disk_gb from 20 to 10 " + restarts},
		{"removing the workload", func(e *apiv1.Environment) { e.Workload = nil },
			"The workload stops", `Removing workload stops the workload of environment "web" and removes its container, its writable layer and its home volume`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			planned := runningWeb()
			tc.change(&planned)
			var diags diag.Diagnostics
			summary, detail := workloadChangeWarning(context.Background(), modelOf(planned), modelOf(runningWeb()), &diags)
			if diags.HasError() {
				t.Fatal(diags)
			}
			if summary != tc.summary || !strings.HasPrefix(detail, tc.start) {
				t.Errorf("warning = %q: %q\nwant      %q: %q...", summary, detail, tc.summary, tc.start)
			}
			if strings.Contains(detail, "runs nothing") {
				t.Errorf("the warning says nothing runs on a runc server: %q", detail)
			}
		})
	}
}

func TestEnvironment_ThePlanSaysWhenNothingRunsOrWhatIsNotKnownYet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var diags diag.Diagnostics
	// Adding a workload starts it: nothing ran to restart.
	without := runningWeb()
	without.Workload = nil
	if summary, _ := workloadChangeWarning(ctx, modelOf(runningWeb()), modelOf(without), &diags); summary != "" {
		t.Errorf("adding a workload warns %q, want nothing", summary)
	}
	// A simulate server records the change and restarts nothing: the
	// warning says so.
	simulated := runningWeb()
	simulated.Enforcement.Driver, simulated.Enforcement.Runtime = apiv1.DriverSimulate, apiv1.RuntimeSimulate
	changed := simulated
	changed.Workload = &apiv1.Workload{WorkloadSpec: apiv1.WorkloadSpec{Image: "app:2", Restart: apiv1.RestartAlways}}
	if _, detail := workloadChangeWarning(ctx, modelOf(changed), modelOf(simulated), &diags); !strings.Contains(detail,
		"This server's runtime is simulate: it records the workload and runs nothing, so nothing restarts there.") {
		t.Errorf("on simulate: %q, want it to say that nothing restarts there", detail)
	}
	// An image from a resource not yet created: it may change.
	unknown := modelOf(runningWeb())
	unknown.Workload = types.ObjectUnknown(workloadspec.Type.AttrTypes)
	if summary, detail := workloadChangeWarning(ctx, unknown, modelOf(runningWeb()), &diags); summary != "The workload may restart" ||
		!strings.Contains(detail, "known only at apply") {
		t.Errorf("unknown workload: %q: %q, want that it may restart", summary, detail)
	}
	if diags.HasError() {
		t.Fatal(diags)
	}
}

func TestEnvironment_AnUpdateSendsTheWholeWorkloadAndNullToRemoveIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := modelOf(runningWeb())
	patchJSON := func(planned apiv1.Environment) map[string]json.RawMessage {
		t.Helper()
		var diags diag.Diagnostics
		patch := modelOf(planned).toPatch(ctx, state, &diags)
		if diags.HasError() {
			t.Fatal(diags)
		}
		b, err := json.Marshal(patch)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(b, &fields); err != nil {
			t.Fatal(err)
		}
		return fields
	}
	if fields := patchJSON(runningWeb()); len(fields) != 0 {
		t.Errorf("no change: PATCH %v, want an empty body", fields)
	}
	// What the runtime observed is not the spec: it is never sent.
	observed := runningWeb()
	observed.Workload.State, observed.Workload.RestartCount = apiv1.WorkloadCrashLooping, 9
	if fields := patchJSON(observed); len(fields) != 0 {
		t.Errorf("only the observed workload changed: PATCH %v, want an empty body", fields)
	}
	newImage := runningWeb()
	newImage.Workload.Image = "app:2"
	if got, want := string(patchJSON(newImage)["workload"]), `{"image":"app:2","command":["/app","serve"],"env":{"PORT":"8080"},"restart":"always"}`; got != want {
		t.Errorf("a new image: workload %s, want the whole spec %s", got, want)
	}
	removed := runningWeb()
	removed.Workload = nil
	if fields := patchJSON(removed); string(fields["workload"]) != "null" || len(fields) != 1 {
		t.Errorf("removed: PATCH %v, want exactly workload: null", fields)
	}
	resized := runningWeb()
	resized.Resources.MaxProcesses = 64
	if got := string(patchJSON(resized)["resources"]); got != `{"max_processes":64}` {
		t.Errorf("max_processes changed: resources %s, want only max_processes", got)
	}
}

// environmentPlanner plans isolation_environment changes over the plugin
// protocol, as Terraform asks the provider; planning calls no API, so it
// needs no server unless the provider is configured for one.
type environmentPlanner struct {
	p      tfprotov6.ProviderServer
	schema fwresource.SchemaResponse
	typ    tftypes.Type
}

func newEnvironmentPlanner(t *testing.T) *environmentPlanner {
	t.Helper()
	p, err := providerserver.NewProtocol6WithError(New("test")())()
	if err != nil {
		t.Fatal(err)
	}
	return plannerOf(t, p)
}

// plannerOf plans with the provider server p, configured or not.
func plannerOf(t *testing.T, p tfprotov6.ProviderServer) *environmentPlanner {
	t.Helper()
	e := &environmentPlanner{p: p}
	NewEnvironmentResource().Schema(t.Context(), fwresource.SchemaRequest{}, &e.schema)
	e.typ = e.schema.Schema.Type().TerraformType(t.Context())
	return e
}

// value is m as the protocol carries it.
func (e *environmentPlanner) value(t *testing.T, m environmentModel) *tfprotov6.DynamicValue {
	t.Helper()
	state := tfsdk.State{Schema: e.schema.Schema, Raw: tftypes.NewValue(e.typ, nil)}
	timeoutsNull := timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{"create": types.StringType, "update": types.StringType, "delete": types.StringType})}
	if diags := state.Set(t.Context(), environmentResourceModel{environmentModel: m, Timeouts: timeoutsNull}); diags.HasError() {
		t.Fatal(diags)
	}
	v, err := tfprotov6.NewDynamicValue(e.typ, state.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return &v
}

// configOf is m as a configuration writes it: what only the server sets is null.
func configOf(m environmentModel) environmentModel {
	m.ID, m.State, m.StateMessage, m.Address, m.Enforced = types.StringNull(), types.StringNull(), types.StringNull(), types.StringNull(), types.BoolNull()
	m.Driver, m.Runtime, m.Namespace, m.ExpiresAt, m.CreatedAt = types.StringNull(), types.StringNull(), types.StringNull(), types.StringNull(), types.StringNull()
	m.WorkloadState, m.WorkloadStatus = types.StringNull(), types.ObjectNull(workloadspec.StatusType.AttrTypes)
	return m
}

// plan asks for the plan from prior to the configuration cfg, as Terraform
// proposes it (the configuration, with what it leaves out from prior).
func (e *environmentPlanner) plan(t *testing.T, prior, cfg environmentModel) (environmentModel, []*tfprotov6.Diagnostic) {
	t.Helper()
	proposed := cfg
	proposed.ID, proposed.State, proposed.StateMessage, proposed.Address, proposed.Enforced = prior.ID, prior.State, prior.StateMessage, prior.Address, prior.Enforced
	proposed.Driver, proposed.Runtime, proposed.Namespace, proposed.ExpiresAt, proposed.CreatedAt = prior.Driver, prior.Runtime, prior.Namespace, prior.ExpiresAt, prior.CreatedAt
	proposed.WorkloadState, proposed.WorkloadStatus = prior.WorkloadState, prior.WorkloadStatus
	return e.planned(t, &tfprotov6.PlanResourceChangeRequest{
		TypeName: "isolation_environment", PriorState: e.value(t, prior), ProposedNewState: e.value(t, proposed), Config: e.value(t, cfg),
	})
}

// planCreate asks for the plan that creates cfg.
func (e *environmentPlanner) planCreate(t *testing.T, cfg environmentModel) (environmentModel, []*tfprotov6.Diagnostic) {
	t.Helper()
	none, err := tfprotov6.NewDynamicValue(e.typ, tftypes.NewValue(e.typ, nil))
	if err != nil {
		t.Fatal(err)
	}
	return e.planned(t, &tfprotov6.PlanResourceChangeRequest{
		TypeName: "isolation_environment", PriorState: &none, ProposedNewState: e.value(t, cfg), Config: e.value(t, cfg),
	})
}

// planned sends req and returns the planned state (zero when the plan
// failed) and the diagnostics.
func (e *environmentPlanner) planned(t *testing.T, req *tfprotov6.PlanResourceChangeRequest) (environmentModel, []*tfprotov6.Diagnostic) {
	t.Helper()
	resp, err := e.p.PlanResourceChange(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.PlannedState == nil {
		return environmentModel{}, resp.Diagnostics
	}
	raw, err := resp.PlannedState.Unmarshal(e.typ)
	if err != nil {
		t.Fatal(err)
	}
	var planned environmentResourceModel
	if diags := (tfsdk.Plan{Schema: e.schema.Schema, Raw: raw}).Get(t.Context(), &planned); diags.HasError() {
		t.Fatal(diags)
	}
	return planned.environmentModel, resp.Diagnostics
}

func TestEnvironment_AWorkloadThatCrashedOrRestartedOnItsOwnMakesNoDiff(t *testing.T) {
	t.Parallel()
	e := newEnvironmentPlanner(t)
	// The refresh found the workload crash-looping, exited 137 after 7
	// restarts: the configuration, unchanged, plans nothing.
	crashed := runningWeb()
	exit := 137
	crashed.Workload.State, crashed.Workload.ExitCode, crashed.Workload.RestartCount = apiv1.WorkloadCrashLooping, &exit, 7
	crashed.StateMessage = "workload crash_looping: out of memory"
	prior := modelOf(crashed)
	planned, diags := e.plan(t, prior, configOf(modelOf(runningWeb())))
	if len(diags) != 0 {
		t.Errorf("diagnostics %+v, want none", diags)
	}
	for name, got := range map[string][2]attr.Value{
		"workload":        {planned.Workload, prior.Workload},
		"workload_state":  {planned.WorkloadState, prior.WorkloadState},
		"workload_status": {planned.WorkloadStatus, prior.WorkloadStatus},
		"state_message":   {planned.StateMessage, prior.StateMessage},
		"resources":       {planned.Resources, prior.Resources},
	} {
		if !got[0].Equal(got[1]) {
			t.Errorf("%s planned %s, want the refreshed %s: no diff", name, got[0], got[1])
		}
	}
}

func TestEnvironment_AWorkloadOnAServerThatRunsNoneFailsAtPlan(t *testing.T) {
	t.Parallel()
	// A netns server started with --runtime none answers so; saying it
	// needs no root.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(apiv1.WhoAmI{TokenID: "tok-1", Name: "fake", Role: apiv1.RoleAdmin, // the provider reads what it gets
			Server: apiv1.ServerInfo{Name: apiv1.ServerName, Driver: apiv1.DriverNetns, Runtime: apiv1.RuntimeNone}})
	}))
	t.Cleanup(fake.Close)
	e := plannerOf(t, configuredProvider(t, fake.URL, "isot_a-real-looking-secret-0123456789"))
	want := configOf(modelOf(runningWeb()))
	_, diags := e.planCreate(t, want)
	if len(diags) != 1 || diags[0].Severity != tfprotov6.DiagnosticSeverityError || diags[0].Summary != "Invalid workload" ||
		!strings.Contains(diags[0].Detail, "runs no workloads (isolationd serve --runtime none)") ||
		!diags[0].Attribute.Equal(tftypes.NewAttributePath().WithAttributeName("workload")) {
		t.Errorf("diagnostics %+v, want one error on workload: the server runs none", diags)
	}
	// Without a workload, the plan goes on.
	want.Workload = types.ObjectNull(workloadspec.Type.AttrTypes)
	if _, diags := e.planCreate(t, want); len(diags) != 0 {
		t.Errorf("without a workload: diagnostics %+v, want none", diags)
	}
}

func TestEnvironment_AnUpdatePlansWhatTheRuntimeObservesAsUnknownAndWarnsOfTheRestart(t *testing.T) {
	t.Parallel()
	e := newEnvironmentPlanner(t)
	changed := runningWeb()
	changed.Workload.Image = "app:2"
	planned, diags := e.plan(t, modelOf(runningWeb()), configOf(modelOf(changed)))
	// Known after apply: the apply may find anything, and a known planned
	// value it contradicted would fail the apply.
	if !planned.WorkloadState.IsUnknown() || !planned.WorkloadStatus.IsUnknown() {
		t.Errorf("workload_state %s, workload_status %s: want both unknown in an update", planned.WorkloadState, planned.WorkloadStatus)
	}
	if got := planned.Workload.Attributes()[workloadspec.AttrImage]; !got.Equal(types.StringValue("app:2")) {
		t.Errorf("planned image %s, want app:2", got)
	}
	if len(diags) != 1 || diags[0].Severity != tfprotov6.DiagnosticSeverityWarning || diags[0].Summary != "The workload restarts" ||
		!strings.Contains(diags[0].Detail, `Changing workload.image restarts the workload of environment "web" (same address, same home volume).`) {
		t.Errorf("diagnostics %+v, want the restart warning", diags)
	}
}

// envAccRuntime chooses the workload runtime of the workload acceptance
// tests: simulate (the default) or runc (see newWorkloadRig).
const envAccRuntime = "ISOLATION_ACC_RUNTIME"

// workloadRig is the server the workload acceptance tests run against and
// what they may expect of it, so that one test states one behaviour on
// every runtime. By default it is the shared acceptance server, on the
// simulate driver, which records workloads, runs none and reports them
// not_run. With ISOLATION_ACC_RUNTIME=runc it is an isolationd of the
// test's own on the netns driver with the runc runtime, where workloads
// run; that needs root, and the test skips, saying so, without it.
type workloadRig struct {
	provider string         // the provider block; "" is the shared server's (ISOLATION_ENDPOINT)
	client   *client.Client // the rig's server, as its admin
	driver   string
	runtime  string
	running  string    // workload_state of a workload whose command keeps running
	images   [2]string // two images a workload can run, for an image change
}

func newWorkloadRig(t *testing.T) *workloadRig {
	t.Helper()
	switch rt := os.Getenv(envAccRuntime); rt {
	case "", apiv1.RuntimeSimulate:
		return &workloadRig{
			client: testAccClient, driver: apiv1.DriverSimulate, runtime: apiv1.RuntimeSimulate, running: apiv1.WorkloadNotRun,
			// Never pulled: the simulate runtime resolves no image.
			images: [2]string{"registry.example.com/acc/app:1", "registry.example.com/acc/app:2"},
		}
	case apiv1.RuntimeRunc:
		return newRuncRig(t)
	default:
		t.Fatalf("%s=%q: want %s or %s", envAccRuntime, rt, apiv1.RuntimeSimulate, apiv1.RuntimeRunc)
		return nil
	}
}

// newRuncRig starts an isolationd of the test's own that runs workloads
// under runc, in network namespaces named with a prefix of its own.
func newRuncRig(t *testing.T) *workloadRig {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1 (make test does)")
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s=runc: the netns driver and runc need root", envAccRuntime)
	}
	srv := startExtraServer(t, server.Config{
		Driver: apiv1.DriverNetns, Runtime: apiv1.RuntimeRunc, NetnsPrefix: "acc" + acctest.RandStringFromCharSet(3, "abcdefghijklmnopqrstuvwxyz"),
		InitBinary: inittest.Binary(t),
	})
	c, err := client.New(client.Config{Endpoint: srv.URL, Token: srv.Token})
	if err != nil {
		t.Fatal(err)
	}
	return &workloadRig{
		provider: providerBlock(srv), client: c, driver: apiv1.DriverNetns, runtime: apiv1.RuntimeRunc, running: apiv1.WorkloadRunning,
		images: runcRigImages(t, c),
	}
}

// runcRigImages imports the runc rig's two images (busybox-based, built
// with internal/image/imagetest) into its server's image store.
func runcRigImages(t *testing.T, _ *client.Client) [2]string {
	t.Skipf("%s=runc: the rig imports its images through the image store's API (POST /v1/images), not in this tree yet", envAccRuntime)
	return [2]string{}
}

// namespace is the check of the environment's namespace on the rig: the
// simulate driver makes none.
func (r *workloadRig) namespace() knownvalue.Check {
	if r.driver == apiv1.DriverSimulate {
		return knownvalue.Null()
	}
	return knownvalue.NotNull()
}

// destroyed is the CheckDestroy of a test on the rig: the environment
// whose id was captured is gone from the rig's server.
func (r *workloadRig) destroyed(id *string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		_, err := r.client.Environments().Get(context.Background(), *id)
		if !client.IsNotFound(err) {
			return fmt.Errorf("environment %s after destroy: %v, want 404", *id, err)
		}
		return nil
	}
}

// workloadHCL is a workload block running image with command.
func workloadHCL(image, command string) string {
	return fmt.Sprintf(`
  workload = {
    image       = %q
    command     = ["/bin/sh", "-c", %q]
    env         = { GREETING = "hello" }
    working_dir = "/home"
  }`, image, command)
}

func TestAccEnvironment_AWorkloadIsCreatedChangedInPlaceResizedRemovedAndDestroyed(t *testing.T) {
	rig := newWorkloadRig(t)
	pa, pb := accName("prj"), accName("prj")
	cfg := func(body string) string { return rig.provider + environmentConfig(pa, pb, "a", `name = "app"`+body) }
	const v1, v2 = "echo v1; exec sleep 3600", "echo v2; exec sleep 3600"
	small := `
  resources = { memory_mb = 256, max_processes = 128 }`
	bigger := `
  resources = { cpu_millis = 500, memory_mb = 512, max_processes = 256, disk_gb = 12 }`
	var id string
	sameID := statecheck.CompareValue(compare.ValuesSame())
	sameAddress := statecheck.CompareValue(compare.ValuesSame())
	// Resources apply to the running workload in place: it is not restarted.
	sameStart := statecheck.CompareValue(compare.ValuesSame())
	spec := func(image, command string) knownvalue.Check {
		return knownvalue.ObjectExact(map[string]knownvalue.Check{
			"image":       knownvalue.StringExact(image),
			"command":     knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("/bin/sh"), knownvalue.StringExact("-c"), knownvalue.StringExact(command)}),
			"args":        knownvalue.Null(),
			"env":         knownvalue.MapExact(map[string]knownvalue.Check{"GREETING": knownvalue.StringExact("hello")}),
			"working_dir": knownvalue.StringExact("/home"),
			"restart":     knownvalue.StringExact(apiv1.RestartAlways),
		})
	}
	kept := func(checks ...statecheck.StateCheck) []statecheck.StateCheck {
		return append(checks,
			sameID.AddStateValue(environmentAddr, tfjsonpath.New("id")),
			sameAddress.AddStateValue(environmentAddr, tfjsonpath.New("address")),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("state"), knownvalue.StringExact(apiv1.StateReady)),
		)
	}
	running := statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_state"), knownvalue.StringExact(rig.running))
	steps := []resource.TestStep{
		{
			// The spec round-trips: the plan after the apply is empty.
			Config: cfg(small+workloadHCL(rig.images[0], v1)) + `
data "isolation_environment" "read" {
  id = isolation_environment.test.id
}
`,
			ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(environmentAddr, plancheck.ResourceActionCreate)),
			ConfigStateChecks: kept(
				captureID(environmentAddr, &id),
				running,
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload"), spec(rig.images[0], v1)),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("driver"), knownvalue.StringExact(rig.driver)),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("runtime"), knownvalue.StringExact(rig.runtime)),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("namespace"), rig.namespace()),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("restart_count"), knownvalue.Int64Exact(0)),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("exit_code"), knownvalue.Null()),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("resources").AtMapKey("max_processes"), knownvalue.Int64Exact(128)),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("resources").AtMapKey("memory_mb"), knownvalue.Int64Exact(256)),
				// The data sources show the same.
				statecheck.CompareValuePairs("data.isolation_environment.read", tfjsonpath.New("workload"), environmentAddr, tfjsonpath.New("workload"), compare.ValuesSame()),
				statecheck.CompareValuePairs("data.isolation_environment.read", tfjsonpath.New("workload_state"), environmentAddr, tfjsonpath.New("workload_state"), compare.ValuesSame()),
				statecheck.CompareValuePairs("data.isolation_environment.read", tfjsonpath.New("runtime"), environmentAddr, tfjsonpath.New("runtime"), compare.ValuesSame()),
			),
		},
	}
	steps = append(steps, importSteps(environmentAddr)...)
	steps = append(steps,
		// A new image and command: the same environment, address and volume.
		updatedStep(cfg(small+workloadHCL(rig.images[1], v2)), environmentAddr, kept(
			running,
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload"), spec(rig.images[1], v2)),
			sameStart.AddStateValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("started_at")),
		)...),
		// cpu, memory, processes and a growing disk, in place.
		updatedStep(cfg(bigger+workloadHCL(rig.images[1], v2)), environmentAddr, kept(
			running,
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("resources"), knownvalue.ObjectExact(map[string]knownvalue.Check{
				"cpu_millis": knownvalue.Int64Exact(500), "memory_mb": knownvalue.Int64Exact(512),
				"disk_gb": knownvalue.Int64Exact(12), "max_processes": knownvalue.Int64Exact(256),
			})),
			sameStart.AddStateValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("started_at")),
		)...),
	)
	removed := updatedStep(cfg(bigger), environmentAddr, kept(
		statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload"), knownvalue.Null()),
		statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_state"), knownvalue.Null()),
		statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_status"), knownvalue.Null()),
	)...)
	// The server holds no workload any more: the PATCH said workload: null.
	removed.Check = func(*terraform.State) error {
		env, err := rig.client.Environments().Get(context.Background(), id)
		if err != nil {
			return err
		}
		if env.Workload != nil {
			return fmt.Errorf("the server still holds workload %+v after the workload was removed", *env.Workload)
		}
		return nil
	}
	c := testAccCase(t, append(steps, removed))
	c.CheckDestroy = rig.destroyed(&id)
	resource.ParallelTest(t, c)
}

func TestAccEnvironment_InvalidWorkloadsAndProcessLimitsFailAtPlanNamingTheAttribute(t *testing.T) {
	var steps []resource.TestStep
	for _, tc := range []struct {
		body string
		want []string
	}{
		{`workload = { image = "Not A Reference" }`, []string{"Invalid workload.image", "workload.image must be an image reference", `got "Not A Reference"`}},
		{`workload = { image = "registry.example.com/team/dev:" }`, []string{"Invalid workload.image", "workload.image must be an image reference"}},
		{`workload = { image = "busybox", restart = "sometimes" }`, []string{"workload.restart", `value must be one of: ["always" "on-failure" "never"]`}},
		{`resources = { max_processes = 8 }`, []string{"Invalid resources.max_processes", "resources.max_processes must be between 16 and 65536, got 8"}},
		{`resources = { max_processes = 100000 }`, []string{"Invalid resources.max_processes", "resources.max_processes must be between 16 and 65536, got 100000"}},
		{`workload = { image = "busybox", env = { "1BAD" = "x" } }`, []string{`workload.env["1BAD"] must be an environment variable name`}},
		{`workload = { image = "busybox", working_dir = "srv" }`, []string{"workload.working_dir must be an absolute path"}},
		{`workload = { image = "busybox", command = [] }`, []string{"workload.command must not be empty: omit command to run the image's entrypoint"}},
		{`workload = { command = ["sh"] }`, []string{`attribute "image" is required`}},
	} {
		steps = append(steps, planFails(environmentConfig(accName("prj"), accName("prj"), "a", `name = "ok"`+"\n"+tc.body), errorWith(tc.want...)))
	}
	resource.ParallelTest(t, testAccCase(t, steps))
}
