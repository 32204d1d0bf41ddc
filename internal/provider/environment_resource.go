package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/planmodifiers"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ resource.Resource                = &EnvironmentResource{}
	_ resource.ResourceWithConfigure   = &EnvironmentResource{}
	_ resource.ResourceWithImportState = &EnvironmentResource{}
	_ resource.ResourceWithModifyPlan  = &EnvironmentResource{}
)

// NewEnvironmentResource returns the isolation_environment resource.
func NewEnvironmentResource() resource.Resource { return &EnvironmentResource{} }

// EnvironmentResource manages an environment through its asynchronous
// lifecycle: every operation returns only once the server has finished it.
type EnvironmentResource struct {
	client *providerClient
}

// environmentModel holds the attributes every environment schema has, in
// the resource and both data sources, so one fromAPI fills them all.
type environmentModel struct {
	ID           types.String `tfsdk:"id"`
	ProjectID    types.String `tfsdk:"project_id"`
	Name         types.String `tfsdk:"name"`
	Description  types.String `tfsdk:"description"`
	Labels       types.Map    `tfsdk:"labels"`
	Resources    types.Object `tfsdk:"resources"`
	TTLSeconds   types.Int64  `tfsdk:"ttl_seconds"`
	State        types.String `tfsdk:"state"`
	StateMessage types.String `tfsdk:"state_message"`
	Address      types.String `tfsdk:"address"`
	Enforced     types.Bool   `tfsdk:"enforced"`
	Driver       types.String `tfsdk:"driver"`
	Runtime      types.String `tfsdk:"runtime"`
	Namespace    types.String `tfsdk:"namespace"`
	ExpiresAt    types.String `tfsdk:"expires_at"`
	CreatedAt    types.String `tfsdk:"created_at"`
	// Workload is the spec, as configured; WorkloadState and
	// WorkloadStatus are what the runtime observes, which changes on its
	// own (a crash, a restart) and so is never planned as a known value.
	Workload       types.Object `tfsdk:"workload"`
	WorkloadState  types.String `tfsdk:"workload_state"`
	WorkloadStatus types.Object `tfsdk:"workload_status"`
}

