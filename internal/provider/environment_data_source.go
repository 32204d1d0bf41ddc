package provider

import (
	"context"
	"maps"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"

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

// EnvironmentDataSource reads one environment, by id or by project and
// name. Its model is the resource's environmentModel.
type EnvironmentDataSource struct {
	client *providerClient
}

func (d *EnvironmentDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_environment"
}

func (d *EnvironmentDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := environmentDataSourceAttributes()
	attrs["id"] = lookupAttribute("Environment ID. Set either `id`, or `project_id` and `name`.", validators.ID())
	attrs["project_id"] = lookupAttribute("ID of the environment's project; with `name`, finds the environment by name.", validators.ID())
	attrs["name"] = lookupAttribute("Environment name, unique within its project.", validators.Name())
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
	var cfg environmentModel
	if !prepare(ctx, d.client, &resp.Diagnostics, req.Config, &cfg) {
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
	attrs := map[string]schema.Attribute{
		"id":          computedString("Environment ID."),
		"project_id":  computedString("ID of the environment's project."),
		"name":        computedString("Environment name."),
		"description": computedString("Free-text description."),
		"labels":      computedStringMap("Labels of the environment."),
		"resources": schema.SingleNestedAttribute{
			MarkdownDescription: "Compute allowances.",
			Computed:            true,
			Attributes: map[string]schema.Attribute{
				"cpu_millis":    computedInt64("CPU in thousandths of a core."),
				"memory_mb":     computedInt64("Memory in MiB."),
				"disk_gb":       computedInt64("Disk in GiB."),
				"max_processes": computedInt64("Processes and threads the workload may have at once."),
			},
		},
		"ttl_seconds":   computedInt64("Time to live in seconds, or null without a TTL."),
		"state":         computedString("Lifecycle state: pending, provisioning, ready, updating, failed, deleting or expired."),
		"state_message": computedString("The server's explanation of the state."),
		"address":       computedString("The environment's IP address."),
		"enforced":      computedBool("Whether the environment's current network rules are enforced."),
		"expires_at":    computedString("When the TTL expires (RFC 3339), or null without a TTL."),
		"created_at":    computedString("When the environment was created (RFC 3339)."),
	}
	maps.Copy(attrs, workloadDataSourceAttributes())
	return attrs
}
