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
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/policyrules"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ resource.Resource                     = &PolicyResource{}
	_ resource.ResourceWithConfigure        = &PolicyResource{}
	_ resource.ResourceWithImportState      = &PolicyResource{}
	_ resource.ResourceWithConfigValidators = &PolicyResource{}
)

// NewPolicyResource returns the isolation_policy resource.
func NewPolicyResource() resource.Resource { return &PolicyResource{} }

// PolicyResource manages a network policy.
type PolicyResource struct {
	client *providerClient
}

// policyModel is a policy's attributes, as the resource and the data
// source both hold them.
type policyModel struct {
	ID                  types.String `tfsdk:"id"`
	ProjectID           types.String `tfsdk:"project_id"`
	Name                types.String `tfsdk:"name"`
	Description         types.String `tfsdk:"description"`
	EnvironmentSelector types.Object `tfsdk:"environment_selector"`
	PolicyTypes         types.Set    `tfsdk:"policy_types"`
	Ingress             types.Set    `tfsdk:"ingress"`
	Egress              types.Set    `tfsdk:"egress"`
	CreatedAt           types.String `tfsdk:"created_at"`
}

// policyResourceModel is the isolation_policy resource: the policy and the
// timeouts of waiting for it to be enforced.
type policyResourceModel struct {
	policyModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

// Default timeouts of waiting for a policy change to be enforced, when the
// configuration has no timeouts block.
const (
	defaultPolicyCreateTimeout = 10 * time.Minute
	defaultPolicyUpdateTimeout = 10 * time.Minute
	defaultPolicyDeleteTimeout = 10 * time.Minute
)

func (r *PolicyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_policy"
}

func (r *PolicyResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Version: 0,
		MarkdownDescription: "A network policy: it selects environments of a project by their labels and allows them traffic.\n\n" +
			"The semantics are Kubernetes NetworkPolicy's, with one difference: every environment is isolated by default, " +
			"all ingress and all egress denied, and policies only add allows. A direction listed in `policy_types` " +
			"is allowed exactly where some rule of some policy selecting the environment says so.\n\n" +
			"Rules, peers, ports and `except` are sets: their order in the configuration means nothing, and reordering " +
			"them produces no change. An empty set and an absent one mean the same to the API (any peer, any port), " +
			"so empty sets are rejected: leave the attribute out instead.\n\n" +
			"Creating, updating and destroying a policy return once every environment of the project has applied " +
			"the change (its enforcement caught up), bounded by `timeouts`.",
		Attributes: map[string]schema.Attribute{
			"id": idAttribute("The policy's id, made by the server."),
			"project_id": projectIDAttribute("The project the policy belongs to; it selects environments of this project only. " +
				"Changing it replaces the policy."),
			"name":        nameAttribute("The policy's name, a DNS label (1-63 lowercase letters, digits or `-`)."),
			"description": descriptionAttribute("Free text, up to 1024 characters. Defaults to `\"\"`."),
			"environment_selector": schema.SingleNestedAttribute{
				MarkdownDescription: "Which environments of the project the policy applies to. " +
					"`environment_selector = {}` selects every environment of the project.",
				Required:   true,
				Validators: []validator.Object{validators.PolicySelector()},
				Attributes: selectorAttributes("an environment", "for the policy to apply to it", "every environment of the project"),
			},
			"policy_types": schema.SetAttribute{
				MarkdownDescription: "The directions the policy allows traffic in: `ingress`, `egress` or both. " +
					"Rules of a direction not listed here are rejected, as they would do nothing.",
				Required:    true,
				ElementType: types.StringType,
				Validators:  []validator.Set{validators.PolicyTypes()},
			},
			"ingress":    rulesAttribute(policyrules.Ingress, "from", "Traffic is allowed into the selected environments from"),
			"egress":     rulesAttribute(policyrules.Egress, "to", "Traffic is allowed out of the selected environments to"),
			"created_at": createdAtAttribute("policy"),
		},
		Blocks: timeoutsBlock(ctx),
	}
}

func (r *PolicyResource) ConfigValidators(context.Context) []resource.ConfigValidator {
	return []resource.ConfigValidator{validators.PolicyRulesMatchTypes(), validators.PolicyLimits()}
}