// environmentResourceModel is the resource's state: the environment and
// the operation timeouts.
type environmentResourceModel struct {
	environmentModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

// resourcesModel is the resources object.
type resourcesModel struct {
	CPUMillis    types.Int64 `tfsdk:"cpu_millis"`
	MemoryMB     types.Int64 `tfsdk:"memory_mb"`
	DiskGB       types.Int64 `tfsdk:"disk_gb"`
	MaxProcesses types.Int64 `tfsdk:"max_processes"`
}

// Default timeouts, when the configuration has no timeouts block.
const (
	defaultEnvironmentCreateTimeout = 20 * time.Minute
	defaultEnvironmentUpdateTimeout = 20 * time.Minute
	defaultEnvironmentDeleteTimeout = 20 * time.Minute
)

func (r *EnvironmentResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_environment"
}

func (r *EnvironmentResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Version: 0,
		MarkdownDescription: "An isolated developer environment, optionally running a `workload` (a command in an OCI container). " +
			"Every environment starts isolated, all ingress and egress " +
			"denied; `isolation_policy` resources allow traffic. Creating one returns once the environment is `ready`; " +
			"if it fails, the apply fails with the server's message and the environment stays in the state as tainted, " +
			"so the next apply replaces it. Destroying one returns once it is gone. `driver` and `runtime` say what is real: " +
			"on a server running the `simulate` driver nothing is isolated and no workload runs.",
		Attributes: map[string]schema.Attribute{
			"id":         idAttribute("Environment ID, assigned by the server."),
			"project_id": projectIDAttribute("ID of the project the environment belongs to. Changing it replaces the environment."),
			"name": nameAttribute("Environment name: a DNS label (1-63 lowercase letters, digits or `-`, starting and ending " +
				"with a letter or digit), unique within the project. Can be changed in place."),
			"description": descriptionAttribute("Free-text description, up to 1024 characters. Defaults to `\"\"`."),
			"labels":      labelsAttribute("environment, which policies select it by"),
			"resources": schema.SingleNestedAttribute{
				MarkdownDescription: "Compute allowances, enforced on the workload by the `runc` runtime. Each one left out takes the server default " +
					"on create and keeps its current value afterwards. Changed in place: `cpu_millis`, `memory_mb` and `max_processes` " +
					"apply to a running workload without a restart, as does a growing `disk_gb`; a shrinking `disk_gb` restarts the workload " +
					"(the plan warns).",
				Optional:      true,
				Computed:      true,
				PlanModifiers: []planmodifier.Object{planmodifiers.ObjectUseStateWhenConfigNull()},
				Attributes: map[string]schema.Attribute{
					"cpu_millis": resourceFieldAttribute("cpu_millis", "CPU in thousandths of a core", apiv1.MinCPUMillis, apiv1.MaxCPUMillis, apiv1.DefaultCPUMillis),
					"memory_mb":  resourceFieldAttribute("memory_mb", "Memory in MiB", apiv1.MinMemoryMB, apiv1.MaxMemoryMB, apiv1.DefaultMemoryMB),
					"disk_gb": resourceFieldAttribute("disk_gb", "Disk in GiB, the size of the workload's writable layer and home volume together",
						apiv1.MinDiskGB, apiv1.MaxDiskGB, apiv1.DefaultDiskGB),
					"max_processes": resourceFieldAttribute("max_processes", "Processes and threads the workload may have at once (its pids limit)",
						apiv1.MinMaxProcesses, apiv1.MaxMaxProcesses, apiv1.DefaultMaxProcesses),
				},
			},
			"ttl_seconds": schema.Int64Attribute{
				MarkdownDescription: fmt.Sprintf("Time to live in seconds (1 to %d). The server tears the environment down when it expires; "+
					"the next plan then proposes to create it again, saying it expired. Changing it restarts the TTL from the time of the change, "+
					"in place (`isolationd env extend ENV DURATION` does the same from a shell); removing it removes the TTL.", apiv1.MaxTTLSeconds),
				Optional:   true,
				Validators: []validator.Int64{validators.TTLSeconds()},
			},
			"state": schema.StringAttribute{
				MarkdownDescription: "Lifecycle state: `ready` after a successful apply; `failed` when the server could not provision it.",
				Computed:            true,
			},
			"state_message": schema.StringAttribute{
				MarkdownDescription: "The server's explanation of the state, such as why provisioning failed.",
				Computed:            true,
			},
			"address": computedOnceAttribute("The environment's IP address, assigned when it is provisioned."),
			"enforced": schema.BoolAttribute{
				MarkdownDescription: "Whether the enforcement driver has applied the environment's current network rules.",
				Computed:            true,
			},
			// Computed without UseStateForUnknown: isolationd restarted
			// with another driver or runtime changes them on its own.
			"driver":          schema.StringAttribute{MarkdownDescription: descDriver, Computed: true},
			"runtime":         schema.StringAttribute{MarkdownDescription: descRuntime, Computed: true},
			"namespace":       schema.StringAttribute{MarkdownDescription: descNamespace, Computed: true},
			"workload":        workloadAttribute(),
			"workload_state":  schema.StringAttribute{MarkdownDescription: descWorkloadState, Computed: true},
			"workload_status": workloadStatusAttribute(),
			"expires_at": schema.StringAttribute{
				MarkdownDescription: "When the TTL expires (RFC 3339), or null without a TTL.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{planmodifiers.StringUseStateUnlessChanged(path.Root("ttl_seconds"))},
			},
			"created_at": createdAtAttribute("environment"),
		},
		Blocks: timeoutsBlock(ctx),
	}
}

func (r *EnvironmentResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan refuses, at plan time, a workload on a server that runs
// none, and warns, in the plan, about an update that restarts the
// environment's workload or stops it; the update is in place all the same
// (same id, same address).
func (r *EnvironmentResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return // destroying
	}
	var plan, state environmentResourceModel
	if !readInto(ctx, req.Plan, &plan, &resp.Diagnostics) {
		return
	}
	if r.client != nil && r.client.identity.Server.Runtime == apiv1.RuntimeNone && !plan.Workload.IsNull() {
		resp.Diagnostics.AddAttributeError(path.Root("workload"), "Invalid workload", fmt.Sprintf(
			"The isolationd at %s runs no workloads (isolationd serve --runtime none): remove the workload, or run the server with --runtime %s.",
			r.client.Endpoint(), apiv1.RuntimeRunc))
		return
	}
	// Creating restarts nothing.
	if req.State.Raw.IsNull() || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	if summary, detail := workloadChangeWarning(ctx, plan.environmentModel, state.environmentModel, &resp.Diagnostics); summary != "" {
		resp.Diagnostics.AddWarning(summary, detail)
	}
}

