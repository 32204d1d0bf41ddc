package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/policyrules"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ datasource.DataSource                     = &PolicyDataSource{}
	_ datasource.DataSourceWithConfigure        = &PolicyDataSource{}
	_ datasource.DataSourceWithConfigValidators = &PolicyDataSource{}
)

// NewPolicyDataSource returns the isolation_policy data source.
func NewPolicyDataSource() datasource.DataSource { return &PolicyDataSource{} }

// PolicyDataSource reads one network policy. Its model is the resource's
// policyModel, every attribute read from the server.
type PolicyDataSource struct {
	client *providerClient
}

func (d *PolicyDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_policy"
}

func (d *PolicyDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads a network policy, by `id` or by `project_id` and `name`. " +
			"Its attributes are those of the `isolation_policy` resource; empty rule, peer and port sets read as null.",
		Attributes: map[string]schema.Attribute{
			"id":          lookupAttribute("The policy's id. Set either `id`, or `project_id` and `name`.", validators.ID()),
			"project_id":  lookupAttribute("The project the policy belongs to; with `name`, finds the policy by name.", validators.ID()),
			"name":        lookupAttribute("The policy's name, unique within its project.", validators.Name()),
			"description": computedString("Free text."),
			"environment_selector": schema.SingleNestedAttribute{
				MarkdownDescription: "Which environments of the project the policy applies to; null `match_labels` selects every environment.",
				Computed:            true,
				Attributes:          computedSelectorAttributes("an environment", "every environment of the project"),
			},
			"policy_types": schema.SetAttribute{
				MarkdownDescription: "The directions the policy allows traffic in: `ingress`, `egress` or both.",
				Computed:            true,
				ElementType:         types.StringType,
			},
			"ingress":    computedRulesAttribute(policyrules.Ingress),
			"egress":     computedRulesAttribute(policyrules.Egress),
			"created_at": computedString("When the policy was created (RFC 3339)."),
		},
	}
}

func (d *PolicyDataSource) ConfigValidators(context.Context) []datasource.ConfigValidator {
	return []datasource.ConfigValidator{
		datasourcevalidator.ExactlyOneOf(path.MatchRoot("id"), path.MatchRoot("name")),
		datasourcevalidator.RequiredTogether(path.MatchRoot("project_id"), path.MatchRoot("name")),
		datasourcevalidator.Conflicting(path.MatchRoot("id"), path.MatchRoot("project_id")),
	}
}

func (d *PolicyDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (d *PolicyDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var cfg policyModel
	if !prepare(ctx, d.client, &resp.Diagnostics, req.Config, &cfg) {
		return
	}
	if !projectSeen(ctx, d.client, &resp.Diagnostics, "read", "policy", cfg.ProjectID) {
		return
	}
	p := lookup(ctx, &resp.Diagnostics, "policy", cfg.ID, cfg.Name, client.ListOptions{ProjectID: cfg.ProjectID.ValueString()},
		d.client.Policies().Get, d.client.Policies().List, func(p *apiv1.Policy) string { return p.Name })
	if p == nil {
		return
	}
	cfg.fromAPI(p)
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}

// computedRulesAttribute is the data source schema of the ingress or
// egress rules, of the same type as the resource's.
func computedRulesAttribute(dir policyrules.Direction) schema.SetNestedAttribute {
	return schema.SetNestedAttribute{
		MarkdownDescription: fmt.Sprintf("The %s rules. Null when there are none.", dir.Name),
		Computed:            true,
		NestedObject: schema.NestedAttributeObject{
			Attributes: map[string]schema.Attribute{
				dir.PeersAttr: schema.SetNestedAttribute{
					MarkdownDescription: "The peers; null means any peer.",
					Computed:            true,
					NestedObject:        schema.NestedAttributeObject{Attributes: computedPeerAttributes()},
				},
				policyrules.AttrPorts: schema.SetNestedAttribute{
					MarkdownDescription: "The ports; null means every port.",
					Computed:            true,
					NestedObject:        schema.NestedAttributeObject{Attributes: computedPortAttributes()},
				},
			},
		},
	}
}

func computedPeerAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		policyrules.AttrCIDR: computedString("An IPv4 or IPv6 prefix; null for an environment selector or fqdn peer."),
		policyrules.AttrFQDN: computedString("A host name or `*.` pattern (egress only); null for a CIDR or environment selector peer."),
		policyrules.AttrExcept: schema.SetAttribute{
			MarkdownDescription: "Prefixes carved out of `cidr`.",
			Computed:            true,
			ElementType:         types.StringType,
		},
		policyrules.AttrEnvironmentSelector: schema.SingleNestedAttribute{
			MarkdownDescription: "Environments by labels, of the policy's project or of those `project_selector` picks; null for a CIDR or fqdn peer.",
			Computed:            true,
			Attributes:          computedSelectorAttributes("an environment", "every environment"),
		},
		policyrules.AttrProjectSelector: schema.SingleNestedAttribute{
			MarkdownDescription: "Projects by labels (Kubernetes' namespaceSelector); null when the peer stays in the policy's project.",
			Computed:            true,
			Attributes:          computedSelectorAttributes("a project", "every project"),
		},
	}
}

func computedPortAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		policyrules.AttrProtocol: schema.StringAttribute{MarkdownDescription: "`tcp`, `udp`, `sctp` or `icmp`.", Computed: true},
		policyrules.AttrPort:     schema.Int64Attribute{MarkdownDescription: "The port, or the first of a range; null for every port.", Computed: true},
		policyrules.AttrEndPort:  schema.Int64Attribute{MarkdownDescription: "The last port of the range (inclusive).", Computed: true},
		policyrules.AttrPortName: computedString("A port name, resolved against the destination's `workload.ports`; null for a numbered port."),
	}
}

// computedSelectorAttributes are a selector's attributes, read-only.
func computedSelectorAttributes(what, all string) map[string]schema.Attribute {
	return map[string]schema.Attribute{
		policyrules.AttrMatchLabels: computedStringMap(fmt.Sprintf("Labels %s must all carry; with no match_expressions either, null selects %s.", what, all)),
		policyrules.AttrMatchExpressions: computedObjects(fmt.Sprintf("Requirements %s must all meet (In, NotIn, Exists, DoesNotExist).", what), map[string]schema.Attribute{
			policyrules.AttrKey:      computedString("The label key."),
			policyrules.AttrOperator: computedString("`In`, `NotIn`, `Exists` or `DoesNotExist`."),
			policyrules.AttrValues: schema.SetAttribute{
				MarkdownDescription: "The values, for `In` and `NotIn`.",
				Computed:            true,
				ElementType:         types.StringType,
			},
		}),
	}
}