func (r *PolicyResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (r *PolicyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan policyResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.Plan, &plan) {
		return
	}
	ctx, cancel := within(ctx, plan.Timeouts.Create, defaultPolicyCreateTimeout, &resp.Diagnostics)
	defer cancel()
	body := plan.toCreate(ctx, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	policies := r.client.Policies()
	p := createOrRecover(ctx, r.client.Client, &resp.Diagnostics, "policy", body.Name,
		func(ctx context.Context) (*apiv1.Policy, error) { return policies.Create(ctx, body) }, policies.Get)
	if p == nil {
		return
	}
	// Saved before waiting, so a policy whose enforcement times out is
	// in state (tainted) rather than orphaned.
	r.save(ctx, &plan, p, &resp.State, resp.Private, &resp.Diagnostics)
	r.waitEnforced(ctx, "created", "create", p, &resp.Diagnostics)
}

func (r *PolicyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state policyResourceModel
	// With settings unknown until apply, the state stays as it is.
	if r.client == nil || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	p, err := r.client.Policies().Get(ctx, state.ID.ValueString())
	if readFailed(ctx, resp, r.client, "policy", state.ID.ValueString(), state.ProjectID.ValueString(), err, false) {
		return
	}
	r.save(ctx, &state, p, &resp.State, resp.Private, &resp.Diagnostics)
}

func (r *PolicyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state policyResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.Plan, &plan) || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	ctx, cancel := within(ctx, plan.Timeouts.Update, defaultPolicyUpdateTimeout, &resp.Diagnostics)
	defer cancel()
	patch := plan.toPatch(ctx, state.policyModel, &resp.Diagnostics)
	etag := privateETagOf(ctx, req.Private, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	p, _ := patchOrGet(ctx, &resp.Diagnostics, "policy", state.ID.ValueString(), patch, etag, r.client.Policies().Update, r.client.Policies().Get)
	if p == nil {
		return
	}
	r.save(ctx, &plan, p, &resp.State, resp.Private, &resp.Diagnostics)
	r.waitEnforced(ctx, "updated", "update", p, &resp.Diagnostics)
}

func (r *PolicyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state policyResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.State, &state) {
		return
	}
	ctx, cancel := within(ctx, state.Timeouts.Delete, defaultPolicyDeleteTimeout, &resp.Diagnostics)
	defer cancel()
	if resp.Diagnostics.HasError() {
		return
	}
	// Unconditional, unlike Update, as for every resource: destroying
	// means "whatever it is now", and `terraform destroy -refresh=false`
	// must not fail on a stale ETag.
	err := r.client.Policies().Delete(ctx, state.ID.ValueString(), "")
	if client.IsNotFound(err) {
		return
	}
	if err != nil {
		addAPIError(&resp.Diagnostics, "delete", "policy", state.ID.ValueString(), err)
		return
	}
	if err := r.client.Policies().WaitEnforced(ctx, state.ProjectID.ValueString()); err != nil {
		resp.Diagnostics.AddError("Unable to confirm policy deletion",
			fmt.Sprintf("Policy %s is deleted, but not every environment of project %s has applied that yet: %s. "+
				"Traffic it allowed may still pass until they catch up; check again with terraform plan, or raise timeouts.delete.",
				state.ID.ValueString(), state.ProjectID.ValueString(), err))
	}
}

// ImportState takes the policy's id or PROJECT_NAME/POLICY_NAME.
func (r *PolicyResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	importByName(ctx, r.client, "policy", req, resp, r.client.Policies().Get, r.client.Policies().List,
		func(o *apiv1.Policy) string { return o.Name }, func(o *apiv1.Policy) string { return o.ID })
}

// fromAPI sets the model to the policy as the server returned it: the
// server's empty lists become null, as in the configuration (where empty
// sets are rejected), so plans stay empty.
func (m *policyModel) fromAPI(p *apiv1.Policy) {
	m.ID = types.StringValue(p.ID)
	m.ProjectID = types.StringValue(p.ProjectID)
	m.Name = types.StringValue(p.Name)
	m.Description = types.StringValue(p.Description)
	m.EnvironmentSelector = policyrules.SelectorValue(p.EnvironmentSelector)
	m.PolicyTypes = policyTypesValue(p.PolicyTypes)
	m.Ingress = policyrules.Ingress.SetValue(policyrules.IngressRules(p.Ingress))
	m.Egress = policyrules.Egress.SetValue(policyrules.EgressRules(p.Egress))
	m.CreatedAt = timeValue(&p.CreatedAt)
}