func (r *EnvironmentResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan environmentResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.Plan, &plan) {
		return
	}
	ctx, cancel := within(ctx, plan.Timeouts.Create, defaultEnvironmentCreateTimeout, &resp.Diagnostics)
	defer cancel()
	body := plan.toCreate(ctx, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	envs := r.client.Environments()
	env := createOrRecover(ctx, r.client.Client, &resp.Diagnostics, "environment", body.Name,
		func(ctx context.Context) (*apiv1.Environment, error) { return envs.Create(ctx, body) }, envs.Get)
	if env == nil {
		return
	}
	// Saved before waiting: an environment that then fails or times out
	// stays in the state, tainted, and is never orphaned.
	r.save(ctx, &plan, env, &resp.State, resp.Private, &resp.Diagnostics)
	if err := r.waitReady(ctx, &plan, env.ID, &resp.State, resp.Private, &resp.Diagnostics); err != nil {
		resp.Diagnostics.AddError("Unable to create environment",
			fmt.Sprintf("Environment %s (%s) did not become ready: %s\n\n"+
				"It is kept in the state as tainted, so the next apply replaces it.", body.Name, env.ID, err))
	}
}

func (r *EnvironmentResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state environmentResourceModel
	// With settings unknown until apply, the state stays as it is.
	if r.client == nil || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	env, err := r.client.Environments().Get(ctx, state.ID.ValueString())
	if at, ttl, ok := expiredEnvironment(env, err); ok {
		addExpiredWarning(&resp.Diagnostics, state.ID.ValueString(), at, ttl)
		resp.State.RemoveResource(ctx)
		return
	}
	// One on its way out (deleted or expired outside Terraform) is as good as gone.
	if readFailed(ctx, resp, r.client, "environment", state.ID.ValueString(), state.ProjectID.ValueString(), err, err == nil && apiv1.StateIsLeaving(env.State)) {
		return
	}
	r.save(ctx, &state, env, &resp.State, resp.Private, &resp.Diagnostics)
}

func (r *EnvironmentResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state environmentResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.Plan, &plan) || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	ctx, cancel := within(ctx, plan.Timeouts.Update, defaultEnvironmentUpdateTimeout, &resp.Diagnostics)
	defer cancel()
	patch := plan.toPatch(ctx, state.environmentModel, &resp.Diagnostics)
	etag := privateETagOf(ctx, req.Private, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	id := state.ID.ValueString()
	env, sent := patchOrGet(ctx, &resp.Diagnostics, "environment", id, patch, etag, r.client.Environments().Update, r.client.Environments().Get)
	if env == nil {
		return
	}
	r.save(ctx, &plan, env, &resp.State, resp.Private, &resp.Diagnostics)
	if !sent {
		return // only timeouts changed: nothing to wait for
	}
	if err := r.waitReady(ctx, &plan, id, &resp.State, resp.Private, &resp.Diagnostics); err != nil {
		resp.Diagnostics.AddError("Unable to update environment",
			fmt.Sprintf("Environment %s did not become ready after the update: %s", id, err))
	}
}

func (r *EnvironmentResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state environmentResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.State, &state) {
		return
	}
	ctx, cancel := within(ctx, state.Timeouts.Delete, defaultEnvironmentDeleteTimeout, &resp.Diagnostics)
	defer cancel()
	if resp.Diagnostics.HasError() {
		return
	}
	id := state.ID.ValueString()

	// Unconditional, unlike Update, as for every resource: destroying
	// means "whatever it is now", and `terraform destroy -refresh=false`
	// must not fail on a stale ETag.
	err := r.client.Environments().Delete(ctx, id, "")
	if client.IsConflict(err) && r.alreadyLeaving(ctx, id) {
		// Deleting already: a retried DELETE whose first answer was lost,
		// or someone else's delete. Either way, wait for it to be gone.
		err = nil
	}
	if client.IsGone(err) {
		return
	}
	if err != nil {
		addAPIError(&resp.Diagnostics, "delete", "environment", id, err)
		return
	}
	if err := r.client.Environments().WaitDeleted(ctx, id); err != nil {
		resp.Diagnostics.AddError("Unable to delete environment",
			fmt.Sprintf("Environment %s was not deleted: %s", id, err))
	}
}

