package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/workloadspec"
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
		{"cpu, memory and processes apply in place", func(e *apiv1.Environment) {
			e.Resources = apiv1.Resources{CPUMillis: 2000, MemoryMB: 2048, DiskGB: 20, MaxProcesses: 256}
		}, "", ""},
		{"a growing disk restarts where the server cannot resize it mounted", func(e *apiv1.Environment) { e.Resources.DiskGB = 40 },
			"The workload may restart", "Growing resources.disk_gb from 20 to 40 is applied to the running workload"},
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

// errFound ends a read of a workload's output that found its line.
var errFound = errors.New("found")

// printed checks that the workload of isolation_environment.test printed
// want, following its output for 30 s at most: an apply returns once the
// command has started, perhaps before it printed. It checks nothing on a
// rig whose workloads do not run.
func (r *workloadRig) printed(want string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		if !r.runs() {
			return nil
		}
		id, err := stateAttr(s, environmentAddr, "id")
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var lines []string
		err = r.client.Environments().Logs(ctx, id, client.LogOptions{Follow: true}, func(l apiv1.LogLine) error {
			lines = append(lines, l.Line)
			if l.Line == want {
				return errFound
			}
			return nil
		})
		if !errors.Is(err, errFound) {
			return fmt.Errorf("the workload of %s printed %q (%v), not %q", id, lines, err, want)
		}
		return nil
	}
}

// crash kills the command of the environment's workload from outside, as
// the OOM killer or a fault would (SIGKILL: exit code 137), and waits
// until the server reports that its init restarted it.
func (r *workloadRig) crash(ctx context.Context, id string) error {
	st, err := r.srv.Runtime().Status(ctx, id)
	if err != nil {
		return err
	}
	// The init is a Go program: any of its threads may have started the
	// command.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", st.Pid))
	if err != nil {
		return err
	}
	var pids []string
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		pids = append(pids, strings.Fields(string(b))...)
	}
	if st.Pid == 0 || len(pids) == 0 {
		return fmt.Errorf("the workload of %s runs no command (init pid %d): nothing to crash", id, st.Pid)
	}
	for _, p := range pids {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("killing pid %d, the command of %s: %w", pid, id, err)
		}
	}
	return r.reports(ctx, id, "restarted after the crash", func(w *apiv1.Workload) bool {
		return w.RestartCount == 1 && w.State == apiv1.WorkloadRunning
	})
}