// toCreate is the POST of the planned policy.
func (m policyModel) toCreate(ctx context.Context, diags *diag.Diagnostics) apiv1.PolicyCreate {
	return apiv1.PolicyCreate{ProjectID: m.ProjectID.ValueString(), PolicySpec: m.spec(ctx, diags)}
}

// toPatch is the PATCH of what the plan (m) changes from state; it is
// empty when nothing the API holds changes (only timeouts, say).
func (m policyModel) toPatch(ctx context.Context, state policyModel, diags *diag.Diagnostics) apiv1.PolicyPatch {
	spec := m.spec(ctx, diags)
	return apiv1.PolicyPatch{
		Name:                patched(m.Name, state.Name, spec.Name),
		Description:         patched(m.Description, state.Description, spec.Description),
		EnvironmentSelector: patched(m.EnvironmentSelector, state.EnvironmentSelector, spec.EnvironmentSelector),
		PolicyTypes:         patched(m.PolicyTypes, state.PolicyTypes, spec.PolicyTypes),
		Ingress:             patched(m.Ingress, state.Ingress, spec.Ingress),
		Egress:              patched(m.Egress, state.Egress, spec.Egress),
	}
}

// spec returns the policy the model describes, in the API's terms. Every
// part is known once Terraform applies a plan; an unknown one is a bug.
func (m policyModel) spec(ctx context.Context, diags *diag.Diagnostics) apiv1.PolicySpec {
	unknown := func(attr string) {
		diags.AddAttributeError(path.Root(attr), "Unable to read policy "+attr,
			attr+" is not known yet; this is a bug in the provider when it happens during apply.")
	}
	selector, known, d := policyrules.SelectorFromObject(ctx, m.EnvironmentSelector)
	if diags.Append(d...); !known {
		unknown("environment_selector")
	}
	policyTypes, known, d := policyrules.StringsFromSet(ctx, m.PolicyTypes)
	if diags.Append(d...); !known {
		unknown("policy_types")
	}
	ingress, known, d := policyrules.Ingress.Rules(ctx, m.Ingress)
	if diags.Append(d...); !known {
		unknown(policyrules.Ingress.Name)
	}
	egress, known, d := policyrules.Egress.Rules(ctx, m.Egress)
	if diags.Append(d...); !known {
		unknown(policyrules.Egress.Name)
	}
	return apiv1.PolicySpec{
		Name:                m.Name.ValueString(),
		Description:         m.Description.ValueString(),
		EnvironmentSelector: selector,
		PolicyTypes:         policyTypes,
		Ingress:             policyrules.APIIngress(ingress),
		Egress:              policyrules.APIEgress(egress),
	}.Normalize()
}

// policyTypesValue is policy_types as a set; unlike the rule sets it is
// never null, because policy_types is required and never empty.
func policyTypesValue(pt []string) types.Set {
	elems := make([]attr.Value, 0, len(pt))
	for _, t := range pt {
		elems = append(elems, types.StringValue(t))
	}
	return types.SetValueMust(types.StringType, elems)
}

// save puts the policy as the server returned it in state, with the
// configuration's timeouts, and keeps its ETag for the next update.
func (r *PolicyResource) save(ctx context.Context, m *policyResourceModel, p *apiv1.Policy, state *tfsdk.State, private privateStateWriter, diags *diag.Diagnostics) {
	m.fromAPI(p)
	saveWithETag(ctx, state, private, m, p.ETag, diags)
}