// ImportState takes the environment's id or PROJECT_NAME/ENVIRONMENT_NAME.
func (r *EnvironmentResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	importByName(ctx, r.client, "environment", req, resp, r.client.Environments().Get, r.client.Environments().List,
		func(o *apiv1.Environment) string { return o.Name }, func(o *apiv1.Environment) string { return o.ID })
}

// fromAPI sets the model to the environment as the server returned it.
func (m *environmentModel) fromAPI(env *apiv1.Environment) {
	m.ID = types.StringValue(env.ID)
	m.ProjectID = types.StringValue(env.ProjectID)
	m.Name = types.StringValue(env.Name)
	m.Description = types.StringValue(env.Description)
	m.Labels = labelsValue(env.Labels)
	m.Resources = types.ObjectValueMust(resourcesAttrTypes, map[string]attr.Value{
		"cpu_millis":    types.Int64Value(env.Resources.CPUMillis),
		"memory_mb":     types.Int64Value(env.Resources.MemoryMB),
		"disk_gb":       types.Int64Value(env.Resources.DiskGB),
		"max_processes": types.Int64Value(env.Resources.MaxProcesses),
	})
	m.TTLSeconds = types.Int64PointerValue(env.TTLSeconds)
	m.State = types.StringValue(env.State)
	m.StateMessage = types.StringValue(env.StateMessage)
	m.Address = stringOrNull(env.Enforcement.Address)
	m.Enforced = types.BoolValue(env.Enforcement.Enforced)
	m.Driver = stringOrNull(env.Enforcement.Driver)
	m.Runtime = stringOrNull(env.Enforcement.Runtime)
	m.Namespace = stringOrNull(env.Enforcement.Namespace)
	m.ExpiresAt = timeValue(env.ExpiresAt)
	m.CreatedAt = timeValue(&env.CreatedAt)
	m.Workload, m.WorkloadState, m.WorkloadStatus = workloadValues(env.Workload)
}

// toCreate is the POST of the planned environment; resources left out
// take the server's defaults.
func (m environmentModel) toCreate(ctx context.Context, diags *diag.Diagnostics) apiv1.EnvironmentCreate {
	return apiv1.EnvironmentCreate{
		ProjectID:   m.ProjectID.ValueString(),
		Name:        m.Name.ValueString(),
		Description: m.Description.ValueString(),
		Labels:      labelsFromValue(ctx, m.Labels, diags),
		Resources:   resourcesPatch(ctx, m.Resources, types.ObjectNull(resourcesAttrTypes), diags),
		TTLSeconds:  m.TTLSeconds.ValueInt64Pointer(),
		Workload:    workloadSpec(ctx, m.Workload, diags),
	}
}

// toPatch is the PATCH of what the plan (m) changes from state; it is
// empty when nothing the API holds changes (only timeouts, say).
func (m environmentModel) toPatch(ctx context.Context, state environmentModel, diags *diag.Diagnostics) apiv1.EnvironmentPatch {
	return apiv1.EnvironmentPatch{
		Name:        patched(m.Name, state.Name, m.Name.ValueString()),
		Description: patched(m.Description, state.Description, m.Description.ValueString()),
		Labels:      patched(m.Labels, state.Labels, labelsFromValue(ctx, m.Labels, diags)),
		Resources:   resourcesPatch(ctx, m.Resources, state.Resources, diags),
		// A TTL removed from the plan is null, and 0 removes it.
		TTLSeconds: patched(m.TTLSeconds, state.TTLSeconds, m.TTLSeconds.ValueInt64()),
		Workload:   workloadPatch(ctx, m.Workload, state.Workload, diags),
	}
}

// resourcesAttrTypes is the object type of resources.
var resourcesAttrTypes = map[string]attr.Type{
	"cpu_millis":    types.Int64Type,
	"memory_mb":     types.Int64Type,
	"disk_gb":       types.Int64Type,
	"max_processes": types.Int64Type,
}

