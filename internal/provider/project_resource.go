package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ resource.Resource                = &ProjectResource{}
	_ resource.ResourceWithConfigure   = &ProjectResource{}
	_ resource.ResourceWithImportState = &ProjectResource{}
)

// NewProjectResource returns the isolation_project resource.
func NewProjectResource() resource.Resource { return &ProjectResource{} }

// ProjectResource manages a project.
type ProjectResource struct {
	client *providerClient
}

// projectModel is isolation_project's state. The data source shares it.
type projectModel struct {
	ID          types.String `tfsdk:"id"`
	Name        types.String `tfsdk:"name"`
	Description types.String `tfsdk:"description"`
	Labels      types.Map    `tfsdk:"labels"`
	CreatedAt   types.String `tfsdk:"created_at"`
	// EnvironmentQuota is the quota, not its usage: usage changes with
	// every environment, and as a resource attribute it would report a
	// change outside Terraform on every refresh. The data source has it.
	EnvironmentQuota types.Int64 `tfsdk:"environment_quota"`
}

func (m *projectModel) fromAPI(p *apiv1.Project) {
	m.ID = types.StringValue(p.ID)
	m.Name = types.StringValue(p.Name)
	m.Description = types.StringValue(p.Description)
	m.Labels = labelsValue(p.Labels)
	m.CreatedAt = timeValue(&p.CreatedAt)
	m.EnvironmentQuota = types.Int64Value(p.EnvironmentQuota)
}

// knownInt64 is v's value, nil when it is null or unknown.
func knownInt64(v types.Int64) *int64 {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	n := v.ValueInt64()
	return &n
}

func (r *ProjectResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_project"
}

func (r *ProjectResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Version: 0,
		MarkdownDescription: "A project groups environments and the network policies between them. " +
			"A project that still has environments or policies cannot be deleted: destroy them first " +
			"(Terraform does so when they reference the project's `id`).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "Project ID, assigned by the server.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "Project name: a DNS label (1-63 lowercase letters, digits or `-`, starting and ending with a letter or digit), unique on the server. Can be changed in place.",
				Required:            true,
				Validators:          []validator.String{validators.Name()},
			},
			"description": schema.StringAttribute{
				MarkdownDescription: "Free-text description, up to 1024 characters. Defaults to `\"\"`.",
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString(""),
				Validators:          []validator.String{validators.Description()},
			},
			"labels": labelsResourceAttribute("project"),
			"environment_quota": schema.Int64Attribute{
				MarkdownDescription: "The most environments the project may hold, those being deleted included; `0` for no limit. " +
					"Creating one more is refused (409, `limit-exceeded`). Only an admin token may set it, as projects are admin-managed. " +
					"Left out, a new project gets the server's `--default-environment-quota`, and an existing one keeps its quota. " +
					"The `isolation_project` data source reports how many environments the project holds.",
				Optional:      true,
				Computed:      true,
				Validators:    []validator.Int64{validators.EnvironmentQuota()},
				PlanModifiers: []planmodifier.Int64{int64planmodifier.UseStateForUnknown()},
			},
			"created_at": schema.StringAttribute{
				MarkdownDescription: "When the project was created (RFC 3339).",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
	}
}

// labelsResourceAttribute is the labels attribute of every resource:
// Optional and Computed with an empty default, so leaving labels out and
// writing `labels = {}` are the same and neither ever shows a diff.
func labelsResourceAttribute(kind string) schema.MapAttribute {
	return schema.MapAttribute{
		MarkdownDescription: "Labels of the " + kind + ", as Kubernetes writes them: keys are an optional DNS subdomain prefix and `/`, " +
			"then a name of up to 63 letters, digits, `-`, `_` or `.`; values are empty or up to 63 such characters. " +
			fmt.Sprintf("At most %d labels, of at most %d bytes of keys and values together. Defaults to `{}`.", apiv1.MaxLabels, apiv1.MaxLabelBytes),
		ElementType: types.StringType,
		Optional:    true,
		Computed:    true,
		Default:     mapdefault.StaticValue(labelsValue(nil)),
		Validators:  []validator.Map{validators.Labels()},
	}
}

func (r *ProjectResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (r *ProjectResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	var plan projectModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	body := apiv1.ProjectCreate{
		Name:        plan.Name.ValueString(),
		Description: plan.Description.ValueString(),
		Labels:      labelsFromValue(ctx, plan.Labels, &resp.Diagnostics),

		EnvironmentQuota: knownInt64(plan.EnvironmentQuota),
	}
	projects := r.client.Projects()
	p := createOrRecover(ctx, r.client.Client, &resp.Diagnostics, "project", body.Name,
		func(ctx context.Context) (*apiv1.Project, error) { return projects.Create(ctx, body) }, projects.Get)
	if p == nil {
		return
	}
	plan.fromAPI(p)
	saveWithETag(ctx, &resp.State, resp.Private, plan, p.ETag, &resp.Diagnostics)
}

func (r *ProjectResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if r.client == nil {
		// Settings unknown until apply: keep the state as it is.
		return
	}
	var state projectModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	p, err := r.client.Projects().Get(ctx, state.ID.ValueString())
	if readFailed(ctx, resp, r.client, "project", state.ID.ValueString(), state.ID.ValueString(), err, false) {
		return
	}
	state.fromAPI(p)
	saveWithETag(ctx, &resp.State, resp.Private, state, p.ETag, &resp.Diagnostics)
}

func (r *ProjectResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	var plan, state projectModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// Only what changed is sent, so a field nobody touched is never
	// rewritten; If-Match makes the server refuse if anything changed.
	var patch apiv1.ProjectPatch
	patch.Name = changedString(plan.Name, state.Name)
	patch.Description = changedString(plan.Description, state.Description)
	if !plan.EnvironmentQuota.Equal(state.EnvironmentQuota) {
		patch.EnvironmentQuota = knownInt64(plan.EnvironmentQuota)
	}
	if !plan.Labels.Equal(state.Labels) {
		labels := labelsFromValue(ctx, plan.Labels, &resp.Diagnostics)
		patch.Labels = &labels
	}
	etag := privateETagOf(ctx, req.Private, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	p, err := r.client.Projects().Update(ctx, state.ID.ValueString(), patch, etag)
	if err != nil {
		addAPIError(&resp.Diagnostics, "update", "project", state.ID.ValueString(), err)
		return
	}
	plan.fromAPI(p)
	saveWithETag(ctx, &resp.State, resp.Private, plan, p.ETag, &resp.Diagnostics)
}

func (r *ProjectResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	var state projectModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// Unconditional, unlike Update: destroying means "whatever it is now",
	// and `terraform destroy -refresh=false` must not fail on a stale ETag.
	err := r.client.Projects().Delete(ctx, state.ID.ValueString(), "")
	switch {
	case err == nil || client.IsNotFound(err):
	case client.IsConflict(err):
		resp.Diagnostics.AddError("Unable to delete project",
			err.Error()+"\n\nThe project still has environments or policies. Delete them first; within one configuration, "+
				"Terraform does so by itself when they reference this project's id.")
	default:
		addAPIError(&resp.Diagnostics, "delete", "project", state.ID.ValueString(), err)
	}
}

func (r *ProjectResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// changedString returns the planned value when it differs from the state,
// for a PATCH that carries only what changed.
func changedString(plan, state types.String) *string {
	if plan.Equal(state) || plan.IsUnknown() || plan.IsNull() {
		return nil
	}
	v := plan.ValueString()
	return &v
}
