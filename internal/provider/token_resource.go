package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ resource.Resource                   = &TokenResource{}
	_ resource.ResourceWithConfigure      = &TokenResource{}
	_ resource.ResourceWithImportState    = &TokenResource{}
	_ resource.ResourceWithValidateConfig = &TokenResource{}
)

// NewTokenResource returns the isolation_token resource.
func NewTokenResource() resource.Resource { return &TokenResource{} }

// TokenResource manages an API token.
type TokenResource struct {
	client *providerClient
}

// tokenModel is a token as the server shows it, as the resource and the
// isolation_tokens data source both hold it.
type tokenModel struct {
	ID        types.String `tfsdk:"id"`
	Name      types.String `tfsdk:"name"`
	Role      types.String `tfsdk:"role"`
	ProjectID types.String `tfsdk:"project_id"`
	Developer types.Bool   `tfsdk:"developer"`
	ExpiresAt types.String `tfsdk:"expires_at"`
	CreatedAt types.String `tfsdk:"created_at"`
}

// tokenResourceModel is isolation_token's state: the token and the secret
// only its create answer carried.
type tokenResourceModel struct {
	tokenModel
	Secret types.String `tfsdk:"secret"`
}

func (r *TokenResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_token"
}

func (r *TokenResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		Version: 0,
		MarkdownDescription: "An API token for isolationd, with a role: `admin` (everything, exec into environments included), " +
			"`auditor` (reads everything, including the audit log; changes nothing), or, for one project, `editor` (reads the project, " +
			"creates, changes and deletes its environments and policies), `developer` (reads the project's environments and execs " +
			"into them, and nothing else) or `viewer` (reads its environments, policies, effective policies and checks). " +
			"`developer = true` lets an `editor`, `viewer` or `auditor` token exec in its scope too. " +
			"Only an admin token can manage tokens, so the provider must be configured with one.\n\n" +
			"Tokens cannot be changed: a change to any argument replaces the token, which revokes the old secret. " +
			"Destroying the resource revokes the token; the server refuses it from the next request on.\n\n" +
			"~> **The secret is stored in the Terraform state.** The server shows it only once, when the token is created, " +
			"so the provider keeps it in state, as the token resources of other providers do (`tfe_team_token`, " +
			"`vault_token`, `github_actions_secret`). Anyone who can read the state can use the token: keep the state in a " +
			"backend that encrypts it at rest and restricts who may read it, and prefer short-lived tokens (`expires_at`). " +
			"An imported token has no secret in state.",
		Attributes: map[string]schema.Attribute{
			"id":   idAttribute("Token ID, assigned by the server."),
			"name": nameAttribute("Token name, a DNS label (1-63 lowercase letters, digits or `-`), recorded as the actor in audit events. Changing it replaces the token.", replace...),
			"role": schema.StringAttribute{
				MarkdownDescription: "The token's role: `admin`, `auditor`, `editor`, `developer` or `viewer`. `editor`, `developer` and `viewer` need `project_id`; `admin` and `auditor` span every project and take none. Changing it replaces the token.",
				Required:            true,
				Validators:          []validator.String{validators.Role()},
				PlanModifiers:       replace,
			},
			"project_id": schema.StringAttribute{
				MarkdownDescription: "ID of the project an `editor`, `developer` or `viewer` token is for. The token sees nothing of other projects (they answer 404). Changing it replaces the token.",
				Optional:            true,
				Validators:          []validator.String{validators.ID()},
				PlanModifiers:       replace,
			},
			"developer": schema.BoolAttribute{
				MarkdownDescription: "Also grant exec (commands and shells in environments, and their session credentials, " +
					"`isolation_environment_session`) in the token's scope: its project for an `editor` or `viewer` token, every " +
					"project for an `auditor` token. `admin` and `developer` tokens may exec already and refuse it. Defaults to " +
					"`false`. Changing it replaces the token.",
				Optional:      true,
				Computed:      true,
				Default:       booldefault.StaticBool(false),
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.RequiresReplace()},
			},
			"expires_at": schema.StringAttribute{
				MarkdownDescription: "When the token stops working (RFC 3339, such as `2030-01-02T15:04:05Z`); it must be in the future when the token is created. Without it the token works until it is destroyed. Changing it replaces the token (a rotation).",
				Optional:            true,
				Validators:          []validator.String{validators.APIString(expiresAtRule, rfc3339)},
				PlanModifiers:       replace,
			},
			"created_at": createdAtAttribute("token"),
			"secret": schema.StringAttribute{
				MarkdownDescription: "The token's secret, to send as `Authorization: Bearer <secret>` (or as the provider's `token`). Known only to the Terraform run that created the token, and kept in state after; null for an imported token.",
				Computed:            true,
				Sensitive:           true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
	}
}

// ValidateConfig checks at plan time what the server would refuse: a
// project_id that a role needs or forbids, and a developer grant to a
// role that may exec already.
func (r *TokenResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg tokenResourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() || cfg.Role.IsUnknown() || cfg.Role.IsNull() {
		return
	}
	in := apiv1.TokenCreate{Name: "x", Role: cfg.Role.ValueString(), ProjectID: cfg.ProjectID.ValueString(), Developer: cfg.Developer.ValueBool()}
	known := map[string]bool{"project_id": !cfg.ProjectID.IsUnknown(), "developer": !cfg.Developer.IsUnknown()}
	for _, e := range in.Validate() {
		if known[e.Field] {
			resp.Diagnostics.AddAttributeError(path.Root(e.Field), "Invalid "+e.Field, e.Field+" "+e.Message+".")
		}
	}
}

