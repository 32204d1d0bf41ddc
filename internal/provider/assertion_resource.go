package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/isolationhq/terraform-provider-isolation/internal/provider/policyrules"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ resource.Resource                     = &AssertionResource{}
	_ resource.ResourceWithConfigure        = &AssertionResource{}
	_ resource.ResourceWithImportState      = &AssertionResource{}
	_ resource.ResourceWithConfigValidators = &AssertionResource{}
)

// NewAssertionResource returns the isolation_assertion resource.
func NewAssertionResource() resource.Resource { return &AssertionResource{} }

// AssertionResource manages an assertion (a policy test) of a project.
type AssertionResource struct {
	client *providerClient
}

// assertionModel is isolation_assertion's state. The API has no PATCH
// for assertions, so every attribute the user sets replaces it.
type assertionModel struct {
	ID          types.String `tfsdk:"id"`
	ProjectID   types.String `tfsdk:"project_id"`
	Name        types.String `tfsdk:"name"`
	Description types.String `tfsdk:"description"`
	From        types.Object `tfsdk:"from"`
	To          types.Object `tfsdk:"to"`
	Protocol    types.String `tfsdk:"protocol"`
	Port        types.Int64  `tfsdk:"port"`
	Expect      types.String `tfsdk:"expect"`
	CreatedAt   types.String `tfsdk:"created_at"`
}

// assertionFrom and assertionTo are the from and to objects.
type assertionFrom struct {
	Environment         types.String `tfsdk:"environment"`
	EnvironmentSelector types.Object `tfsdk:"environment_selector"`
}

type assertionTo struct {
	Environment         types.String `tfsdk:"environment"`
	EnvironmentSelector types.Object `tfsdk:"environment_selector"`
	ProjectSelector     types.Object `tfsdk:"project_selector"`
	CIDR                types.String `tfsdk:"cidr"`
	FQDN                types.String `tfsdk:"fqdn"`
}

var (
	assertionFromType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"environment": types.StringType, "environment_selector": policyrules.SelectorType,
	}}
	assertionToType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"environment": types.StringType, "environment_selector": policyrules.SelectorType, "project_selector": policyrules.SelectorType,
		"cidr": types.StringType, "fqdn": types.StringType,
	}}
)

func (r *AssertionResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_assertion"
}

func (r *AssertionResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	selector := func(description, what, all string) schema.SingleNestedAttribute {
		return schema.SingleNestedAttribute{
			MarkdownDescription: description + " `{}` picks every one.",
			Optional:            true,
			Attributes:          selectorAttributes(what, "to be picked", all),
		}
	}
	description := descriptionAttribute("Free text, up to 1024 characters. Defaults to `\"\"`. Changing it replaces the assertion.")
	description.PlanModifiers = replace
	resp.Schema = schema.Schema{
		Version: 0,
		MarkdownDescription: "An assertion is a test of a project's network policies, as Tailscale's ACL tests are: " +
			"traffic `from` some environments `to` a destination, on a protocol and port, must stay allowed (`expect = \"allow\"`) " +
			"or must stay denied (`expect = \"deny\"`).\n\n" +
			"Every write that changes what is allowed (a policy created, changed or destroyed, an environment created or relabelled, " +
			"a project relabelled) is checked against the assertions of every project it affects before it commits, and refused " +
			"with 422 naming the assertion and the first packet that would change; the write changes nothing. " +
			"An assertion that does not hold when created is refused too, so give it `depends_on` the policies it tests: " +
			"Terraform then creates it after them and destroys it before them.\n\n" +
			"A packet between environments is allowed when the sender's egress and the receiver's ingress both allow it. " +
			"A `from` or `to` that picks no environment holds. The API cannot change an assertion: any change replaces it.",
		Attributes: map[string]schema.Attribute{
			"id":          idAttribute("The assertion's id, made by the server."),
			"project_id":  projectIDAttribute("The project the assertion belongs to: its `from` environments are this project's. Changing it replaces the assertion."),
			"name":        nameAttribute("The assertion's name, a DNS label (1-63 lowercase letters, digits or `-`), unique in the project. Changing it replaces the assertion.", replace...),
			"description": description,
			"from": schema.SingleNestedAttribute{
				MarkdownDescription: "Where the traffic comes from, in the assertion's project: exactly one of `environment` and `environment_selector`.",
				Required:            true,
				PlanModifiers:       []planmodifier.Object{objectplanmodifier.RequiresReplace()},
				Attributes: map[string]schema.Attribute{
					"environment":          schema.StringAttribute{MarkdownDescription: "The name of one environment of the project.", Optional: true},
					"environment_selector": selector("The environments of the project whose labels match.", "an environment", "every environment of the project"),
				},
			},
			"to": schema.SingleNestedAttribute{
				MarkdownDescription: "Where the traffic goes: exactly one of `environment`, `cidr`, `fqdn` and the selectors " +
					"(`environment_selector`, `project_selector` or both, with Kubernetes' namespaceSelector semantics as in a policy peer).",
				Required:      true,
				PlanModifiers: []planmodifier.Object{objectplanmodifier.RequiresReplace()},
				Attributes: map[string]schema.Attribute{
					"environment":          schema.StringAttribute{MarkdownDescription: "The name of one environment of the assertion's project.", Optional: true},
					"environment_selector": selector("The environments whose labels match, of the assertion's project unless `project_selector` is set.", "an environment", "every environment"),
					"project_selector":     selector("The projects whose labels match: their environments (those `environment_selector` picks, or all) are the destinations.", "a project", "every project"),
					"cidr": schema.StringAttribute{
						MarkdownDescription: "A prefix such as `10.0.0.0/8`: the packet goes to its first and its last address, and only the sender's egress decides.",
						Optional:            true,
					},
					"fqdn": schema.StringAttribute{
						MarkdownDescription: "A host name such as `registry.npmjs.org`, matched against the sender's `fqdn` egress peers.",
						Optional:            true,
					},
				},
			},
			"protocol": schema.StringAttribute{
				MarkdownDescription: "`tcp`, `udp`, `sctp` or `icmp`. Defaults to `tcp`. Changing it replaces the assertion.",
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString(apiv1.ProtocolTCP),
				PlanModifiers:       replace,
			},
			"port": schema.Int64Attribute{
				MarkdownDescription: "The destination port, 1-65535; required except for `icmp`, which takes none. Changing it replaces the assertion.",
				Optional:            true,
				PlanModifiers:       []planmodifier.Int64{int64planmodifier.RequiresReplace()},
			},
			"expect": schema.StringAttribute{
				MarkdownDescription: "`allow`: every packet must be allowed; `deny`: every packet must be denied. Changing it replaces the assertion.",
				Required:            true,
				PlanModifiers:       replace,
			},
			"created_at": createdAtAttribute("assertion"),
		},
	}
}

