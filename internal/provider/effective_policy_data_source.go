package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/policyrules"
)

var (
	_ datasource.DataSource              = &EffectivePolicyDataSource{}
	_ datasource.DataSourceWithConfigure = &EffectivePolicyDataSource{}
)

// EffectivePolicyDataSource reads what an environment is allowed: the
// policies that select it and their rules merged, peers resolved.
type EffectivePolicyDataSource struct {
	client *providerClient
}

// EffectivePolicyDataSourceModel is the isolation_effective_policy data source.
type EffectivePolicyDataSourceModel struct {
	EnvironmentID types.String `tfsdk:"environment_id"`
	Address       types.String `tfsdk:"address"`
	Policies      types.List   `tfsdk:"policies"`
	Ingress       types.List   `tfsdk:"ingress"`
	Egress        types.List   `tfsdk:"egress"`
}

// Object types of the data source's lists.
var (
	policyRefType       = types.ObjectType{AttrTypes: map[string]attr.Type{"id": types.StringType, "name": types.StringType}}
	peerEnvironmentType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"id": types.StringType, "name": types.StringType, "address": types.StringType,
	}}
	pinnedEnvironmentType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"id": types.StringType, "project_id": types.StringType, "address": types.StringType,
	}}
	coverageType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"environments": types.ListType{ElemType: pinnedEnvironmentType},
		"count":        types.Int64Type,
		"more":         types.BoolType,
		"warning":      types.StringType,
	}}
	effectivePeerType = types.ObjectType{AttrTypes: map[string]attr.Type{
		policyrules.AttrCIDR:                types.StringType,
		policyrules.AttrExcept:              types.SetType{ElemType: types.StringType},
		policyrules.AttrEnvironmentSelector: policyrules.SelectorType,
		"environments":                      types.ListType{ElemType: peerEnvironmentType},
		"covers":                            coverageType,
	}}
	effectiveRuleType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"policy_id":           types.StringType,
		"policy_name":         types.StringType,
		"rule_index":          types.Int64Type,
		"peers":               types.ListType{ElemType: effectivePeerType},
		policyrules.AttrPorts: types.SetType{ElemType: policyrules.PortType},
		"warnings":            types.ListType{ElemType: types.StringType},
	}}
)

// NewEffectivePolicyDataSource returns the isolation_effective_policy data source.
func NewEffectivePolicyDataSource() datasource.DataSource { return &EffectivePolicyDataSource{} }

func (d *EffectivePolicyDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_effective_policy"
}

func (d *EffectivePolicyDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads an environment's effective policy: every policy that selects it, and the allow rules " +
			"of those policies merged, with environment-selector peers resolved to the environments they match now. " +
			"Both directions are denied by default; `ingress` and `egress` list everything that is allowed.",
		Attributes: map[string]schema.Attribute{
			"environment_id": schema.StringAttribute{
				MarkdownDescription: "The environment.",
				Required:            true,
			},
			"address": schema.StringAttribute{
				MarkdownDescription: "The environment's address, once it has one.",
				Computed:            true,
			},
			"policies": schema.ListNestedAttribute{
				MarkdownDescription: "The policies that select the environment.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"id":   schema.StringAttribute{MarkdownDescription: "The policy's id.", Computed: true},
					"name": schema.StringAttribute{MarkdownDescription: "The policy's name.", Computed: true},
				}},
			},
			"ingress": effectiveRulesAttribute("ingress", "from"),
			"egress":  effectiveRulesAttribute("egress", "to"),
		},
	}
}

func effectiveRulesAttribute(direction, fromOrTo string) schema.ListNestedAttribute {
	peer := computedPeerAttributes()
	peer["environments"] = schema.ListNestedAttribute{
		MarkdownDescription: "For an environment selector peer, the environments it matches now.",
		Computed:            true,
		NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
			"id":      schema.StringAttribute{MarkdownDescription: "The environment's id.", Computed: true},
			"name":    schema.StringAttribute{MarkdownDescription: "The environment's name.", Computed: true},
			"address": schema.StringAttribute{MarkdownDescription: "The environment's address, once it has one.", Computed: true},
		}},
	}
	peer["covers"] = schema.SingleNestedAttribute{
		MarkdownDescription: "For a CIDR peer that covers the addresses of environments of other projects (whose traffic therefore matches the rule), " +
			"which ones; null when it covers none. An address pinned in a CIDR outlives its environment: once freed and past the server's " +
			"address quarantine it goes to a new environment of any project. Prefer environment selectors.",
		Computed: true,
		Attributes: map[string]schema.Attribute{
			"environments": schema.ListNestedAttribute{
				MarkdownDescription: "The covered environments the token may see (at most 10).",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"id":         schema.StringAttribute{MarkdownDescription: "The environment's id.", Computed: true},
					"project_id": schema.StringAttribute{MarkdownDescription: "Its project.", Computed: true},
					"address":    schema.StringAttribute{MarkdownDescription: "Its address, as the CIDR covers it.", Computed: true},
				}},
			},
			"count":   schema.Int64Attribute{MarkdownDescription: "How many environments of other projects the CIDR covers, those of projects out of the token's scope included.", Computed: true},
			"more":    schema.BoolAttribute{MarkdownDescription: "Whether it covers more than `count` (the server stops counting).", Computed: true},
			"warning": schema.StringAttribute{MarkdownDescription: "The warning, in words.", Computed: true},
		},
	}
	return schema.ListNestedAttribute{
		MarkdownDescription: fmt.Sprintf("The merged %s allows: each rule of each selecting policy that lists %s in its policy_types.", direction, direction),
		Computed:            true,
		NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
			"policy_id":   schema.StringAttribute{MarkdownDescription: "The policy the rule comes from.", Computed: true},
			"policy_name": schema.StringAttribute{MarkdownDescription: "That policy's name.", Computed: true},
			"rule_index":  schema.Int64Attribute{MarkdownDescription: "The rule's position in that policy's rules as the server stores them.", Computed: true},
			"peers": schema.ListNestedAttribute{
				MarkdownDescription: fmt.Sprintf("Traffic %s any of these peers is allowed; empty means any peer.", fromOrTo),
				Computed:            true,
				NestedObject:        schema.NestedAttributeObject{Attributes: peer},
			},
			policyrules.AttrPorts: schema.SetNestedAttribute{
				MarkdownDescription: "On any of these ports; null means every port.",
				Computed:            true,
				NestedObject:        schema.NestedAttributeObject{Attributes: computedPortAttributes()},
			},
			"warnings": schema.ListAttribute{
				MarkdownDescription: "Warnings about the rule: each CIDR peer that covers environments of other projects (see `covers`).",
				Computed:            true,
				ElementType:         types.StringType,
			},
		}},
	}
}