func (r *TokenResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

func (r *TokenResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan tokenResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.Plan, &plan) {
		return
	}
	body := plan.toCreate(&resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	tokens := r.client.Tokens()
	t := createOrRecover(ctx, r.client.Client, &resp.Diagnostics, "token", body.Name,
		func(ctx context.Context) (*apiv1.TokenCreated, error) { return tokens.Create(ctx, body) }, tokenCreated(tokens.Get))
	if t == nil {
		return
	}
	if t.Secret == "" {
		// Recovered, but the secret was only ever in the lost answer: a
		// token nobody can use must not stay valid.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoveryTimeout)
		defer cancel()
		if err := tokens.Delete(rctx, t.ID, ""); err != nil && !client.IsNotFound(err) {
			resp.Diagnostics.AddError("Unable to create token",
				fmt.Sprintf("Token %s was created but its secret was lost in transit, and revoking it failed: %s\n\nRevoke it by hand, then apply again.", t.ID, err))
			return
		}
		resp.Diagnostics.AddError("Unable to create token",
			fmt.Sprintf("Token %s was created but its secret was lost in transit, so it was revoked. Apply again to create another.", t.ID))
		return
	}
	plan.fromAPI(&t.Token)
	plan.Secret = types.StringValue(t.Secret)
	saveWithETag(ctx, &resp.State, resp.Private, plan, "", &resp.Diagnostics)
}

func (r *TokenResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state tokenResourceModel
	// With settings unknown until apply, the state stays as it is.
	if r.client == nil || !readInto(ctx, req.State, &state, &resp.Diagnostics) {
		return
	}
	t, err := r.client.Tokens().Get(ctx, state.ID.ValueString())
	// Revoked or deleted outside Terraform: the secret is dead too.
	if readFailed(ctx, resp, r.client, "token", state.ID.ValueString(), state.ProjectID.ValueString(), err, false) {
		return
	}
	state.fromAPI(t)
	saveWithETag(ctx, &resp.State, resp.Private, state, "", &resp.Diagnostics)
}

// Update is never called with a change to make: every argument replaces
// the token. It keeps the planned state (the computed values from state).
func (r *TokenResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan tokenResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	saveWithETag(ctx, &resp.State, resp.Private, plan, "", &resp.Diagnostics)
}

func (r *TokenResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state tokenResourceModel
	if !prepare(ctx, r.client, &resp.Diagnostics, req.State, &state) {
		return
	}
	// Unconditional, as for every resource: destroying means "whatever it
	// is now".
	err := r.client.Tokens().Delete(ctx, state.ID.ValueString(), "")
	if err != nil && !client.IsNotFound(err) {
		addAPIError(&resp.Diagnostics, "revoke", "token", state.ID.ValueString(), err)
	}
}

// ImportState takes a token id. The secret cannot be imported: the server
// does not have it.
func (r *TokenResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// fromAPI sets what the server knows of a token; the secret is left as it
// is (the server never shows it again). An expires_at the user wrote in
// another offset or precision is kept when it is the same instant.
func (m *tokenModel) fromAPI(t *apiv1.Token) {
	m.ID = types.StringValue(t.ID)
	m.Name = types.StringValue(t.Name)
	m.Role = types.StringValue(t.Role)
	m.ProjectID = stringOrNull(t.ProjectID)
	m.Developer = types.BoolValue(t.Developer)
	m.ExpiresAt = sameInstantOr(m.ExpiresAt, t.ExpiresAt)
	m.CreatedAt = timeValue(&t.CreatedAt)
}

// toCreate is the POST of the planned token.
func (m tokenModel) toCreate(diags *diag.Diagnostics) apiv1.TokenCreate {
	body := apiv1.TokenCreate{Name: m.Name.ValueString(), Role: m.Role.ValueString(), ProjectID: m.ProjectID.ValueString(), Developer: m.Developer.ValueBool()}
	if m.ExpiresAt.IsNull() {
		return body
	}
	exp, err := time.Parse(time.RFC3339, m.ExpiresAt.ValueString())
	if err != nil {
		diags.AddAttributeError(path.Root("expires_at"), "Unable to create token", "expires_at "+expiresAtRule+".")
		return body
	}
	body.ExpiresAt = &exp
	return body
}

// sameInstantOr keeps cur when it names the instant t, else renders t.
func sameInstantOr(cur types.String, t *time.Time) types.String {
	if t == nil {
		return types.StringNull()
	}
	if parsed, err := time.Parse(time.RFC3339, cur.ValueString()); err == nil && parsed.Equal(*t) {
		return cur
	}
	return types.StringValue(t.UTC().Format(time.RFC3339Nano))
}

// expiresAtRule is what expires_at must be.
const expiresAtRule = "must be an RFC 3339 time such as 2030-01-02T15:04:05Z"

// rfc3339 is the expires_at rule; that it lies in the future is the
// server's to say at create time, so a config stays valid after it passed.
func rfc3339(field, v string) []apiv1.FieldError {
	if _, err := time.Parse(time.RFC3339, v); err != nil {
		return []apiv1.FieldError{{Field: field, Message: expiresAtRule}}
	}
	return nil
}