// resourcesPatch returns the resources fields the plan sets to a known
// value other than the state's, or nil when there are none: on create
// (state null) the server defaults the rest, on update it keeps them.
func resourcesPatch(ctx context.Context, plan, state types.Object, diags *diag.Diagnostics) *apiv1.ResourcesSpec {
	if plan.IsNull() || plan.IsUnknown() {
		return nil
	}
	var p, s resourcesModel
	diags.Append(plan.As(ctx, &p, objectAsOptions)...)
	if !state.IsNull() && !state.IsUnknown() {
		diags.Append(state.As(ctx, &s, objectAsOptions)...)
	}
	spec := &apiv1.ResourcesSpec{
		CPUMillis:    patched(p.CPUMillis, s.CPUMillis, p.CPUMillis.ValueInt64()),
		MemoryMB:     patched(p.MemoryMB, s.MemoryMB, p.MemoryMB.ValueInt64()),
		DiskGB:       patched(p.DiskGB, s.DiskGB, p.DiskGB.ValueInt64()),
		MaxProcesses: patched(p.MaxProcesses, s.MaxProcesses, p.MaxProcesses.ValueInt64()),
	}
	if *spec == (apiv1.ResourcesSpec{}) {
		return nil
	}
	return spec
}

func resourceFieldAttribute(name, what string, lo, hi, def int64) schema.Int64Attribute {
	return schema.Int64Attribute{
		MarkdownDescription: fmt.Sprintf("%s, %d to %d. The server default is %d.", what, lo, hi, def),
		Optional:            true,
		Computed:            true,
		Validators:          []validator.Int64{validators.ResourceField(name)},
		PlanModifiers:       []planmodifier.Int64{planmodifiers.Int64UseStateWhenConfigNull()},
	}
}

// save writes env into the state and its ETag into private state.
func (r *EnvironmentResource) save(ctx context.Context, m *environmentResourceModel, env *apiv1.Environment,
	state *tfsdk.State, private privateStateWriter, diags *diag.Diagnostics) {
	m.fromAPI(env)
	saveWithETag(ctx, state, private, m, env.ETag, diags)
}

// waitReady waits for the environment to be ready after a create or an
// update, saving what it became even when that is not ready.
func (r *EnvironmentResource) waitReady(ctx context.Context, m *environmentResourceModel, id string,
	state *tfsdk.State, private privateStateWriter, diags *diag.Diagnostics) error {
	ready, err := r.client.Environments().WaitFor(ctx, id, apiv1.StateReady)
	if ready != nil {
		r.save(ctx, m, ready, state, private, diags)
	}
	return err
}

// expiredEnvironment reports whether a GET's answer shows the
// environment gone because its TTL expired, and when and with which TTL:
// a 410 saying so once it is torn down, or the environment still there
// in state expired.
func expiredEnvironment(env *apiv1.Environment, err error) (at time.Time, ttlSeconds int64, ok bool) {
	if err != nil {
		return client.Expiry(err)
	}
	if env.State != apiv1.StateExpired || env.ExpiresAt == nil {
		return time.Time{}, 0, false
	}
	if env.TTLSeconds != nil {
		ttlSeconds = *env.TTLSeconds
	}
	return *env.ExpiresAt, ttlSeconds, true
}

// addExpiredWarning is Read's answer to an environment its TTL removed:
// unlike a deletion outside Terraform, the warning says it expired, so
// that the create the next plan proposes has its reason.
func addExpiredWarning(diags *diag.Diagnostics, id string, at time.Time, ttlSeconds int64) {
	diags.AddWarning("The environment expired",
		fmt.Sprintf("Environment %s expired at %s (ttl_seconds %d), and isolationd tore it down. It is removed from the state, "+
			"and the next plan creates it again because it expired, with a new id and address. To keep an environment longer, "+
			"raise ttl_seconds before it expires: a change restarts the TTL from the time of the change.",
			id, at.UTC().Format(time.RFC3339), ttlSeconds))
}

// alreadyLeaving reports whether the environment is gone or on its way out.
func (r *EnvironmentResource) alreadyLeaving(ctx context.Context, id string) bool {
	env, err := r.client.Environments().Get(ctx, id)
	return client.IsGone(err) || err == nil && apiv1.StateIsLeaving(env.State)
}
