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
	_ datasource.DataSource              = &TokensDataSource{}
	_ datasource.DataSourceWithConfigure = &TokensDataSource{}
)

// NewTokensDataSource returns the isolation_tokens data source.
func NewTokensDataSource() datasource.DataSource { return &TokensDataSource{} }

// TokensDataSource lists API tokens, never their secrets.
type TokensDataSource struct {
	client *providerClient
}

// tokensDataSourceModel is the isolation_tokens data source; each listed
// token is a listedTokenModel.
type tokensDataSourceModel struct {
	ProjectID types.String `tfsdk:"project_id"`
	IDs       types.List   `tfsdk:"ids"`
	Tokens    types.List   `tfsdk:"tokens"`
}

// listedTokenModel is a listed token: the resource's model without the
// secret, and what only session tokens have.
type listedTokenModel struct {
	tokenModel
	EnvironmentID types.String `tfsdk:"environment_id"`
	ParentID      types.String `tfsdk:"parent_id"`
}

func (d *TokensDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_tokens"
}

func (d *TokensDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Lists the API tokens that are not revoked, optionally only those of one project, session tokens " +
			"(`isolation_environment_session`) included until they are revoked. " +
			"Secrets are never listed: the server keeps only their hashes. Needs an admin or auditor token.",
		Attributes: map[string]schema.Attribute{
			"project_id": schema.StringAttribute{
				MarkdownDescription: "Only the tokens of this project (its editors, developers and viewers, and the session tokens of its environments).",
				Optional:            true,
				Validators:          []validator.String{validators.ID()},
			},
			"ids": computedStringList("IDs of the tokens, in the server's order."),
			"tokens": computedObjects("The tokens, in the server's order.", map[string]schema.Attribute{
				"id":             computedString("Token ID."),
				"name":           computedString("Token name."),
				"role":           computedString("Role: `admin`, `auditor`, `editor`, `developer`, `viewer`, or `session` for a session token."),
				"project_id":     computedString("Project of an `editor`, `developer`, `viewer` or session token; null for `admin` and `auditor`."),
				"developer":      computedBool("Whether an `editor`, `viewer` or `auditor` token was also granted exec."),
				"environment_id": computedString("The one environment a session token may exec into; null for the other roles."),
				"parent_id":      computedString("The token that minted a session token (revoking it revokes the session token); null for the other roles."),
				"expires_at":     computedString("When the token stops working (RFC 3339); null when it does not expire."),
				"created_at":     computedString("When the token was created (RFC 3339)."),
			}),
		},
	}
}

func (d *TokensDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (d *TokensDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var cfg tokensDataSourceModel
	if !prepare(ctx, d.client, &resp.Diagnostics, req.Config, &cfg) {
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
	cfg.fromAPI(ctx, tokens, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}

// fromAPI sets the lists to the tokens the server listed.
func (m *tokensDataSourceModel) fromAPI(ctx context.Context, tokens []apiv1.Token, diags *diag.Diagnostics) {
	m.IDs, m.Tokens = listsFrom(ctx, m.IDs, m.Tokens, tokens, func(t *apiv1.Token) (string, listedTokenModel) {
		var m listedTokenModel
		m.fromAPI(t)
		m.EnvironmentID, m.ParentID = stringOrNull(t.EnvironmentID), stringOrNull(t.ParentID)
		return t.ID, m
	}, diags)
}