// reports waits, for 30 s at most, until the server reports the
// environment's workload as cond wants it: the runtime's observations
// reach the API through the reconciler, a moment after they happen.
func (r *workloadRig) reports(ctx context.Context, id, what string, cond func(*apiv1.Workload) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		env, err := r.client.Environments().Get(ctx, id)
		if err == nil && env.Workload != nil && cond(env.Workload) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the workload of %s not %s within 30 s: last seen %+v (%v)", id, what, env, err)
		case <-tick.C:
		}
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
	onEachRig(t, func(t *testing.T, rig *workloadRig) {
		pa, pb := accName("prj"), accName("prj")
		cfg := func(body string) string { return rig.provider + environmentConfig(pa, pb, "a", `name = "app"`+body) }
		// The first command leaves a file in the home volume; the second,
		// in the second image, shows that it is still there.
		const (
			v1 = `echo kept > /home/marker; echo "image $(cat /etc/acc-image)"; exec sleep 3600`
			v2 = `echo "image $(cat /etc/acc-image), marker $(cat /home/marker)"; exec sleep 3600`
		)
		small := `
  resources = { memory_mb = 256, max_processes = 128 }`
		faster := `
  resources = { cpu_millis = 500, memory_mb = 512, max_processes = 256 }`
		bigger := `
  resources = { cpu_millis = 500, memory_mb = 512, max_processes = 256, disk_gb = 12 }`
		var id string
		sameID := statecheck.CompareValue(compare.ValuesSame())
		sameAddress := statecheck.CompareValue(compare.ValuesSame())
		sameNamespace := statecheck.CompareValue(compare.ValuesSame())
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
				"ports":       knownvalue.Null(),
			})
		}
		kept := func(checks ...statecheck.StateCheck) []statecheck.StateCheck {
			return append(checks,
				sameID.AddStateValue(environmentAddr, tfjsonpath.New("id")),
				sameAddress.AddStateValue(environmentAddr, tfjsonpath.New("address")),
				sameNamespace.AddStateValue(environmentAddr, tfjsonpath.New("namespace")),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("state"), knownvalue.StringExact(apiv1.StateReady)),
			)
		}
		running := statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_state"), knownvalue.StringExact(rig.running))
		steps := []resource.TestStep{
			{
				// The spec round-trips: the plan after the apply is empty.
				Config: cfg(small+workloadHCL(accImages[0], v1)) + `
data "isolation_environment" "read" {
  id = isolation_environment.test.id
}
`,
				ConfigPlanChecks: afterApply(plancheck.ExpectResourceAction(environmentAddr, plancheck.ResourceActionCreate)),
				ConfigStateChecks: kept(
					captureID(environmentAddr, &id),
					running,
					statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload"), spec(accImages[0], v1)),
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
				Check: rig.printed("image 1"),
			},
		}
		steps = append(steps, importSteps(environmentAddr)...)
		// A new image and command: the same environment, address and home
		// volume, in which the first command's file is still there.
		changed := updatedStep(cfg(small+workloadHCL(accImages[1], v2)), environmentAddr, kept(
			running,
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload"), spec(accImages[1], v2)),
			sameStart.AddStateValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("started_at")),
		)...)
		changed.Check = rig.printed("image 2, marker kept")
		steps = append(steps,
			changed,
			// cpu, memory and processes apply to the running container
			// (runc update): it is not restarted.
			updatedStep(cfg(faster+workloadHCL(accImages[1], v2)), environmentAddr, kept(
				running,
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("resources"), knownvalue.ObjectExact(map[string]knownvalue.Check{
					"cpu_millis": knownvalue.Int64Exact(500), "memory_mb": knownvalue.Int64Exact(512),
					"disk_gb": knownvalue.Int64Exact(apiv1.DefaultDiskGB), "max_processes": knownvalue.Int64Exact(256),
				})),
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("restart_count"), knownvalue.Int64Exact(0)),
				sameStart.AddStateValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("started_at")),
			)...),
			// A growing disk: online where the kernel lets isolationd grow
			// a mounted filesystem (CAP_SYS_RESOURCE), else offline, which
			// restarts the workload; either way the same environment.
			updatedStep(cfg(bigger+workloadHCL(accImages[1], v2)), environmentAddr, kept(
				running,
				statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("resources").AtMapKey("disk_gb"), knownvalue.Int64Exact(12)),
			)...),
		)
		removed := updatedStep(cfg(bigger), environmentAddr, kept(
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload"), knownvalue.Null()),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_state"), knownvalue.Null()),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_status"), knownvalue.Null()),
		)...)
		// The server holds no workload any more (the PATCH said workload:
		// null), and its runtime runs none.
		removed.Check = resource.ComposeAggregateTestCheckFunc(func(*terraform.State) error {
			env, err := rig.client.Environments().Get(context.Background(), id)
			if err != nil {
				return err
			}
			if env.Workload != nil {
				return fmt.Errorf("the server still holds workload %+v after the workload was removed", *env.Workload)
			}
			return nil
		}, rig.runsNothing(&id))
		c := testAccCase(t, append(steps, removed))
		c.CheckDestroy = rig.destroyed(&id)
		resource.ParallelTest(t, c)
	})
}

