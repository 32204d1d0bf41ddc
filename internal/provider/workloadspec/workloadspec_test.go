package workloadspec

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestValueAndFromObject_RoundTripTheSpecAsTheAPINormalizesIt(t *testing.T) {
	t.Parallel()
	for name, w := range map[string]apiv1.WorkloadSpec{
		"everything": {
			Image: "registry.example.com/team/dev:1.4", Command: []string{"/bin/sh", "-c"}, Args: []string{"sleep 60"},
			Env: map[string]string{"A": "1", "EMPTY": ""}, WorkingDir: "/home", Restart: apiv1.RestartOnFailure,
		},
		"the image alone": {Image: "busybox", Restart: apiv1.RestartAlways},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, known, diags := FromObject(context.Background(), Value(&w))
			if diags.HasError() || !known {
				t.Fatalf("FromObject: known=%v %v", known, diags)
			}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValue_NoWorkloadIsNullAndEmptyPartsAreNull(t *testing.T) {
	t.Parallel()
	if v := Value(nil); !v.IsNull() {
		t.Errorf("Value(nil) = %s, want null", v)
	}
	// The API leaves empty lists, maps and strings out: they read back as
	// null, as a configuration that leaves them out plans them.
	v := Value(&apiv1.WorkloadSpec{Image: "busybox", Command: []string{}, Env: map[string]string{}})
	attrs := v.Attributes()
	for _, name := range []string{AttrCommand, AttrArgs, AttrEnv, AttrWorkingDir} {
		if !attrs[name].IsNull() {
			t.Errorf("%s = %s, want null", name, attrs[name])
		}
	}
	if got := attrs[AttrRestart]; !got.Equal(types.StringValue(apiv1.RestartAlways)) {
		t.Errorf("restart = %s, want the default %q", got, apiv1.RestartAlways)
	}
}

func TestFromObject_AnUnknownPartIsNotKnown(t *testing.T) {
	t.Parallel()
	base := Value(&apiv1.WorkloadSpec{Image: "busybox", Command: []string{"sh"}, Env: map[string]string{"A": "1"}}).Attributes()
	with := func(name string, v attr.Value) types.Object {
		attrs := map[string]attr.Value{}
		for k, a := range base {
			attrs[k] = a
		}
		attrs[name] = v
		return types.ObjectValueMust(Type.AttrTypes, attrs)
	}
	for name, o := range map[string]types.Object{
		"the object":         types.ObjectUnknown(Type.AttrTypes),
		"the image":          with(AttrImage, types.StringUnknown()),
		"the command":        with(AttrCommand, types.ListUnknown(types.StringType)),
		"an argument":        with(AttrArgs, types.ListValueMust(types.StringType, []attr.Value{types.StringUnknown()})),
		"the env":            with(AttrEnv, types.MapUnknown(types.StringType)),
		"an env value":       with(AttrEnv, types.MapValueMust(types.StringType, map[string]attr.Value{"A": types.StringUnknown()})),
		"the working_dir":    with(AttrWorkingDir, types.StringUnknown()),
		"the restart policy": with(AttrRestart, types.StringUnknown()),
	} {
		if _, known, diags := FromObject(context.Background(), o); known || diags.HasError() {
			t.Errorf("%s unknown: known=%v %v, want not known and no error", name, known, diags)
		}
	}
}

func TestChanged_NamesWhatDiffersAsTheAPICompares(t *testing.T) {
	t.Parallel()
	a := apiv1.WorkloadSpec{Image: "busybox", Command: []string{"sh"}, Env: map[string]string{"A": "1"}}
	if got := Changed(a, a); got != nil {
		t.Errorf("Changed(a, a) = %v, want nothing", got)
	}
	// The default restart policy and empty collections are no change.
	b := a
	b.Restart, b.Args = apiv1.RestartAlways, []string{}
	if got := Changed(a, b); got != nil {
		t.Errorf("normalized the same: Changed = %v, want nothing", got)
	}
	c := apiv1.WorkloadSpec{Image: "busybox:2", Command: []string{"sh", "-c"}, Env: map[string]string{"A": "2"}, WorkingDir: "/srv", Restart: apiv1.RestartNever, Args: []string{"x"},
		Ports: []apiv1.WorkloadPort{{Name: "http", Port: 80}}}
	want := []string{AttrImage, AttrCommand, AttrArgs, AttrEnv, AttrWorkingDir, AttrRestart, AttrPorts}
	if diff := cmp.Diff(want, Changed(a, c)); diff != "" {
		t.Errorf("Changed (-want +got):\n%s", diff)
	}
}

func TestValue_NamedPortsRoundTripWithTheDefaultProtocol(t *testing.T) {
	t.Parallel()
	w := apiv1.WorkloadSpec{Image: "busybox", Ports: []apiv1.WorkloadPort{{Name: "http", Port: 80}, {Name: "sig", Port: 9, Protocol: "sctp"}}}
	got, known, diags := FromObject(context.Background(), Value(&w))
	if !known || diags.HasError() {
		t.Fatalf("a known workload was not read: %v", diags)
	}
	if diff := cmp.Diff(w.Normalize().Ports, got.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
}

func TestStatusValue_WhatIsNotObservedYetIsNull(t *testing.T) {
	t.Parallel()
	if v := StatusValue(nil); !v.IsNull() {
		t.Errorf("StatusValue(nil) = %s, want null", v)
	}
	notRun := StatusValue(&apiv1.Workload{State: apiv1.WorkloadNotRun}).Attributes()
	for _, name := range []string{"exit_code", "started_at", "image_digest"} {
		if !notRun[name].IsNull() {
			t.Errorf("not run: %s = %s, want null", name, notRun[name])
		}
	}
	if !notRun["restart_count"].Equal(types.Int64Value(0)) {
		t.Errorf("not run: restart_count = %s, want 0", notRun["restart_count"])
	}
	exit, started := 137, time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	killed := StatusValue(&apiv1.Workload{State: apiv1.WorkloadCrashLooping, ExitCode: &exit, RestartCount: 4, StartedAt: &started, ImageDigest: "sha256:abc"}).Attributes()
	for name, want := range map[string]attr.Value{
		"exit_code": types.Int64Value(137), "restart_count": types.Int64Value(4),
		"started_at": types.StringValue("2026-01-02T02:04:05Z"), "image_digest": types.StringValue("sha256:abc"),
	} {
		if !killed[name].Equal(want) {
			t.Errorf("killed: %s = %s, want %s", name, killed[name], want)
		}
	}
}
