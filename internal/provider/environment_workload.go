package provider

import (
	"context"
	"fmt"
	"strings"

	dschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/workloadspec"
)

// An environment's workload and what says what is real about it (driver,
// runtime, namespace), in the resource's and the data sources' schemas.
// The spec (workload) is configuration; what the runtime observes
// (workload_state, workload_status) changes on its own, when the workload
// crashes or restarts, so it is Computed without any plan modifier: a
// refresh records it, a plan never holds it as a known value that an
// apply could contradict, and it never makes a diff.

// Descriptions shared by the resource and the data sources.
const (
	descDriver = "The enforcement driver of the server that runs the environment: `netns` isolates it in a network namespace " +
		"of its own; `simulate` isolates nothing (it records the rules and answers checks with them)."
	descRuntime = "The workload runtime: `runc` runs the workload in an OCI container inside the environment's namespace, " +
		"with `resources` enforced; `none` runs no workloads; `simulate` records the workload and runs nothing."
	descNamespace     = "The environment's network namespace on the server's host, or null when the driver makes none (`simulate`)."
	descWorkloadState = "What the runtime observes of the workload: `not_run` (recorded, not run: the `simulate` driver, or the " +
		"runtime `none`), `starting`, `running`, `exited` (its command exited and is not restarted) or `crash_looping` " +
		"(it keeps exiting soon after each restart); null without a workload. It changes on its own: " +
		"`terraform plan -refresh-only` shows it, and it never makes a diff."
	descWorkloadStatus = "What the runtime observes of the workload beside its state; null without a workload. " +
		"It changes on its own, like `workload_state`."
	descExitCode     = "The last exit code of the workload's command (128 + the signal when it was killed, 137 for the OOM killer), or null while it has not exited."
	descRestartCount = "How many times the command was restarted by its restart policy."
	descStartedAt    = "When the command last started (RFC 3339), or null when it has not."
	descImageDigest  = "The digest of the image the workload runs (sha256:...), or null before the image is resolved."
)

// workloadAttribute is the resource's workload: Optional, each field
// checked at plan time with the API's own rules.
func workloadAttribute() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		MarkdownDescription: "What the environment runs: a command in an OCI container from `image`, inside the environment's network " +
			"namespace, with `resources` as its limits and a home volume at `/home` that survives restarts and image changes. " +
			"Without `command`, the image's entrypoint and cmd run; with neither, a small init keeps the environment up. " +
			"Changing any of it is an update in place (same id, same address, same home volume) that restarts the workload: " +
			"the plan warns. Removing it stops the workload and removes its home volume. The `simulate` driver records it and runs nothing (`workload_state` " +
			"is `not_run`).",
		Optional:   true,
		Validators: []validator.Object{validators.Workload()},
		Attributes: map[string]schema.Attribute{
			workloadspec.AttrImage: schema.StringAttribute{
				MarkdownDescription: "The image: a local image's name (`isolationd image import`) or a registry reference such as " +
					"`registry.example.com/team/dev:1.4`, optionally with `@sha256:` and its digest. Checked at plan time; whether it " +
					"exists is known at apply time.",
				Required:   true,
				Validators: []validator.String{validators.ImageRef()},
			},
			workloadspec.AttrCommand: schema.ListAttribute{
				MarkdownDescription: "The program and its first arguments, replacing the image's entrypoint and cmd (Kubernetes' `command`). " +
					"Leave it out to run the image's entrypoint.",
				ElementType: types.StringType,
				Optional:    true,
				Validators:  []validator.List{validators.NotEmptyList("omit command to run the image's entrypoint")},
			},
			workloadspec.AttrArgs: schema.ListAttribute{
				MarkdownDescription: "Arguments after `command`, or after the image's entrypoint instead of its cmd (Kubernetes' `args`).",
				ElementType:         types.StringType,
				Optional:            true,
				Validators:          []validator.List{validators.NotEmptyList("omit args to pass none")},
			},
			workloadspec.AttrEnv: schema.MapAttribute{
				MarkdownDescription: "Environment variables, added to the image's.",
				ElementType:         types.StringType,
				Optional:            true,
				Validators:          []validator.Map{validators.NotEmptyMap("omit env to add none")},
			},
			workloadspec.AttrWorkingDir: schema.StringAttribute{
				MarkdownDescription: "The command's working directory, an absolute path; the image's when left out.",
				Optional:            true,
				Validators:          []validator.String{validators.NotEmptyString("omit working_dir to use the image's")},
			},
			workloadspec.AttrRestart: schema.StringAttribute{
				MarkdownDescription: "What happens when the command exits: `always` restarts it, `on-failure` restarts it when its exit " +
					"code is not 0, `never` leaves it exited (the environment stays up). Restarts back off from 100 ms to 10 s. " +
					"Defaults to `always`.",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(apiv1.RestartPolicies[0]),
				Validators: []validator.String{validators.RestartPolicy()},
			},
			workloadspec.AttrPorts: schema.ListNestedAttribute{
				MarkdownDescription: fmt.Sprintf("The ports the workload listens on, by name, as a Kubernetes container's ports (at most %d): "+
					"a policy rule's `port_name` resolves to `port` for the same protocol, in rules whose destination is this environment. "+
					"Changing them re-enforces the policies that name them; the workload restarts, as for any workload change.", apiv1.MaxWorkloadPorts),
				Optional:   true,
				Validators: []validator.List{validators.NotEmptyList("omit ports to declare no named ports")},
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"name": schema.StringAttribute{
							MarkdownDescription: "The port's name (IANA_SVC_NAME): 1-15 lowercase letters, digits or `-`, with a letter, unique in the workload.",
							Required:            true,
						},
						"port": schema.Int64Attribute{
							MarkdownDescription: "The port number, 1-65535.",
							Required:            true,
						},
						"protocol": schema.StringAttribute{
							MarkdownDescription: "`tcp`, `udp` or `sctp`. Defaults to `tcp`.",
							Optional:            true,
							Computed:            true,
							Default:             stringdefault.StaticString(apiv1.ProtocolTCP),
						},
					},
				},
			},
		},
	}
}

