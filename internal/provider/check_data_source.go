package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ datasource.DataSource                   = &CheckDataSource{}
	_ datasource.DataSourceWithConfigure      = &CheckDataSource{}
	_ datasource.DataSourceWithValidateConfig = &CheckDataSource{}
)

// NewCheckDataSource returns the isolation_check data source.
func NewCheckDataSource() datasource.DataSource { return &CheckDataSource{} }

// CheckDataSource asks the server whether an environment's enforced rules
// allow one packet, so that a configuration can assert what it expects
// of its policies (in a precondition, a postcondition or a check block).
type CheckDataSource struct {
	client *providerClient
}

// checkDataSourceModel is the isolation_check data source: the packet,
// then the answer.
type checkDataSourceModel struct {
	EnvironmentID types.String `tfsdk:"environment_id"`
	Direction     types.String `tfsdk:"direction"`
	Protocol      types.String `tfsdk:"protocol"`
	Address       types.String `tfsdk:"address"`
	Port          types.Int64  `tfsdk:"port"`
	Allowed       types.Bool   `tfsdk:"allowed"`
	PolicyID      types.String `tfsdk:"policy_id"`
	PolicyName    types.String `tfsdk:"policy_name"`
	RuleIndex     types.Int64  `tfsdk:"rule_index"`
	Reason        types.String `tfsdk:"reason"`
	Warnings      types.List   `tfsdk:"warnings"`
}

func (d *CheckDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_check"
}

func (d *CheckDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Asks whether an environment's enforced network rules allow one packet, and which policy rule allows it. " +
			"Use it to state what a configuration expects of its policies: in a `postcondition` (the apply fails when an expected " +
			"connection is denied), a `precondition`, or a `check` block (the plan and apply warn). Make it depend on the policies " +
			"it asks about (`depends_on`), so that it is read once they are applied: the policies' own apply returns once every " +
			"environment they select enforces them.",
		Attributes: map[string]schema.Attribute{
			"environment_id": schema.StringAttribute{
				MarkdownDescription: "The environment whose rules decide: the sender for `egress`, the receiver for `ingress`. It must be provisioned (state `ready`).",
				Required:            true,
				Validators:          []validator.String{validators.ID()},
			},
			"direction": schema.StringAttribute{
				MarkdownDescription: "`egress` (a packet the environment sends to `address`) or `ingress` (a packet it receives from `address`).",
				Required:            true,
			},
			"protocol": schema.StringAttribute{
				MarkdownDescription: "The packet's protocol, such as `tcp`, `udp` or `icmp`. Defaults to `tcp`.",
				Optional:            true,
			},
			"address": schema.StringAttribute{
				MarkdownDescription: "The other end: an IPv4 or IPv6 address (another environment's `address`, say) or, on `egress`, a host name, " +
					"which is allowed when the rules allow every address the environment has resolved it to.",
				Required: true,
			},
			"port": schema.Int64Attribute{
				MarkdownDescription: "The destination port, 1 to 65535; required for `tcp` and `udp`, absent for `icmp`.",
				Optional:            true,
			},
			"allowed":     computedBool("Whether the packet is allowed."),
			"policy_id":   computedString("The policy whose rule allows the packet; null when it is denied."),
			"policy_name": computedString("That policy's name; null when the packet is denied."),
			"rule_index":  computedInt64("The allowing rule's position in that policy's `ingress` or `egress` rules as the server stores them; null when the packet is denied."),
			"reason": computedString("Why the packet is allowed or denied, in a sentence, when the server says (null otherwise): " +
				"put it in the `error_message` of a condition on `allowed`."),
			"warnings": computedStringList("Warnings about an allowed packet: that it goes no further (no uplink), or that the rule " +
				"allows it through a CIDR that covers other projects' environments."),
		},
	}
}

func (d *CheckDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig refuses at plan time the packet the server would refuse,
// with the server's own rules (apiv1.CheckRequest.Validate), checking
// each field once what it depends on is known.
func (d *CheckDataSource) ValidateConfig(ctx context.Context, req datasource.ValidateConfigRequest, resp *datasource.ValidateConfigResponse) {
	var cfg checkDataSourceModel
	if !readInto(ctx, req.Config, &cfg, &resp.Diagnostics) {
		return
	}
	known := func(vs ...attr.Value) bool {
		for _, v := range vs {
			if v.IsUnknown() {
				return false
			}
		}
		return true
	}
	checked := map[string]bool{
		"direction": known(cfg.Direction),
		"address":   known(cfg.Direction, cfg.Address),
		"protocol":  known(cfg.Protocol),
		"port":      known(cfg.Protocol, cfg.Port),
	}
	for _, e := range cfg.toAPI().Validate() {
		if checked[e.Field] {
			resp.Diagnostics.AddAttributeError(path.Root(e.Field), "Invalid "+e.Field, e.Field+" "+e.Message+".")
		}
	}
}

func (d *CheckDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var cfg checkDataSourceModel
	if !prepare(ctx, d.client, &resp.Diagnostics, req.Config, &cfg) {
		return
	}
	id := cfg.EnvironmentID.ValueString()
	in := cfg.toAPI()
	res, err := d.client.Environments().Check(ctx, id, in)
	if err != nil {
		addAPIError(&resp.Diagnostics, "read", "check of environment", fmt.Sprintf("%s (%s %s %s port %d)", id, in.Direction, in.Protocol, in.Address, in.Port), err)
		return
	}
	cfg.fromAPI(ctx, res, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}

// toAPI is the check the configuration asks for; tcp when no protocol
// is given, as the server assumes.
func (m checkDataSourceModel) toAPI() apiv1.CheckRequest {
	in := apiv1.CheckRequest{
		Direction: m.Direction.ValueString(),
		Protocol:  m.Protocol.ValueString(),
		Address:   m.Address.ValueString(),
		Port:      int(m.Port.ValueInt64()),
	}
	if in.Protocol == "" {
		in.Protocol = apiv1.ProtocolTCP
	}
	return in
}

// fromAPI sets the answer attributes to the server's result.
func (m *checkDataSourceModel) fromAPI(ctx context.Context, res *apiv1.CheckResult, diags *diag.Diagnostics) {
	m.Allowed = types.BoolValue(res.Allowed)
	m.PolicyID, m.PolicyName, m.RuleIndex = types.StringNull(), types.StringNull(), types.Int64Null()
	if res.Matched != nil {
		m.PolicyID = types.StringValue(res.Matched.PolicyID)
		m.PolicyName = types.StringValue(res.Matched.PolicyName)
		m.RuleIndex = types.Int64Value(int64(res.Matched.RuleIndex))
	}
	m.Reason = types.StringNull()
	if res.Reason != "" {
		m.Reason = types.StringValue(res.Reason)
	}
	m.Warnings = listFrom(ctx, m.Warnings, append(make([]string, 0, len(res.Warnings)), res.Warnings...), diags)
}
