package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ datasource.DataSource                     = &ProjectDataSource{}
	_ datasource.DataSourceWithConfigure        = &ProjectDataSource{}
	_ datasource.DataSourceWithConfigValidators = &ProjectDataSource{}
)

// NewProjectDataSource returns the isolation_project data source.
func NewProjectDataSource() datasource.DataSource { return &ProjectDataSource{} }

// ProjectDataSource reads one project, by id or by name.
type ProjectDataSource struct {
	client *providerClient
}

func (d *ProjectDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_project"
}

func (d *ProjectDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads a project, by `id` or by `name`.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "Project ID. Set exactly one of `id` and `name`.",
				Optional:            true,
				Computed:            true,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "Project name. Set exactly one of `id` and `name`.",
				Optional:            true,
				Computed:            true,
				Validators:          []validator.String{validators.Name()},
			},
			"description": schema.StringAttribute{MarkdownDescription: "Free-text description.", Computed: true},
			"labels":      schema.MapAttribute{MarkdownDescription: "Labels of the project.", ElementType: types.StringType, Computed: true},
			"created_at":  schema.StringAttribute{MarkdownDescription: "When the project was created (RFC 3339).", Computed: true},
			"environment_quota": schema.Int64Attribute{
				MarkdownDescription: "The most environments the project may hold, `0` for no limit.", Computed: true,
			},
			"environment_count": schema.Int64Attribute{
				MarkdownDescription: "How many environments the project holds now, those being deleted included: what `environment_quota` limits.", Computed: true,
			},
		},
	}
}

func (d *ProjectDataSource) ConfigValidators(context.Context) []datasource.ConfigValidator {
	return []datasource.ConfigValidator{
		datasourcevalidator.ExactlyOneOf(path.MatchRoot("id"), path.MatchRoot("name")),
	}
}

func (d *ProjectDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (d *ProjectDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	var cfg projectDataModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	p := lookup(ctx, &resp.Diagnostics, "project", cfg.ID, cfg.Name, client.ListOptions{},
		d.client.Projects().Get, d.client.Projects().List, func(p *apiv1.Project) string { return p.Name })
	if p == nil {
		return
	}
	cfg.fromAPI(p)
	cfg.EnvironmentCount = types.Int64Value(p.Usage.Environments)
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}

// projectDataModel is the resource's model and the project's usage.
type projectDataModel struct {
	projectModel
	EnvironmentCount types.Int64 `tfsdk:"environment_count"`
}
