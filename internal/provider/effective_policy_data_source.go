package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/policyrules"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ datasource.DataSource              = &EffectivePolicyDataSource{}
	_ datasource.DataSourceWithConfigure = &EffectivePolicyDataSource{}
)

// NewEffectivePolicyDataSource returns the isolation_effective_policy data source.
func NewEffectivePolicyDataSource() datasource.DataSource { return &EffectivePolicyDataSource{} }

// EffectivePolicyDataSource reads what an environment is allowed: the
// policies that select it and their rules merged, peers resolved.
type EffectivePolicyDataSource struct {
	client *providerClient
}

// effectivePolicyDataSourceModel is the isolation_effective_policy data
// source. Its lists hold the structs below, element by element.
type effectivePolicyDataSourceModel struct {
	EnvironmentID types.String `tfsdk:"environment_id"`
	Address       types.String `tfsdk:"address"`
	Policies      types.List   `tfsdk:"policies"`
	Ingress       types.List   `tfsdk:"ingress"`
	Egress        types.List   `tfsdk:"egress"`
}

// policyRefModel is one of the policies that select the environment.
type policyRefModel struct {
	ID   types.String `tfsdk:"id"`
	Name types.String `tfsdk:"name"`
}

// effectiveRuleModel is one merged rule. Its lists are Go slices: they
// are only ever written, and an empty slice is an empty list.
type effectiveRuleModel struct {
	PolicyID   types.String         `tfsdk:"policy_id"`
	PolicyName types.String         `tfsdk:"policy_name"`
	RuleIndex  types.Int64          `tfsdk:"rule_index"`
	Peers      []effectivePeerModel `tfsdk:"peers"`
	Ports      types.Set            `tfsdk:"ports"`
	Warnings   []string             `tfsdk:"warnings"`
}

// effectivePeerModel is a policy peer and what it resolves to now.
type effectivePeerModel struct {
	policyrules.Peer
	Environments []peerEnvironmentModel `tfsdk:"environments"`
	Hidden       types.Int64            `tfsdk:"hidden"`
	Covers       *coverageModel         `tfsdk:"covers"` // nil: null, it covers no other project's environment
	Names        []resolvedNameModel    `tfsdk:"names"`
}

// resolvedNameModel is a name an fqdn peer matches that the environment
// has resolved, with the addresses allowed for it now.
type resolvedNameModel struct {
	Name      types.String `tfsdk:"name"`
	Addresses []string     `tfsdk:"addresses"`
	Expires   types.String `tfsdk:"expires"`
}

// peerEnvironmentModel is an environment a selector peer matches.
type peerEnvironmentModel struct {
	ID        types.String `tfsdk:"id"`
	Name      types.String `tfsdk:"name"`
	Address   types.String `tfsdk:"address"`
	ProjectID types.String `tfsdk:"project_id"`
}

// coverageModel is which environments of other projects a CIDR peer covers.
type coverageModel struct {
	Environments []pinnedEnvironmentModel `tfsdk:"environments"`
	Count        types.Int64              `tfsdk:"count"`
	More         types.Bool               `tfsdk:"more"`
	Warning      types.String             `tfsdk:"warning"`
}

// pinnedEnvironmentModel is an environment whose address a CIDR covers.
type pinnedEnvironmentModel struct {
	ID        types.String `tfsdk:"id"`
	ProjectID types.String `tfsdk:"project_id"`
	Address   types.String `tfsdk:"address"`
}

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
				Validators:          []validator.String{validators.ID()},
			},
			"address": computedString("The environment's address, once it has one."),
			"policies": computedObjects("The policies that select the environment.", map[string]schema.Attribute{
				"id":   computedString("The policy's id."),
				"name": computedString("The policy's name."),
			}),
			"ingress": effectiveRulesAttribute("ingress", "from"),
			"egress":  effectiveRulesAttribute("egress", "to"),
		},
	}
}