// waitEnforced waits until the environments of the policy's project have
// applied it: until then, traffic is not yet what the policy says. done
// is what happened to the policy ("created"), timeout the timeouts key.
func (r *PolicyResource) waitEnforced(ctx context.Context, done, timeout string, p *apiv1.Policy, diags *diag.Diagnostics) {
	if err := r.client.Policies().WaitEnforced(ctx, p.ProjectID); err != nil {
		diags.AddError("Unable to confirm policy enforcement",
			fmt.Sprintf("Policy %s (%s) is %s, but not every environment of project %s has applied it yet: %s. "+
				"Once the environments catch up, run terraform apply again, or raise timeouts.%s.",
				p.Name, p.ID, done, p.ProjectID, err, timeout))
	}
}

// rulesAttribute is the schema of the ingress or egress rules.
func rulesAttribute(dir policyrules.Direction, verb, allows string) schema.SetNestedAttribute {
	return schema.SetNestedAttribute{
		MarkdownDescription: fmt.Sprintf("The %s rules, each allowing traffic %s any of its peers on any of its ports. "+
			"Requires %q in `policy_types`. Leave it out for no %s allows. "+
			"A policy has at most %d rules, %d peers, %d ports and %d `except` entries, ingress and egress together.",
			dir.Name, verb, dir.Name, dir.Name, apiv1.MaxRulesPerPolicy, apiv1.MaxPeersPerPolicy, apiv1.MaxPortsPerPolicy, apiv1.MaxExceptsPerPolicy),
		Optional:      true,
		Validators:    []validator.Set{validators.NotEmptySet(fmt.Sprintf("omit %s to add no %s allows", dir.Name, dir.Name))},
		PlanModifiers: []planmodifier.Set{planmodifiers.NestedStringDefault(apiv1.ProtocolTCP, policyrules.AttrPorts, policyrules.AttrProtocol)},
		NestedObject: schema.NestedAttributeObject{
			Attributes: map[string]schema.Attribute{
				dir.PeersAttr: schema.SetNestedAttribute{
					MarkdownDescription: allows + " any of these peers. Leave it out to allow any peer.",
					Optional:            true,
					Validators:          []validator.Set{validators.NotEmptySet(fmt.Sprintf("omit %s to allow any peer", dir.PeersAttr))},
					NestedObject:        peerAttributeObject(dir.Name == apiv1.Egress),
				},
				policyrules.AttrPorts: schema.SetNestedAttribute{
					MarkdownDescription: "On any of these ports. Leave it out to allow every port and protocol.",
					Optional:            true,
					Validators:          []validator.Set{validators.NotEmptySet("omit ports to allow every port"), validators.PolicyPortsDistinct()},
					NestedObject:        portAttributeObject(),
				},
			},
		},
	}
}

func peerAttributeObject(egress bool) schema.NestedAttributeObject {
	return schema.NestedAttributeObject{
		Validators: []validator.Object{validators.PolicyPeer(egress)},
		Attributes: map[string]schema.Attribute{
			policyrules.AttrCIDR: schema.StringAttribute{
				MarkdownDescription: "An IPv4 or IPv6 prefix in canonical CIDR notation, such as `10.0.0.0/8` or `2001:db8::/32`. " +
					"Exactly one of `cidr`, `fqdn` and the selectors (`environment_selector`, `project_selector` or both) is set.",
				Optional: true,
			},
			policyrules.AttrFQDN: schema.StringAttribute{
				MarkdownDescription: "Egress only: a host name such as `registry.npmjs.org`, or a pattern such as `*.github.com` " +
					"(`*` is the whole leftmost label and stands for exactly one label: it matches `api.github.com`, not `github.com` " +
					"or `a.b.github.com`). Lower case, without a trailing dot; not an IP address. The addresses the environment's " +
					"resolver (isolationd's DNS proxy) answers for a matching name are allowed on the rule's ports for the answer's " +
					"TTL, within the server's bounds; connections opened meanwhile continue after it.",
				Optional: true,
			},
			policyrules.AttrExcept: schema.SetAttribute{
				MarkdownDescription: "Prefixes carved out of `cidr`, each strictly inside it.",
				Optional:            true,
				ElementType:         types.StringType,
				Validators:          []validator.Set{validators.NotEmptySet("omit except to carve nothing out of cidr")},
			},
			policyrules.AttrEnvironmentSelector: schema.SingleNestedAttribute{
				MarkdownDescription: "Environments by labels: of the policy's project alone, or, with `project_selector`, of the projects it picks " +
					"(Kubernetes' podSelector beside a namespaceSelector). `environment_selector = {}` selects every environment.",
				Optional:   true,
				Attributes: selectorAttributes("an environment", "to be this peer", "every environment"),
			},
			policyrules.AttrProjectSelector: schema.SingleNestedAttribute{
				MarkdownDescription: "Projects by their labels, as Kubernetes' namespaceSelector picks namespaces: alone, the peer is every " +
					"environment of those projects; with `environment_selector`, the environments it picks there. `project_selector = {}` " +
					"picks every project. A connection across projects is allowed only when the sender's egress and the receiver's ingress " +
					"both allow it. Callers who may not read a picked project see its environments counted, never named.",
				Optional:   true,
				Attributes: selectorAttributes("a project", "to be picked", "every project"),
			},
		},
	}
}