func TestAccEnvironment_AWorkloadCrashShowsInARefreshWithoutAPerpetualDiff(t *testing.T) {
	t.Parallel()
	// The simulate runtime runs nothing that could crash.
	rig := newRuncRig(t)
	config := rig.provider + environmentConfig(accName("prj"), accName("prj"), "a", `name = "crashy"`+workloadHCL(accImages[0], "echo up; exec sleep 3600"))
	var id string
	restarted := statecheck.CompareValue(compare.ValuesDiffer())
	started := tfjsonpath.New("workload_status").AtMapKey("started_at")
	status := func(restarts int64, exit knownvalue.Check) []statecheck.StateCheck {
		return []statecheck.StateCheck{
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_state"), knownvalue.StringExact(apiv1.WorkloadRunning)),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("restart_count"), knownvalue.Int64Exact(restarts)),
			statecheck.ExpectKnownValue(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("exit_code"), exit),
			restarted.AddStateValue(environmentAddr, started),
		}
	}
	c := testAccCase(t, []resource.TestStep{
		{
			Config:            config,
			ConfigPlanChecks:  afterApply(),
			ConfigStateChecks: append(status(0, knownvalue.Null()), captureID(environmentAddr, &id)),
		},
		{
			// The command is killed and restarted behind Terraform's back:
			// the plan's refresh sees it, as drift of what only the server
			// sets, and plans nothing.
			PreConfig: outside(t, func(ctx context.Context) error { return rig.crash(ctx, id) }),
			Config:    config,
			PlanOnly:  true,
			ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
				expectDrift(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("restart_count"), knownvalue.Int64Exact(0), knownvalue.Int64Exact(1)),
				expectDrift(environmentAddr, tfjsonpath.New("workload_status").AtMapKey("exit_code"), knownvalue.Null(), knownvalue.Int64Exact(137)),
			}},
		},
		{
			// terraform apply -refresh-only records it; the plan after it
			// is empty.
			RefreshState: true,
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(environmentAddr, "workload_state", apiv1.WorkloadRunning),
				resource.TestCheckResourceAttr(environmentAddr, "workload_status.restart_count", "1"),
				resource.TestCheckResourceAttr(environmentAddr, "workload_status.exit_code", "137"),
			),
			RefreshPlanChecks: resource.RefreshPlanChecks{PostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
		},
		{
			// And the configuration, applied again, changes nothing: no
			// perpetual diff, and the command that was started again keeps
			// running.
			Config:            config,
			ConfigPlanChecks:  resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}, PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			ConfigStateChecks: status(1, knownvalue.Int64Exact(137)),
		},
	})
	c.CheckDestroy = rig.destroyed(&id)
	resource.Test(t, c)
}

// expectDrift is a plan check that the plan's refresh found the resource
// at addr changed outside Terraform at path, from before to after: what
// terraform plan reports as "Objects have changed outside of Terraform",
// and terraform plan -refresh-only as the change it would record.
func expectDrift(addr string, path tfjsonpath.Path, before, after knownvalue.Check) plancheck.PlanCheck {
	return driftCheck{addr, path, before, after}
}

type driftCheck struct {
	addr          string
	path          tfjsonpath.Path
	before, after knownvalue.Check
}

func (c driftCheck) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, rc := range req.Plan.ResourceDrift {
		if rc.Address != c.addr || rc.Change == nil {
			continue
		}
		for _, side := range []struct {
			name  string
			value any
			check knownvalue.Check
		}{{"before", rc.Change.Before, c.before}, {"after", rc.Change.After, c.after}} {
			v, err := tfjsonpath.Traverse(side.value, c.path)
			if err == nil {
				err = side.check.CheckValue(v)
			}
			if err != nil {
				resp.Error = errors.Join(resp.Error, fmt.Errorf("%s: drift at %s, %s: %w", c.addr, c.path, side.name, err))
			}
		}
		return
	}
	resp.Error = fmt.Errorf("%s: the plan's refresh found no change outside Terraform, want one at %s", c.addr, c.path)
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