// ConfigValidators check the whole assertion with the server's own rules
// at plan time, each error on the attribute it names.
func (r *AssertionResource) ConfigValidators(context.Context) []resource.ConfigValidator {
	return []resource.ConfigValidator{validators.APIConfig("the assertion follows the API's rules", func(ctx context.Context, cfg tfsdk.Config) ([]apiv1.FieldError, bool, diag.Diagnostics) {
		var m assertionModel
		if diags := cfg.Get(ctx, &m); diags.HasError() {
			return nil, false, diags
		}
		spec, known, diags := m.spec(ctx)
		if !known {
			return nil, false, diags
		}
		return spec.Validate(), true, diags
	})}
}

func (r *AssertionResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (r *AssertionResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan assertionModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.Plan, &plan) {
		return
	}
	spec, known, diags := plan.spec(ctx)
	if resp.Diagnostics.Append(diags...); !known {
		resp.Diagnostics.AddError("Unable to read the assertion", "Part of the assertion is not known yet; this is a bug in the provider when it happens during apply.")
		return
	}
	assertions := r.client.Assertions(plan.ProjectID.ValueString())
	a := createOrRecover(ctx, r.client.Client, &resp.Diagnostics, "assertion", spec.Name,
		func(ctx context.Context) (*apiv1.Assertion, error) {
			return assertions.Create(ctx, apiv1.AssertionCreate{AssertionSpec: spec})
		}, assertions.Get)
	if a == nil {
		return
	}
	r.save(ctx, &plan, a, &resp.State, resp.Private, &resp.Diagnostics)
}

func (r *AssertionResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state assertionModel
	// With settings unknown until apply, the state stays as it is.
	if r.client == nil || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	a, err := r.client.Assertions(state.ProjectID.ValueString()).Get(ctx, state.ID.ValueString())
	if readFailed(ctx, resp, r.client, "assertion", state.ID.ValueString(), state.ProjectID.ValueString(), err, false) {
		return
	}
	r.save(ctx, &state, a, &resp.State, resp.Private, &resp.Diagnostics)
}

// Update never runs: every attribute the user sets replaces the assertion.
func (r *AssertionResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	resp.Diagnostics.AddError("Unable to update assertion", "Assertions cannot be changed in place; this is a bug in the provider.")
}

func (r *AssertionResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state assertionModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.State, &state) {
		return
	}
	// Unconditional, as for every resource: destroying means "whatever
	// it is now".
	err := r.client.Assertions(state.ProjectID.ValueString()).Delete(ctx, state.ID.ValueString(), "")
	if err != nil && !client.IsNotFound(err) {
		addAPIError(&resp.Diagnostics, "delete", "assertion", state.ID.ValueString(), err)
	}
}