func (d *EffectivePolicyDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (d *EffectivePolicyDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	var cfg EffectivePolicyDataSourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ep, err := d.client.Environments().EffectivePolicy(ctx, cfg.EnvironmentID.ValueString())
	if err != nil {
		addAPIError(&resp.Diagnostics, "read", "effective policy of environment", cfg.EnvironmentID.ValueString(), err)
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, effectivePolicyModel(ep))...)
}

func effectivePolicyModel(ep *apiv1.EffectivePolicy) EffectivePolicyDataSourceModel {
	refs := make([]attr.Value, 0, len(ep.Policies))
	for _, p := range ep.Policies {
		refs = append(refs, types.ObjectValueMust(policyRefType.AttrTypes, map[string]attr.Value{
			"id": types.StringValue(p.ID), "name": types.StringValue(p.Name),
		}))
	}
	return EffectivePolicyDataSourceModel{
		EnvironmentID: types.StringValue(ep.EnvironmentID),
		Address:       stringOrNull(ep.Address),
		Policies:      types.ListValueMust(policyRefType, refs),
		Ingress:       effectiveRulesValue(ep.Ingress),
		Egress:        effectiveRulesValue(ep.Egress),
	}
}

func effectiveRulesValue(rules []apiv1.EffectiveRule) types.List {
	out := make([]attr.Value, 0, len(rules))
	for _, r := range rules {
		peers := make([]attr.Value, 0, len(r.Peers))
		for _, p := range r.Peers {
			envs := make([]attr.Value, 0, len(p.Environments))
			for _, e := range p.Environments {
				envs = append(envs, types.ObjectValueMust(peerEnvironmentType.AttrTypes, map[string]attr.Value{
					"id": types.StringValue(e.ID), "name": types.StringValue(e.Name), "address": stringOrNull(e.Address),
				}))
			}
			attrs := policyrules.PeerValue(p.Peer).(types.Object).Attributes()
			attrs["environments"] = types.ListValueMust(peerEnvironmentType, envs)
			attrs["covers"] = coverageValue(p.Covers)
			peers = append(peers, types.ObjectValueMust(effectivePeerType.AttrTypes, attrs))
		}
		warnings := make([]attr.Value, 0, len(r.Warnings))
		for _, w := range r.Warnings {
			warnings = append(warnings, types.StringValue(w))
		}
		out = append(out, types.ObjectValueMust(effectiveRuleType.AttrTypes, map[string]attr.Value{
			"policy_id":           types.StringValue(r.PolicyID),
			"policy_name":         types.StringValue(r.PolicyName),
			"rule_index":          types.Int64Value(int64(r.RuleIndex)),
			"peers":               types.ListValueMust(effectivePeerType, peers),
			policyrules.AttrPorts: policyrules.PortsValue(r.Ports),
			"warnings":            types.ListValueMust(types.StringType, warnings),
		}))
	}
	return types.ListValueMust(effectiveRuleType, out)
}

func coverageValue(c *apiv1.CIDRCoverage) types.Object {
	if c == nil {
		return types.ObjectNull(coverageType.AttrTypes)
	}
	envs := make([]attr.Value, 0, len(c.Environments))
	for _, e := range c.Environments {
		envs = append(envs, types.ObjectValueMust(pinnedEnvironmentType.AttrTypes, map[string]attr.Value{
			"id": types.StringValue(e.ID), "project_id": types.StringValue(e.ProjectID), "address": types.StringValue(e.Address),
		}))
	}
	return types.ObjectValueMust(coverageType.AttrTypes, map[string]attr.Value{
		"environments": types.ListValueMust(pinnedEnvironmentType, envs),
		"count":        types.Int64Value(int64(c.Count)),
		"more":         types.BoolValue(c.More),
		"warning":      types.StringValue(c.Warning),
	})
}