func portAttributeObject() schema.NestedAttributeObject {
	return schema.NestedAttributeObject{
		Validators: []validator.Object{validators.PolicyPort()},
		Attributes: map[string]schema.Attribute{
			policyrules.AttrProtocol: schema.StringAttribute{
				MarkdownDescription: "`tcp`, `udp`, `sctp` or `icmp`. Defaults to `tcp`.",
				Optional:            true,
				Computed:            true,
			},
			policyrules.AttrPort: schema.Int64Attribute{
				MarkdownDescription: "The port, 1-65535, or the first of a range ending at `end_port`. Leave it out for every port of the protocol; `icmp` takes none.",
				Optional:            true,
			},
			policyrules.AttrEndPort: schema.Int64Attribute{
				MarkdownDescription: "The last port of the range that `port` starts (inclusive), at least `port`.",
				Optional:            true,
			},
			policyrules.AttrPortName: schema.StringAttribute{
				MarkdownDescription: "Instead of `port`: a port name, resolved against the destination environment's `workload.ports` for this " +
					"protocol, as Kubernetes resolves a named container port (the environment the policy selects for ingress, each peer " +
					"environment for egress). A destination that declares no such name matches nothing.",
				Optional: true,
			},
		},
	}
}

// selectorAttributes are a label selector's match_labels and
// match_expressions: what (an environment, a project) must meet them
// purpose; without either, the selector picks all.
func selectorAttributes(what, purpose, all string) map[string]schema.Attribute {
	return map[string]schema.Attribute{
		policyrules.AttrMatchLabels: schema.MapAttribute{
			MarkdownDescription: fmt.Sprintf("Labels %s must all carry %s. With `match_expressions`, at most %d terms. "+
				"Leave it out to select %s; an empty map is rejected, as it would mean the same.", what, purpose, apiv1.MaxSelectorLabels, all),
			Optional:    true,
			ElementType: types.StringType,
			Validators: []validator.Map{
				validators.SelectorLabels(),
				validators.NotEmptyMap("omit match_labels to select " + all),
			},
		},
		policyrules.AttrMatchExpressions: schema.ListNestedAttribute{
			MarkdownDescription: fmt.Sprintf("Requirements %s must all meet %s, with Kubernetes' semantics: `In` (the label is present with one of `values`), "+
				"`NotIn` (absent, or with none of them), `Exists`, `DoesNotExist`.", what, purpose),
			Optional:   true,
			Validators: []validator.List{validators.NotEmptyList("omit match_expressions to add no requirement")},
			NestedObject: schema.NestedAttributeObject{
				Attributes: map[string]schema.Attribute{
					policyrules.AttrKey: schema.StringAttribute{
						MarkdownDescription: "The label key: an optional DNS subdomain prefix and `/`, then 1-63 letters, digits, `-`, `_` or `.`.",
						Required:            true,
					},
					policyrules.AttrOperator: schema.StringAttribute{
						MarkdownDescription: "`In`, `NotIn`, `Exists` or `DoesNotExist`.",
						Required:            true,
					},
					policyrules.AttrValues: schema.SetAttribute{
						MarkdownDescription: fmt.Sprintf("Label values, at most %d: required for `In` and `NotIn`, absent for `Exists` and `DoesNotExist`.", apiv1.MaxSelectorValues),
						Optional:            true,
						ElementType:         types.StringType,
					},
				},
			},
		},
	}
}
