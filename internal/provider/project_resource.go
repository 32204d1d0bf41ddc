package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
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

// projectModel is a project as the resource and the data source both hold
// it; it is isolation_project's state.
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

// projectResourceModel is isolation_project's state: the project, and
// what destroying it may do, which only Terraform holds.
type projectResourceModel struct {
	projectModel
	ForceDestroy types.Bool `tfsdk:"force_destroy"`
}

// forceDestroyTimeout bounds the wait for a project's environments to be
// torn down when force_destroy deletes them.
const forceDestroyTimeout = 10 * time.Minute

func (r *ProjectResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_project"
}

func (r *ProjectResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Version: 0,
		MarkdownDescription: "A project groups environments and the network policies between them. " +
			"A project that still has environments or policies cannot be deleted: destroy them first " +
			"(Terraform does so when they reference the project's `id`), or set `force_destroy`.",
		Attributes: map[string]schema.Attribute{
			"id": idAttribute("Project ID, assigned by the server."),
			"name": nameAttribute("Project name: a DNS label (1-63 lowercase letters, digits or `-`, starting and ending " +
				"with a letter or digit), unique on the server. Can be changed in place."),
			"description": descriptionAttribute("Free-text description, up to 1024 characters. Defaults to `\"\"`."),
			"labels":      labelsAttribute("project"),
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
			"created_at": createdAtAttribute("project"),
			"force_destroy": schema.BoolAttribute{
				MarkdownDescription: "Destroying the project first deletes every policy and environment it still holds, " +
					"those made outside this configuration included, in one change the audit log records as " +
					"`project.delete_contents`, and waits until the environments are torn down (at most 10 minutes). " +
					"Defaults to `false`: the destroy is then refused while the project holds anything, naming what. " +
					"Only Terraform holds it; it must be applied (set in state) before the destroy that relies on it.",
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
			},
		},
	}
}

func (r *ProjectResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (r *ProjectResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan projectResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.Plan, &plan) {
		return
	}
	body := plan.toCreate(ctx, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	projects := r.client.Projects()
	p := createOrRecover(ctx, r.client.Client, &resp.Diagnostics, "project", body.Name,
		func(ctx context.Context) (*apiv1.Project, error) { return projects.Create(ctx, body) }, projects.Get)
	if p == nil {
		return
	}
	r.save(ctx, &plan, p, &resp.State, resp.Private, &resp.Diagnostics)
}

func (r *ProjectResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state projectResourceModel
	// With settings unknown until apply, the state stays as it is.
	if r.client == nil || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	p, err := r.client.Projects().Get(ctx, state.ID.ValueString())
	if readFailed(ctx, resp, r.client, "project", state.ID.ValueString(), state.ID.ValueString(), err, false) {
		return
	}
	// An imported project has no force_destroy yet: the default.
	if state.ForceDestroy.IsNull() {
		state.ForceDestroy = types.BoolValue(false)
	}
	r.save(ctx, &state, p, &resp.State, resp.Private, &resp.Diagnostics)
}

func (r *ProjectResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state projectResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.Plan, &plan) || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	patch := plan.toPatch(ctx, state.projectModel, &resp.Diagnostics)
	etag := privateETagOf(ctx, req.Private, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	p, _ := patchOrGet(ctx, &resp.Diagnostics, "project", state.ID.ValueString(), patch, etag, r.client.Projects().Update, r.client.Projects().Get)
	if p == nil {
		return
	}
	r.save(ctx, &plan, p, &resp.State, resp.Private, &resp.Diagnostics)
}

func (r *ProjectResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state projectResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.State, &state) {
		return
	}
	id := state.ID.ValueString()
	if state.ForceDestroy.ValueBool() && !r.deleteContents(ctx, id, &resp.Diagnostics) {
		return
	}
	// Unconditional, unlike Update, as for every resource: destroying
	// means "whatever it is now", and `terraform destroy -refresh=false`
	// must not fail on a stale ETag.
	err := r.client.Projects().Delete(ctx, id, "")
	switch {
	case err == nil || client.IsNotFound(err):
	case client.IsConflict(err):
		resp.Diagnostics.AddError("Unable to delete project",
			err.Error()+"\n\nDelete them first (within one configuration, Terraform does so by itself when they reference "+
				"this project's id), or set force_destroy = true on the project, apply, and destroy again.")
	default:
		addAPIError(&resp.Diagnostics, "delete", "project", state.ID.ValueString(), err)
	}
}

// deleteContents is force_destroy: the server deletes the project's
// policies and starts deleting its environments in one change, and the
// destroy waits until they are gone, so the project can go after them.
func (r *ProjectResource) deleteContents(ctx context.Context, id string, diags *diag.Diagnostics) bool {
	held, err := r.client.Projects().DeleteContents(ctx, id, "")
	if client.IsNotFound(err) {
		return true
	}
	if err != nil {
		addAPIError(diags, "delete", "project", id, err)
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, forceDestroyTimeout)
	defer cancel()
	for _, e := range held.Environments {
		if err := r.client.Environments().WaitDeleted(ctx, e.ID); err != nil {
			diags.AddError("Unable to delete project",
				fmt.Sprintf("force_destroy deleted the %d policies of project %s and started deleting its %d environments, "+
					"but environment %s (%s) was not gone within %s: %s. Destroy again to finish once it is.",
					len(held.Policies), id, len(held.Environments), e.Name, e.ID, forceDestroyTimeout, err))
			return false
		}
	}
	return true
}

func (r *ProjectResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// fromAPI sets the model to the project as the server returned it.
func (m *projectModel) fromAPI(p *apiv1.Project) {
	m.ID = types.StringValue(p.ID)
	m.Name = types.StringValue(p.Name)
	m.Description = types.StringValue(p.Description)
	m.Labels = labelsValue(p.Labels)
	m.CreatedAt = timeValue(&p.CreatedAt)
	m.EnvironmentQuota = types.Int64Value(p.EnvironmentQuota)
}

// toCreate is the POST of the planned project; a quota left out is the
// server's default.
func (m projectModel) toCreate(ctx context.Context, diags *diag.Diagnostics) apiv1.ProjectCreate {
	return apiv1.ProjectCreate{
		Name:             m.Name.ValueString(),
		Description:      m.Description.ValueString(),
		Labels:           labelsFromValue(ctx, m.Labels, diags),
		EnvironmentQuota: patched(m.EnvironmentQuota, types.Int64Null(), m.EnvironmentQuota.ValueInt64()),
	}
}

// toPatch is the PATCH of what the plan (m) changes from state.
func (m projectModel) toPatch(ctx context.Context, state projectModel, diags *diag.Diagnostics) apiv1.ProjectPatch {
	return apiv1.ProjectPatch{
		Name:             patched(m.Name, state.Name, m.Name.ValueString()),
		Description:      patched(m.Description, state.Description, m.Description.ValueString()),
		Labels:           patched(m.Labels, state.Labels, labelsFromValue(ctx, m.Labels, diags)),
		EnvironmentQuota: patched(m.EnvironmentQuota, state.EnvironmentQuota, m.EnvironmentQuota.ValueInt64()),
	}
}

// save writes the project as the server returned it into the state and
// its ETag into private state, as every resource's save does.
func (r *ProjectResource) save(ctx context.Context, m *projectResourceModel, p *apiv1.Project, state *tfsdk.State, private privateStateWriter, diags *diag.Diagnostics) {
	m.fromAPI(p)
	saveWithETag(ctx, state, private, m, p.ETag, diags)
}
