package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
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

// projectDataSourceModel is the resource's model and the project's usage.
type projectDataSourceModel struct {
	projectModel
	EnvironmentCount types.Int64 `tfsdk:"environment_count"`
}

func (d *ProjectDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_project"
}

func (d *ProjectDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads a project, by `id` or by `name`.",
		Attributes: map[string]schema.Attribute{
			"id":                lookupAttribute("Project ID. Set exactly one of `id` and `name`.", validators.ID()),
			"name":              lookupAttribute("Project name. Set exactly one of `id` and `name`.", validators.Name()),
			"description":       computedString("Free-text description."),
			"labels":            computedStringMap("Labels of the project."),
			"created_at":        computedString("When the project was created (RFC 3339)."),
			"environment_quota": computedInt64("The most environments the project may hold, `0` for no limit."),
			"environment_count": computedInt64("How many environments the project holds now, those being deleted included: what `environment_quota` limits."),
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
	var cfg projectDataSourceModel
	if !prepare(ctx, d.client, &resp.Diagnostics, req.Config, &cfg) {
		return
	}
	p := lookup(ctx, &resp.Diagnostics, "project", cfg.ID, cfg.Name, client.ListOptions{},
		d.client.Projects().Get, d.client.Projects().List, func(p *apiv1.Project) string { return p.Name })
	if p == nil {
		return
	}
	cfg.fromAPI(p)
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}

// fromAPI sets the model to the project and its usage.
func (m *projectDataSourceModel) fromAPI(p *apiv1.Project) {
	m.projectModel.fromAPI(p)
	m.EnvironmentCount = types.Int64Value(p.Usage.Environments)
}