// workloadStatusAttribute is the resource's workload_status.
func workloadStatusAttribute() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		MarkdownDescription: descWorkloadStatus,
		Computed:            true,
		Attributes: map[string]schema.Attribute{
			"exit_code":     schema.Int64Attribute{MarkdownDescription: descExitCode, Computed: true},
			"restart_count": schema.Int64Attribute{MarkdownDescription: descRestartCount, Computed: true},
			"started_at":    schema.StringAttribute{MarkdownDescription: descStartedAt, Computed: true},
			"image_digest":  schema.StringAttribute{MarkdownDescription: descImageDigest, Computed: true},
		},
	}
}

// workloadDataSourceAttributes are the data sources' read-only driver,
// runtime, namespace and workload attributes.
func workloadDataSourceAttributes() map[string]dschema.Attribute {
	return map[string]dschema.Attribute{
		"driver":    computedString(descDriver),
		"runtime":   computedString(descRuntime),
		"namespace": computedString(descNamespace),
		"workload": dschema.SingleNestedAttribute{
			MarkdownDescription: "What the environment runs, or null when it runs nothing.",
			Computed:            true,
			Attributes: map[string]dschema.Attribute{
				workloadspec.AttrImage:      computedString("The image: a local image's name or a registry reference."),
				workloadspec.AttrCommand:    computedStringList("The program and its first arguments, or null for the image's entrypoint."),
				workloadspec.AttrArgs:       computedStringList("Arguments after the command."),
				workloadspec.AttrEnv:        computedStringMap("Environment variables, added to the image's."),
				workloadspec.AttrWorkingDir: computedString("The command's working directory, or null for the image's."),
				workloadspec.AttrRestart:    computedString("The restart policy: always, on-failure or never."),
				workloadspec.AttrPorts: computedObjects("The workload's named ports, for policy rules' `port_name`.", map[string]dschema.Attribute{
					"name":     computedString("The port's name."),
					"port":     computedInt64("The port number."),
					"protocol": computedString("`tcp`, `udp` or `sctp`."),
				}),
			},
		},
		"workload_state": computedString(descWorkloadState),
		"workload_status": dschema.SingleNestedAttribute{
			MarkdownDescription: descWorkloadStatus,
			Computed:            true,
			Attributes: map[string]dschema.Attribute{
				"exit_code":     computedInt64(descExitCode),
				"restart_count": computedInt64(descRestartCount),
				"started_at":    computedString(descStartedAt),
				"image_digest":  computedString(descImageDigest),
			},
		},
	}
}

// workloadValues are the workload, workload_state and workload_status of
// an environment as the server returned it; all null without a workload.
func workloadValues(w *apiv1.Workload) (spec types.Object, state types.String, status types.Object) {
	if w == nil {
		return workloadspec.Value(nil), types.StringNull(), workloadspec.StatusValue(nil)
	}
	return workloadspec.Value(&w.WorkloadSpec), stringOrNull(w.State), workloadspec.StatusValue(w)
}