func (d *EffectivePolicyDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (d *EffectivePolicyDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var cfg effectivePolicyDataSourceModel
	if !prepare(ctx, d.client, &resp.Diagnostics, req.Config, &cfg) {
		return
	}
	ep, err := d.client.Environments().EffectivePolicy(ctx, cfg.EnvironmentID.ValueString())
	if err != nil {
		addAPIError(&resp.Diagnostics, "read", "effective policy of environment", cfg.EnvironmentID.ValueString(), err)
		return
	}
	cfg.fromAPI(ctx, ep, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}

// fromAPI sets the model to the effective policy the server computed.
func (m *effectivePolicyDataSourceModel) fromAPI(ctx context.Context, ep *apiv1.EffectivePolicy, diags *diag.Diagnostics) {
	refs := make([]policyRefModel, 0, len(ep.Policies))
	for _, p := range ep.Policies {
		refs = append(refs, policyRefModel{ID: types.StringValue(p.ID), Name: types.StringValue(p.Name)})
	}
	m.EnvironmentID = types.StringValue(ep.EnvironmentID)
	m.Address = stringOrNull(ep.Address)
	m.Policies = listFrom(ctx, m.Policies, refs, diags)
	m.Ingress = listFrom(ctx, m.Ingress, effectiveRules(ep.Ingress), diags)
	m.Egress = listFrom(ctx, m.Egress, effectiveRules(ep.Egress), diags)
}

func effectiveRules(rules []apiv1.EffectiveRule) []effectiveRuleModel {
	out := make([]effectiveRuleModel, 0, len(rules))
	for _, r := range rules {
		peers := make([]effectivePeerModel, 0, len(r.Peers))
		for _, p := range r.Peers {
			envs := make([]peerEnvironmentModel, 0, len(p.Environments))
			for _, e := range p.Environments {
				envs = append(envs, peerEnvironmentModel{ID: types.StringValue(e.ID), Name: types.StringValue(e.Name), Address: stringOrNull(e.Address), ProjectID: stringOrNull(e.ProjectID)})
			}
			names := make([]resolvedNameModel, 0, len(p.Names))
			for _, n := range p.Names {
				names = append(names, resolvedNameModel{
					Name: types.StringValue(n.Name), Addresses: append(make([]string, 0, len(n.Addresses)), n.Addresses...),
					Expires: types.StringValue(n.Expires.UTC().Format(time.RFC3339)),
				})
			}
			peers = append(peers, effectivePeerModel{Peer: policyrules.PeerFromAPI(p.Peer), Environments: envs, Hidden: types.Int64Value(int64(p.Hidden)), Covers: coverage(p.Covers), Names: names})
		}
		out = append(out, effectiveRuleModel{
			PolicyID:   types.StringValue(r.PolicyID),
			PolicyName: types.StringValue(r.PolicyName),
			RuleIndex:  types.Int64Value(int64(r.RuleIndex)),
			Peers:      peers,
			Ports:      policyrules.PortsValue(r.Ports),
			Warnings:   append(make([]string, 0, len(r.Warnings)), r.Warnings...),
		})
	}
	return out
}

func coverage(c *apiv1.CIDRCoverage) *coverageModel {
	if c == nil {
		return nil
	}
	envs := make([]pinnedEnvironmentModel, 0, len(c.Environments))
	for _, e := range c.Environments {
		envs = append(envs, pinnedEnvironmentModel{ID: types.StringValue(e.ID), ProjectID: types.StringValue(e.ProjectID), Address: types.StringValue(e.Address)})
	}
	return &coverageModel{
		Environments: envs,
		Count:        types.Int64Value(int64(c.Count)),
		More:         types.BoolValue(c.More),
		Warning:      types.StringValue(c.Warning),
	}
}

// effectiveRulesAttribute is the schema of the merged ingress or egress rules.
func effectiveRulesAttribute(direction, fromOrTo string) schema.ListNestedAttribute {
	peer := computedPeerAttributes()
	peer["environments"] = computedObjects("For a selector peer, the environments it matches now that the token may read.", map[string]schema.Attribute{
		"id":         computedString("The environment's id."),
		"name":       computedString("The environment's name."),
		"address":    computedString("The environment's address, once it has one."),
		"project_id": computedString("Its project, when it is not the environment's own (a `project_selector` peer); else null."),
	})
	peer["hidden"] = computedInt64("For a `project_selector` peer, how many environments it matches in projects the token may not read: " +
		"enforced, but not named.")
	peer["names"] = computedObjects("For an fqdn peer, the matching names the environment has resolved through its resolver, "+
		"whose addresses the rule allows now.", map[string]schema.Attribute{
		"name":      computedString("The name, as resolved."),
		"addresses": computedStringList("The addresses allowed for it."),
		"expires":   computedString("When they stop being allowed for new connections (RFC 3339), unless the environment resolves the name again."),
	})
	peer["covers"] = schema.SingleNestedAttribute{
		MarkdownDescription: "For a CIDR peer that covers the addresses of environments of other projects (whose traffic therefore matches the rule), " +
			"which ones; null when it covers none. An address pinned in a CIDR outlives its environment: once freed and past the server's " +
			"address quarantine it goes to a new environment of any project. Prefer environment selectors.",
		Computed: true,
		Attributes: map[string]schema.Attribute{
			"environments": computedObjects("The covered environments the token may see (at most 10).", map[string]schema.Attribute{
				"id":         computedString("The environment's id."),
				"project_id": computedString("Its project."),
				"address":    computedString("Its address, as the CIDR covers it."),
			}),
			"count":   computedInt64("How many environments of other projects the CIDR covers, those of projects out of the token's scope included."),
			"more":    computedBool("Whether it covers more than `count` (the server stops counting)."),
			"warning": computedString("The warning, in words."),
		},
	}
	return computedObjects(fmt.Sprintf("The merged %s allows: each rule of each selecting policy that lists %s in its policy_types.", direction, direction), map[string]schema.Attribute{
		"policy_id":   computedString("The policy the rule comes from."),
		"policy_name": computedString("That policy's name."),
		"rule_index":  computedInt64("The rule's position in that policy's rules as the server stores them."),
		"peers":       computedObjects(fmt.Sprintf("Traffic %s any of these peers is allowed; empty means any peer.", fromOrTo), peer),
		policyrules.AttrPorts: schema.SetNestedAttribute{
			MarkdownDescription: "On any of these ports; null means every port.",
			Computed:            true,
			NestedObject:        schema.NestedAttributeObject{Attributes: computedPortAttributes()},
		},
		"warnings": computedStringList("Warnings about the rule: each CIDR peer that covers environments of other projects (see `covers`)."),
	})
}
