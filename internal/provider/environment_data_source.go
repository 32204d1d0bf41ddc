package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
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
	_ datasource.DataSource                     = &EnvironmentDataSource{}
	_ datasource.DataSourceWithConfigure        = &EnvironmentDataSource{}
	_ datasource.DataSourceWithConfigValidators = &EnvironmentDataSource{}
)

// NewEnvironmentDataSource returns the isolation_environment data source.
func NewEnvironmentDataSource() datasource.DataSource { return &EnvironmentDataSource{} }

// EnvironmentDataSource reads one environment, by id or by project and name.
type EnvironmentDataSource struct {
	client *providerClient
}

func (d *EnvironmentDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_environment"
}

func (d *EnvironmentDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := environmentDataSourceAttributes()
	attrs["id"] = schema.StringAttribute{
		MarkdownDescription: "Environment ID. Set either `id`, or `project_id` and `name`.",
		Optional:            true,
		Computed:            true,
	}
	attrs["project_id"] = schema.StringAttribute{
		MarkdownDescription: "ID of the environment's project; with `name`, finds the environment by name.",
		Optional:            true,
		Computed:            true,
	}
	attrs["name"] = schema.StringAttribute{
		MarkdownDescription: "Environment name, unique within its project.",
		Optional:            true,
		Computed:            true,
		Validators:          []validator.String{validators.Name()},
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads an environment, by `id` or by `project_id` and `name`.",
		Attributes:          attrs,
	}
}

func (d *EnvironmentDataSource) ConfigValidators(context.Context) []datasource.ConfigValidator {
	return []datasource.ConfigValidator{
		datasourcevalidator.ExactlyOneOf(path.MatchRoot("id"), path.MatchRoot("name")),
		datasourcevalidator.RequiredTogether(path.MatchRoot("project_id"), path.MatchRoot("name")),
	}
}

func (d *EnvironmentDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (d *EnvironmentDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	var cfg environmentModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !projectSeen(ctx, d.client, &resp.Diagnostics, "read", "environment", cfg.ProjectID) {
		return
	}
	env := lookup(ctx, &resp.Diagnostics, "environment", cfg.ID, cfg.Name, client.ListOptions{ProjectID: cfg.ProjectID.ValueString()},
		d.client.Environments().Get, d.client.Environments().List, func(e *apiv1.Environment) string { return e.Name })
	if env == nil {
		return
	}
	cfg.fromAPI(env)
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}

// environmentDataSourceAttributes are the computed attributes of an
// environment as data sources show it, for isolation_environment and for
// each element of isolation_environments.
func environmentDataSourceAttributes() map[string]schema.Attribute {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{MarkdownDescription: desc, Computed: true}
	}
	num := func(desc string) schema.Int64Attribute {
		return schema.Int64Attribute{MarkdownDescription: desc, Computed: true}
	}
	return map[string]schema.Attribute{
		"id":          str("Environment ID."),
		"project_id":  str("ID of the environment's project."),
		"name":        str("Environment name."),
		"description": str("Free-text description."),
		"labels":      schema.MapAttribute{MarkdownDescription: "Labels of the environment.", ElementType: types.StringType, Computed: true},
		"resources": schema.SingleNestedAttribute{
			MarkdownDescription: "Compute allowances.",
			Computed:            true,
			Attributes: map[string]schema.Attribute{
				"cpu_millis": num("CPU in thousandths of a core."),
				"memory_mb":  num("Memory in MiB."),
				"disk_gb":    num("Disk in GiB."),
			},
		},
		"ttl_seconds":   num("Time to live in seconds, or null without a TTL."),
		"state":         str("Lifecycle state: pending, provisioning, ready, updating, failed, deleting or expired."),
		"state_message": str("The server's explanation of the state."),
		"address":       str("The environment's IP address."),
		"enforced":      schema.BoolAttribute{MarkdownDescription: "Whether the environment's current network rules are enforced.", Computed: true},
		"expires_at":    str("When the TTL expires (RFC 3339), or null without a TTL."),
		"created_at":    str("When the environment was created (RFC 3339)."),
	}
}

// environmentAttrTypes is the object type of environmentModel, for lists of environments.
var environmentAttrTypes = map[string]attr.Type{
	"id":            types.StringType,
	"project_id":    types.StringType,
	"name":          types.StringType,
	"description":   types.StringType,
	"labels":        types.MapType{ElemType: types.StringType},
	"resources":     types.ObjectType{AttrTypes: resourcesAttrTypes},
	"ttl_seconds":   types.Int64Type,
	"state":         types.StringType,
	"state_message": types.StringType,
	"address":       types.StringType,
	"enforced":      types.BoolType,
	"expires_at":    types.StringType,
	"created_at":    types.StringType,
}