// ImportState takes PROJECT_ID/ASSERTION_ID: an assertion is found
// under its project.
func (r *AssertionResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	projectID, id, ok := strings.Cut(req.ID, "/")
	if !ok || projectID == "" || id == "" {
		resp.Diagnostics.AddError("Unable to import assertion",
			fmt.Sprintf("The import id %q is not PROJECT_ID/ASSERTION_ID, such as prj_.../ast_...", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("project_id"), projectID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), id)...)
}

// fromAPI sets the model to the assertion as the server returned it.
func (m *assertionModel) fromAPI(a *apiv1.Assertion) {
	m.ID = types.StringValue(a.ID)
	m.ProjectID = types.StringValue(a.ProjectID)
	m.Name = types.StringValue(a.Name)
	m.Description = types.StringValue(a.Description)
	m.From = objectOf(assertionFromType, assertionFrom{
		Environment: stringOrNull(a.From.Environment), EnvironmentSelector: selectorOrNull(a.From.EnvironmentSelector),
	})
	m.To = objectOf(assertionToType, assertionTo{
		Environment: stringOrNull(a.To.Environment), EnvironmentSelector: selectorOrNull(a.To.EnvironmentSelector),
		ProjectSelector: selectorOrNull(a.To.ProjectSelector), CIDR: stringOrNull(a.To.CIDR), FQDN: stringOrNull(a.To.FQDN),
	})
	m.Protocol = types.StringValue(a.Protocol)
	m.Port = types.Int64Null()
	if a.Port != 0 {
		m.Port = types.Int64Value(int64(a.Port))
	}
	m.Expect = types.StringValue(a.Expect)
	m.CreatedAt = timeValue(&a.CreatedAt)
}

// spec is the assertion the model describes, in the API's terms; known
// is false while any part of it is unknown.
func (m assertionModel) spec(ctx context.Context) (apiv1.AssertionSpec, bool, diag.Diagnostics) {
	var diags diag.Diagnostics
	for _, v := range []attr.Value{m.Name, m.Description, m.From, m.To, m.Protocol, m.Port, m.Expect} {
		if v.IsUnknown() {
			return apiv1.AssertionSpec{}, false, nil
		}
	}
	s := apiv1.AssertionSpec{
		Name: m.Name.ValueString(), Description: m.Description.ValueString(),
		Protocol: m.Protocol.ValueString(), Port: int(m.Port.ValueInt64()), Expect: m.Expect.ValueString(),
	}
	known := true
	if !m.From.IsNull() {
		var from assertionFrom
		diags.Append(m.From.As(ctx, &from, basetypes.ObjectAsOptions{})...)
		s.From.Environment = from.Environment.ValueString()
		s.From.EnvironmentSelector, known = selectorOf(ctx, from.EnvironmentSelector, known, &diags)
		known = known && !from.Environment.IsUnknown()
	}
	if !m.To.IsNull() {
		var to assertionTo
		diags.Append(m.To.As(ctx, &to, basetypes.ObjectAsOptions{})...)
		s.To.Environment, s.To.CIDR, s.To.FQDN = to.Environment.ValueString(), to.CIDR.ValueString(), to.FQDN.ValueString()
		s.To.EnvironmentSelector, known = selectorOf(ctx, to.EnvironmentSelector, known, &diags)
		s.To.ProjectSelector, known = selectorOf(ctx, to.ProjectSelector, known, &diags)
		known = known && !to.Environment.IsUnknown() && !to.CIDR.IsUnknown() && !to.FQDN.IsUnknown()
	}
	return s, known && !diags.HasError(), diags
}

// selectorOf is a selector attribute's selector, nil when it is absent.
func selectorOf(ctx context.Context, o types.Object, known bool, diags *diag.Diagnostics) (*apiv1.Selector, bool) {
	if o.IsNull() {
		return nil, known
	}
	if o.IsUnknown() {
		return nil, false
	}
	sel, ok, d := policyrules.SelectorFromObject(ctx, o)
	diags.Append(d...)
	return &sel, known && ok && !d.HasError()
}

// selectorOrNull is a selector as the state holds it: null when absent.
func selectorOrNull(s *apiv1.Selector) types.Object {
	if s == nil {
		return types.ObjectNull(policyrules.SelectorType.AttrTypes)
	}
	return policyrules.SelectorValue(*s)
}

func objectOf(t types.ObjectType, v any) types.Object {
	o, diags := types.ObjectValueFrom(context.Background(), t.AttrTypes, v)
	if diags.HasError() {
		panic(fmt.Sprintf("provider: %T does not fit %s: %v", v, t, diags))
	}
	return o
}

// save writes the assertion as the server returned it into the state and
// its ETag into private state, as every resource's save does.
func (r *AssertionResource) save(ctx context.Context, m *assertionModel, a *apiv1.Assertion, state *tfsdk.State, private privateStateWriter, diags *diag.Diagnostics) {
	m.fromAPI(a)
	saveWithETag(ctx, state, private, m, a.ETag, diags)
}
