package validators

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/workloadspec"
)

var workloadPath = path.Root("workload")

// workloadObject is a workload object with image and restart set and the
// attributes of set (a list of strings, a map of strings or a string) on top.
func workloadObject(set map[string]attr.Value) types.Object {
	attrs := map[string]attr.Value{
		workloadspec.AttrImage:      types.StringValue("busybox"),
		workloadspec.AttrCommand:    types.ListNull(types.StringType),
		workloadspec.AttrArgs:       types.ListNull(types.StringType),
		workloadspec.AttrEnv:        types.MapNull(types.StringType),
		workloadspec.AttrWorkingDir: types.StringNull(),
		workloadspec.AttrRestart:    types.StringValue(apiv1.RestartAlways),
		workloadspec.AttrPorts:      types.ListNull(workloadspec.PortType),
	}
	for k, v := range set {
		attrs[k] = v
	}
	return types.ObjectValueMust(workloadspec.Type.AttrTypes, attrs)
}

func stringList(items ...attr.Value) types.List { return types.ListValueMust(types.StringType, items) }

func TestWorkload_ReportsEachErrorOnTheAttributeItNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  map[string]attr.Value
		want []finding
	}{
		{"valid", map[string]attr.Value{
			workloadspec.AttrCommand:    stringList(types.StringValue("/bin/sh"), types.StringValue("-c")),
			workloadspec.AttrEnv:        types.MapValueMust(types.StringType, map[string]attr.Value{"GREETING": types.StringValue("hi")}),
			workloadspec.AttrWorkingDir: types.StringValue("/home"),
		}, nil},
		{"relative working_dir", map[string]attr.Value{workloadspec.AttrWorkingDir: types.StringValue("home")}, []finding{{
			"workload.working_dir", `workload.working_dir must be an absolute path, got "home".`,
		}}},
		{"bad env name", map[string]attr.Value{
			workloadspec.AttrEnv: types.MapValueMust(types.StringType, map[string]attr.Value{"1X": types.StringValue("y")}),
		}, []finding{{
			`workload.env["1X"]`, `workload.env["1X"] must be an environment variable name: a letter or '_', then letters, digits or '_', got "y".`,
		}}},
		{"empty program name", map[string]attr.Value{workloadspec.AttrCommand: stringList(types.StringValue(""))}, []finding{{
			"workload.command[0]", `workload.command[0] must name the program to run, got "".`,
		}}},
		{"NUL in an argument", map[string]attr.Value{workloadspec.AttrArgs: stringList(types.StringValue("a\x00b"))}, []finding{{
			"workload.args[0]", `workload.args[0] must not contain a NUL byte, got "a\x00b".`,
		}}},
		// The image and the restart policy have validators of their own.
		{"image and restart left to their own validators", map[string]attr.Value{
			workloadspec.AttrImage:   types.StringValue("Not A Reference"),
			workloadspec.AttrRestart: types.StringValue("sometimes"),
		}, nil},
		{"an unknown part is checked once known", map[string]attr.Value{
			workloadspec.AttrCommand:    stringList(types.StringUnknown()),
			workloadspec.AttrWorkingDir: types.StringValue("relative"),
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := &validator.ObjectResponse{}
			Workload().ValidateObject(context.Background(), validator.ObjectRequest{Path: workloadPath, ConfigValue: workloadObject(tc.set)}, resp)
			if diff := cmp.Diff(tc.want, diagFindings(resp.Diagnostics)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestWorkload_ReportsTheLimitsOnTheWholeWorkload(t *testing.T) {
	t.Parallel()
	args := make([]attr.Value, apiv1.MaxWorkloadArgs+1)
	for i := range args {
		args[i] = types.StringValue("x")
	}
	resp := &validator.ObjectResponse{}
	Workload().ValidateObject(context.Background(), validator.ObjectRequest{
		Path: workloadPath, ConfigValue: workloadObject(map[string]attr.Value{workloadspec.AttrArgs: stringList(args...)}),
	}, resp)
	got := diagFindings(resp.Diagnostics)
	if len(got) != 1 || got[0].Path != "workload.command" || !strings.Contains(got[0].Detail, "past the limit of 256 entries") {
		t.Errorf("findings = %v, want the limit on command and args together", got)
	}
}

func TestImageRefAndRestartPolicy_UseTheAPIRules(t *testing.T) {
	t.Parallel()
	image := workloadPath.AtName("image")
	for _, tc := range []struct {
		value string
		want  []finding
	}{
		{"busybox", nil},
		{"registry.example.com:5000/team/dev:1.4@sha256:" + strings.Repeat("a", 64), nil},
		{"Team/Dev", []finding{{"workload.image", `workload.image must be an image reference: a local image name or [registry/]repository[:tag][@sha256:digest], ` +
			`lowercase, such as busybox, team/dev:1.4 or registry.example.com/team/dev:1.4, got "Team/Dev".`}}},
		{"", []finding{{"workload.image", `workload.image is required, got "".`}}},
	} {
		resp := &validator.StringResponse{}
		ImageRef().ValidateString(context.Background(), validator.StringRequest{Path: image, ConfigValue: types.StringValue(tc.value)}, resp)
		if diff := cmp.Diff(tc.want, diagFindings(resp.Diagnostics)); diff != "" {
			t.Errorf("ImageRef(%q) (-want +got):\n%s", tc.value, diff)
		}
	}
	for _, policy := range apiv1.RestartPolicies {
		resp := &validator.StringResponse{}
		RestartPolicy().ValidateString(context.Background(), validator.StringRequest{Path: workloadPath.AtName("restart"), ConfigValue: types.StringValue(policy)}, resp)
		if resp.Diagnostics.HasError() {
			t.Errorf("RestartPolicy(%q): %v", policy, resp.Diagnostics)
		}
	}
	resp := &validator.StringResponse{}
	RestartPolicy().ValidateString(context.Background(), validator.StringRequest{Path: workloadPath.AtName("restart"), ConfigValue: types.StringValue("sometimes")}, resp)
	if got := diagFindings(resp.Diagnostics); len(got) != 1 || got[0].Path != "workload.restart" {
		t.Errorf("RestartPolicy(sometimes) = %v, want one error on workload.restart", got)
	}
}

func TestNotEmptyListAndString_RejectOnlyTheEmptyValue(t *testing.T) {
	t.Parallel()
	list := func(v types.List) []finding {
		resp := &validator.ListResponse{}
		NotEmptyList("omit command to run the image's entrypoint").ValidateList(context.Background(),
			validator.ListRequest{Path: workloadPath.AtName("command"), ConfigValue: v}, resp)
		return diagFindings(resp.Diagnostics)
	}
	str := func(v types.String) []finding {
		resp := &validator.StringResponse{}
		NotEmptyString("omit working_dir to use the image's").ValidateString(context.Background(),
			validator.StringRequest{Path: workloadPath.AtName("working_dir"), ConfigValue: v}, resp)
		return diagFindings(resp.Diagnostics)
	}
	if got := append(list(types.ListNull(types.StringType)), list(stringList(types.StringValue("sh")))...); got != nil {
		t.Errorf("null or one element: got %v, want no error", got)
	}
	if got := list(stringList()); len(got) != 1 || got[0].Detail != "workload.command must not be empty: omit command to run the image's entrypoint." {
		t.Errorf("empty list: got %v", got)
	}
	if got := append(str(types.StringNull()), str(types.StringValue("/srv"))...); got != nil {
		t.Errorf("null or set: got %v, want no error", got)
	}
	if got := str(types.StringValue("")); len(got) != 1 || got[0].Detail != "workload.working_dir must not be empty: omit working_dir to use the image's." {
		t.Errorf("empty string: got %v", got)
	}
}

func TestResourceField_MaxProcessesUsesTheAPIRange(t *testing.T) {
	t.Parallel()
	p := path.Root("resources").AtName("max_processes")
	for v, want := range map[int64]string{
		16: "", 65536: "", apiv1.DefaultMaxProcesses: "",
		15:    "resources.max_processes must be between 16 and 65536, got 15.",
		65537: "resources.max_processes must be between 16 and 65536, got 65537.",
	} {
		resp := &validator.Int64Response{}
		ResourceField("max_processes").ValidateInt64(context.Background(), validator.Int64Request{Path: p, ConfigValue: types.Int64Value(v)}, resp)
		got := ""
		if f := diagFindings(resp.Diagnostics); len(f) > 0 {
			got = f[0].Detail
		}
		if got != want {
			t.Errorf("max_processes %d: got %q, want %q", v, got, want)
		}
	}
}
