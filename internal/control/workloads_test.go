package control_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/control/controltest"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func TestCreateEnvironment_StoresTheWorkloadNormalizedWithDefaults(t *testing.T) {
	r := newRig(t)
	p := controltest.Project(t, r.st, "team", r.clock.Now())
	e, err := r.svc.CreateEnvironment(r.ctx, call("req_1", http.StatusAccepted), apiv1.EnvironmentCreate{
		ProjectID: p.ID, Name: "api", Workload: &apiv1.WorkloadSpec{Image: "demo/api:1", Command: []string{}, Env: map[string]string{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.st.GetEnvironment(r.ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	w := got.Workload
	if w == nil || w.Image != "demo/api:1" || w.Restart != apiv1.RestartAlways || w.Command != nil || w.Env != nil || w.State != apiv1.WorkloadStarting {
		t.Fatalf("stored workload = %+v, want image demo/api:1, restart always, no empty lists, state starting", w)
	}
	if got.Resources.MaxProcesses != apiv1.DefaultMaxProcesses {
		t.Fatalf("max_processes = %d, want the default %d", got.Resources.MaxProcesses, apiv1.DefaultMaxProcesses)
	}
}

func TestPatchEnvironment_SaysWhichWorkloadChangesRestartIt(t *testing.T) {
	r := newRig(t)
	p := controltest.Project(t, r.st, "team", r.clock.Now())
	e, err := r.svc.CreateEnvironment(r.ctx, call("req_1", http.StatusAccepted), apiv1.EnvironmentCreate{
		ProjectID: p.ID, Name: "api", Workload: &apiv1.WorkloadSpec{Image: "demo/api:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	markReady(t, r, e.ID)
	patch := func(in apiv1.EnvironmentPatch) apiv1.Environment {
		t.Helper()
		got, err := r.svc.PatchEnvironment(r.ctx, call("req_p", http.StatusOK), e.ID, in)
		if err != nil {
			t.Fatal(err)
		}
		markReady(t, r, e.ID)
		return got
	}
	cpu, disk := int64(500), int64(20)
	for _, c := range []struct {
		name string
		in   apiv1.EnvironmentPatch
		want string
	}{
		{"image", apiv1.EnvironmentPatch{Workload: apiv1.Some(apiv1.WorkloadSpec{Image: "demo/api:2"})},
			"restarting the workload (same address, same home volume): workload.image changed"},
		{"resources", apiv1.EnvironmentPatch{Resources: &apiv1.ResourcesSpec{CPUMillis: &cpu}},
			"applying resources to the running workload in place"},
		{"disk", apiv1.EnvironmentPatch{Resources: &apiv1.ResourcesSpec{DiskGB: &disk}},
			"growing resources.disk_gb: in place where isolationd may resize a mounted file system, else restarting the workload (same address, same home volume)"},
		{"removal", apiv1.EnvironmentPatch{Workload: apiv1.Null[apiv1.WorkloadSpec]()},
			"stopping and removing the workload, its writable layer and its home volume"},
	} {
		got := patch(c.in)
		if got.State != apiv1.StateUpdating || got.StateMessage != c.want {
			t.Errorf("%s: state %s, message %q; want updating, %q", c.name, got.State, got.StateMessage, c.want)
		}
	}
	if got, _ := r.st.GetEnvironment(r.ctx, e.ID); got.Workload != nil {
		t.Fatalf("workload after null = %+v, want none", got.Workload)
	}
}

func TestCreateEnvironment_RefusesAWorkloadWhenTheServerRunsNone(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	st, svc := controltest.ServiceOf(t, control.Options{Clock: clock, Driver: "netns", Runtime: apiv1.RuntimeNone})
	p := controltest.Project(t, st, "team", clock.Now())
	_, err := svc.CreateEnvironment(t.Context(), call("req_1", http.StatusAccepted), apiv1.EnvironmentCreate{
		ProjectID: p.ID, Name: "api", Workload: &apiv1.WorkloadSpec{Image: "demo/api:1"},
	})
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Kind != problem.Validation || len(pe.Fields) != 1 || pe.Fields[0].Field != "workload" ||
		!strings.Contains(pe.Fields[0].Message, "--runtime none") {
		t.Fatalf("err = %#v, want an invalid problem naming workload and --runtime none", err)
	}
	if n, _ := st.CountEnvironments(t.Context()); n[p.ID] != 0 {
		t.Fatalf("environments after the refusal = %d, want 0", n[p.ID])
	}
}

func TestWorkloadObserved_AuditsStateChangesNotEveryRestart(t *testing.T) {
	r := newRig(t)
	p := controltest.Project(t, r.st, "team", r.clock.Now())
	e, err := r.svc.CreateEnvironment(r.ctx, call("req_1", http.StatusAccepted), apiv1.EnvironmentCreate{
		ProjectID: p.ID, Name: "api", Workload: &apiv1.WorkloadSpec{Image: "demo/api:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	markReady(t, r, e.ID)
	code := 137
	for i, o := range []control.Observed{
		{State: apiv1.WorkloadRunning, RestartCount: 1, ExitCode: &code, Message: ""},
		{State: apiv1.WorkloadRunning, RestartCount: 2, ExitCode: &code},
		{State: apiv1.WorkloadCrashLooping, RestartCount: 3, ExitCode: &code, Message: "killed by the kernel's OOM killer"},
	} {
		if err := r.svc.WorkloadObserved(r.ctx, "rec_"+string(rune('a'+i)), e.ID, o); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := r.st.GetEnvironment(r.ctx, e.ID)
	if got.Workload.State != apiv1.WorkloadCrashLooping || got.Workload.RestartCount != 3 || got.StateMessage != "killed by the kernel's OOM killer" ||
		got.Generation != e.Generation {
		t.Fatalf("environment = state %s, restarts %d, message %q, generation %d; want crash_looping, 3, the OOM message, generation %d",
			got.Workload.State, got.Workload.RestartCount, got.StateMessage, got.Generation, e.Generation)
	}
	var outcomes []string
	for _, ev := range auditOf(t, r, e.ID, "environment.workload") {
		outcomes = append(outcomes, ev.Outcome)
	}
	if strings.Join(outcomes, ",") != "success,failure" {
		t.Fatalf("environment.workload events = %v, want success (running) then failure (crash_looping): none for a restart within a state", outcomes)
	}
}

// markReady takes environment id through the reconciler's transitions to
// ready, as a pass would.
func markReady(t *testing.T, r *rig, id string) {
	t.Helper()
	if failed, err := r.svc.Allocate(r.ctx, "rec_alloc", id); err != nil || failed != "" {
		t.Fatalf("Allocate: %q %v", failed, err)
	}
	e, err := r.st.GetEnvironment(r.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Enforced(r.ctx, "rec_ready", id, control.Applied{Generation: e.Generation, Rules: e.Enforcement.Generation}); err != nil {
		t.Fatal(err)
	}
}

// auditOf lists the events of action about environment id.
func auditOf(t *testing.T, r *rig, id, action string) []apiv1.AuditEvent {
	t.Helper()
	evs, _, err := r.st.ListAudit(r.ctx, store.AuditQuery{ResourceID: id, Action: action, Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
