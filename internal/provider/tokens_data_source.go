package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

var (
	_ datasource.DataSource              = &TokensDataSource{}
	_ datasource.DataSourceWithConfigure = &TokensDataSource{}
)

// NewTokensDataSource returns the isolation_tokens data source.
func NewTokensDataSource() datasource.DataSource { return &TokensDataSource{} }

// TokensDataSource lists API tokens, never their secrets.
type TokensDataSource struct {
	client *providerClient
}

// tokensDataSourceModel is the isolation_tokens data source.
type tokensDataSourceModel struct {
	ProjectID types.String `tfsdk:"project_id"`
	IDs       types.List   `tfsdk:"ids"`
	Tokens    types.List   `tfsdk:"tokens"`
}

// tokenListItem is one listed token: the resource's model without the secret.
type tokenListItem struct {
	ID        types.String `tfsdk:"id"`
	Name      types.String `tfsdk:"name"`
	Role      types.String `tfsdk:"role"`
	ProjectID types.String `tfsdk:"project_id"`
	ExpiresAt types.String `tfsdk:"expires_at"`
	CreatedAt types.String `tfsdk:"created_at"`
}

var tokenListItemTypes = map[string]attr.Type{
	"id": types.StringType, "name": types.StringType, "role": types.StringType,
	"project_id": types.StringType, "expires_at": types.StringType, "created_at": types.StringType,
}

func (d *TokensDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_tokens"
}

func (d *TokensDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{MarkdownDescription: desc, Computed: true}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Lists the API tokens that are not revoked, optionally only those of one project. " +
			"Secrets are never listed: the server keeps only their hashes. Needs an admin or auditor token.",
		Attributes: map[string]schema.Attribute{
			"project_id": schema.StringAttribute{
				MarkdownDescription: "Only the tokens of this project (its editors and viewers).",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"ids": schema.ListAttribute{
				MarkdownDescription: "IDs of the tokens, in the server's order.",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"tokens": schema.ListNestedAttribute{
				MarkdownDescription: "The tokens, in the server's order.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"id":         str("Token ID."),
					"name":       str("Token name."),
					"role":       str("Role: `admin`, `auditor`, `editor` or `viewer`."),
					"project_id": str("Project of an `editor` or `viewer` token; null for `admin` and `auditor`."),
					"expires_at": str("When the token stops working (RFC 3339); null when it does not expire."),
					"created_at": str("When the token was created (RFC 3339)."),
				}},
			},
		},
	}
}

func (d *TokensDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (d *TokensDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	var cfg tokensDataSourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !projectSeen(ctx, d.client, &resp.Diagnostics, "list", "tokens", cfg.ProjectID) {
		return
	}
	tokens, err := d.client.Tokens().List(ctx, client.ListOptions{ProjectID: cfg.ProjectID.ValueString()})
	if err != nil {
		addAPIError(&resp.Diagnostics, "list", "tokens", cfg.ProjectID.ValueString(), err)
		return
	}
	ids := make([]string, len(tokens))
	items := make([]tokenListItem, len(tokens))
	for i, t := range tokens {
		var m tokenModel
		m.fromAPI(&t)
		ids[i] = t.ID
		items[i] = tokenListItem{ID: m.ID, Name: m.Name, Role: m.Role, ProjectID: m.ProjectID, ExpiresAt: m.ExpiresAt, CreatedAt: m.CreatedAt}
	}
	cfg.IDs = listValue(ctx, types.StringType, ids, &resp.Diagnostics)
	cfg.Tokens = listValue(ctx, types.ObjectType{AttrTypes: tokenListItemTypes}, items, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}
