package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	wsimulate "github.com/isolationhq/terraform-provider-isolation/internal/workload/simulate"
)

// The simulate driver records a workload and says it runs nothing: the
// environment is ready, its workload not_run, and its state_message and
// enforcement.runtime say so.
func TestSimulateAPI_RecordsTheWorkloadAndSaysNothingRuns(t *testing.T) {
	l := startLab(t, labConfig(t, "simulate"))
	e, err := l.c.Environments().Create(l.ctx, apiv1.EnvironmentCreate{
		ProjectID: l.project.ID, Name: "api",
		Workload: &apiv1.WorkloadSpec{Image: "demo/api:1", Command: []string{"httpd", "-f"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	got, err := l.c.Environments().WaitFor(ctx, e.ID, apiv1.StateReady)
	if err != nil {
		t.Fatal(err)
	}
	if got.Workload == nil || got.Workload.State != apiv1.WorkloadNotRun || got.Enforcement.Runtime != apiv1.RuntimeSimulate ||
		got.StateMessage != wsimulate.Message {
		t.Fatalf("environment = %s; want workload not_run, runtime simulate and the message %q", js(got), wsimulate.Message)
	}
	spec, ok := l.srv.Runtime().(*wsimulate.Runtime).Spec(e.ID)
	if !ok || spec.Workload.Image != "demo/api:1" || spec.Hostname != "api" || spec.Resources.MaxProcesses != apiv1.DefaultMaxProcesses {
		t.Fatalf("recorded spec = %+v (%v); want the workload, the environment's name as hostname and default resources", spec, ok)
	}
}
