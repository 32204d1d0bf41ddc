package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ datasource.DataSource              = &EnvironmentsDataSource{}
	_ datasource.DataSourceWithConfigure = &EnvironmentsDataSource{}
)

// NewEnvironmentsDataSource returns the isolation_environments data source.
func NewEnvironmentsDataSource() datasource.DataSource { return &EnvironmentsDataSource{} }

// EnvironmentsDataSource lists the environments of a project, filtered by labels.
type EnvironmentsDataSource struct {
	client *providerClient
}

// environmentsDataSourceModel is the isolation_environments data source.
type environmentsDataSourceModel struct {
	ProjectID    types.String `tfsdk:"project_id"`
	Labels       types.Map    `tfsdk:"labels"`
	State        types.String `tfsdk:"state"`
	IDs          types.List   `tfsdk:"ids"`
	Environments types.List   `tfsdk:"environments"`
}

func (d *EnvironmentsDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_environments"
}

func (d *EnvironmentsDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Lists the environments of a project, optionally only those carrying every given label, or in one state.",
		Attributes: map[string]schema.Attribute{
			"project_id": schema.StringAttribute{
				MarkdownDescription: "ID of the project whose environments to list.",
				Required:            true,
				Validators:          []validator.String{validators.ID()},
			},
			"labels": schema.MapAttribute{
				MarkdownDescription: "Only environments carrying every one of these labels (as a policy's `match_labels` selects them).",
				ElementType:         types.StringType,
				Optional:            true,
				Validators:          []validator.Map{validators.Labels()},
			},
			"state": schema.StringAttribute{
				MarkdownDescription: "Only environments in this state.",
				Optional:            true,
				Validators:          []validator.String{validators.State()},
			},
			"ids":          computedStringList("IDs of the matching environments, in the server's order."),
			"environments": computedObjects("The matching environments, in the server's order.", environmentDataSourceAttributes()),
		},
	}
}

func (d *EnvironmentsDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (d *EnvironmentsDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var cfg environmentsDataSourceModel
	if !prepare(ctx, d.client, &resp.Diagnostics, req.Config, &cfg) {
		return
	}
	if !projectSeen(ctx, d.client, &resp.Diagnostics, "list", "environments", cfg.ProjectID) {
		return
	}
	opts := client.ListOptions{
		ProjectID: cfg.ProjectID.ValueString(),
		Labels:    labelsFromValue(ctx, cfg.Labels, &resp.Diagnostics),
		State:     cfg.State.ValueString(),
	}
	envs, err := d.client.Environments().List(ctx, opts)
	if err != nil {
		addAPIError(&resp.Diagnostics, "list", "environments", opts.ProjectID, err)
		return
	}
	cfg.fromAPI(ctx, envs, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}

// fromAPI sets the lists to the environments the server listed.
func (m *environmentsDataSourceModel) fromAPI(ctx context.Context, envs []apiv1.Environment, diags *diag.Diagnostics) {
	m.IDs, m.Environments = listsFrom(ctx, m.IDs, m.Environments, envs, func(e *apiv1.Environment) (string, environmentModel) {
		var m environmentModel
		m.fromAPI(e)
		return e.ID, m
	}, diags)
}