// workloadSpec is the planned workload for the API, nil when there is none.
func workloadSpec(ctx context.Context, plan types.Object, diags *diag.Diagnostics) *apiv1.WorkloadSpec {
	if plan.IsNull() {
		return nil
	}
	w, known, ds := workloadspec.FromObject(ctx, plan)
	if diags.Append(ds...); !known {
		diags.AddError("Unable to read the planned workload",
			"Part of workload is still unknown at apply time. This is a bug in the provider; please report it.")
		return nil
	}
	return &w
}

// workloadPatch is the workload field of a PATCH: absent when the plan
// keeps the workload, null when it removes it, else the whole new spec
// (the API replaces a workload whole).
func workloadPatch(ctx context.Context, plan, state types.Object, diags *diag.Diagnostics) apiv1.Nullable[apiv1.WorkloadSpec] {
	switch {
	case plan.IsUnknown() || plan.Equal(state):
		return apiv1.Nullable[apiv1.WorkloadSpec]{}
	case plan.IsNull():
		return apiv1.Null[apiv1.WorkloadSpec]()
	}
	w := workloadSpec(ctx, plan, diags)
	if w == nil {
		return apiv1.Nullable[apiv1.WorkloadSpec]{}
	}
	return apiv1.Some(*w)
}

// workloadChangeWarning is the plan's warning about an update of an
// environment (from state to plan) that restarts or stops its workload,
// or "" when the update does neither: changing the workload's spec or
// shrinking disk_gb restarts it, removing it stops it, growing disk_gb
// restarts it unless the server may resize a mounted file system, and
// cpu_millis, memory_mb and max_processes apply in place.
func workloadChangeWarning(ctx context.Context, plan, state environmentModel, diags *diag.Diagnostics) (summary, detail string) {
	if state.Workload.IsNull() {
		return "", "" // nothing runs yet, so nothing restarts
	}
	env := fmt.Sprintf("environment %q", state.Name.ValueString())
	note := ""
	if rt := state.Runtime.ValueString(); rt == apiv1.RuntimeSimulate || rt == apiv1.RuntimeNone {
		note = fmt.Sprintf("\n\nThis server's runtime is %s: it records the workload and runs nothing, so nothing restarts there.", rt)
	}
	if plan.Workload.IsNull() {
		return "The workload stops", fmt.Sprintf(
			"Removing workload stops the workload of %s and removes its container, its writable layer and its home volume: "+
				"what it kept in /home is lost. The environment stays, with the same address.%s", env, note)
	}
	planned, known, ds := workloadspec.FromObject(ctx, plan.Workload)
	prior, _, ds2 := workloadspec.FromObject(ctx, state.Workload)
	diags.Append(append(ds, ds2...)...)
	if !known {
		return "The workload may restart", fmt.Sprintf(
			"Part of workload is known only at apply. If it changes, the workload of %s restarts (same address, same home volume).%s", env, note)
	}
	var fields, what []string
	for _, name := range workloadspec.Changed(planned, prior) {
		fields = append(fields, "workload."+name)
	}
	if len(fields) > 0 {
		what = append(what, "changing "+joinAnd(fields))
	}
	from, to, resized := diskResize(ctx, plan.Resources, state.Resources, diags)
	if resized && to < from {
		what = append(what, fmt.Sprintf("shrinking resources.disk_gb from %d to %d", from, to))
	}
	if len(what) == 0 && resized {
		return "The workload may restart", fmt.Sprintf(
			"Growing resources.disk_gb from %d to %d is applied to the running workload of %s where the server may resize a mounted "+
				"file system (CAP_SYS_RESOURCE); otherwise the workload restarts (same address, same home volume).%s", from, to, env, note)
	}
	if len(what) == 0 {
		return "", ""
	}
	change := strings.Join(what, " and ")
	change = strings.ToUpper(change[:1]) + change[1:]
	return "The workload restarts", fmt.Sprintf("%s restarts the workload of %s (same address, same home volume).%s", change, env, note)
}

// diskResize reports a planned disk_gb other than the state's.
func diskResize(ctx context.Context, plan, state types.Object, diags *diag.Diagnostics) (from, to int64, ok bool) {
	if plan.IsNull() || plan.IsUnknown() || state.IsNull() || state.IsUnknown() {
		return 0, 0, false
	}
	var p, s resourcesModel
	diags.Append(plan.As(ctx, &p, objectAsOptions)...)
	diags.Append(state.As(ctx, &s, objectAsOptions)...)
	if p.DiskGB.IsUnknown() || p.DiskGB.IsNull() || s.DiskGB.IsNull() || p.DiskGB.ValueInt64() == s.DiskGB.ValueInt64() {
		return 0, 0, false
	}
	return s.DiskGB.ValueInt64(), p.DiskGB.ValueInt64(), true
}

// joinAnd joins phrases as a sentence lists them: "a", "a and b", "a, b and c".
func joinAnd(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
