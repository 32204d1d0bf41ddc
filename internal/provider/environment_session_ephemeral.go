package provider

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

var (
	_ ephemeral.EphemeralResource              = &EnvironmentSessionEphemeral{}
	_ ephemeral.EphemeralResourceWithConfigure = &EnvironmentSessionEphemeral{}
	_ ephemeral.EphemeralResourceWithClose     = &EnvironmentSessionEphemeral{}
)

// NewEnvironmentSessionEphemeral returns the isolation_environment_session
// ephemeral resource.
func NewEnvironmentSessionEphemeral() ephemeral.EphemeralResource {
	return &EnvironmentSessionEphemeral{}
}

// EnvironmentSessionEphemeral opens a session token of one environment
// for the length of a Terraform run: minted when Terraform opens it,
// revoked when Terraform closes it, never in the state or the plan.
type EnvironmentSessionEphemeral struct {
	client *providerClient
}

// environmentSessionModel is the ephemeral resource's configuration and
// result.
type environmentSessionModel struct {
	EnvironmentID types.String `tfsdk:"environment_id"`
	TTL           types.String `tfsdk:"ttl"`
	ID            types.String `tfsdk:"id"`
	Token         types.String `tfsdk:"token"`
	ExpiresAt     types.String `tfsdk:"expires_at"`
}

// defaultSessionTTL is ttl when the configuration sets none: the
// server's default (apiv1.DefaultSessionTTL), as a user would write it.
const defaultSessionTTL = "15m"

// sessionPrivateKey is where Open leaves Close what it revokes.
const sessionPrivateKey = "session"

// sessionPrivate is what Close needs: the token and its environment.
type sessionPrivate struct {
	ID            string `json:"id"`
	EnvironmentID string `json:"environment_id"`
}

func (e *EnvironmentSessionEphemeral) Metadata(_ context.Context, req ephemeral.MetadataRequest, resp *ephemeral.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_environment_session"
}

func (e *EnvironmentSessionEphemeral) Schema(_ context.Context, _ ephemeral.SchemaRequest, resp *ephemeral.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A short-lived credential scoped to one environment: a session token that may exec into that " +
			"environment (commands and shells, with `isolationd env exec` and `isolationd env shell` or the API's " +
			"`/v1/environments/{id}/exec`) and do nothing else. Terraform opens it when it needs its value, and closes it when the " +
			"run is done, which revokes the token at once; it is never written to the state or to a saved plan. Feed it to a " +
			"provisioner, or to another provider's ephemeral or write-only input.\n\n" +
			"The provider's token must be allowed to exec into the environment: an `admin` or `developer` token, or an `editor`, " +
			"`viewer` or `auditor` token made with `developer = true`. The session token expires after `ttl`, or with the " +
			"provider's token if that expires first, and is revoked with the provider's token and with its environment. " +
			"Needs Terraform 1.10 or later, or OpenTofu 1.11 or later.",
		Attributes: map[string]schema.Attribute{
			"environment_id": schema.StringAttribute{
				MarkdownDescription: "ID of the environment the credential execs into.",
				Required:            true,
				Validators:          []validator.String{validators.ID()},
			},
			"ttl": schema.StringAttribute{
				MarkdownDescription: "How long the credential lives at most, a duration from `1m` to `24h` such as `30m` or `1h30m`. " +
					"Defaults to `15m`. Closing it at the end of the run revokes it sooner.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{validators.APIString("must be a duration from 1m to 24h, such as 15m", apiv1.ValidateSessionTTL)},
			},
			"id": schema.StringAttribute{
				MarkdownDescription: "ID of the session token (role `session`), as the audit trail names the actor of its exec sessions.",
				Computed:            true,
			},
			"token": schema.StringAttribute{
				MarkdownDescription: "The session token's secret, to send as `Authorization: Bearer <token>` or to give `isolationd` " +
					"as `ISOLATION_TOKEN`.",
				Computed:  true,
				Sensitive: true,
			},
			"expires_at": schema.StringAttribute{
				MarkdownDescription: "When the credential stops working unless it is closed first (RFC 3339).",
				Computed:            true,
			},
		},
	}
}

func (e *EnvironmentSessionEphemeral) Configure(_ context.Context, req ephemeral.ConfigureRequest, resp *ephemeral.ConfigureResponse) {
	e.client = clientFromProviderData(req.ProviderData, &resp.Diagnostics)
}

// Open mints the session token (POST /v1/environments/{id}/session-tokens).
func (e *EnvironmentSessionEphemeral) Open(ctx context.Context, req ephemeral.OpenRequest, resp *ephemeral.OpenResponse) {
	var m environmentSessionModel
	if !prepare(ctx, e.client, &resp.Diagnostics, req.Config, &m) {
		return
	}
	if m.TTL.IsNull() {
		m.TTL = types.StringValue(defaultSessionTTL)
	}
	envID := m.EnvironmentID.ValueString()
	s, err := e.client.SessionTokens(envID).Create(ctx, m.toCreate())
	if err != nil {
		addAPIError(&resp.Diagnostics, "open", "environment session", envID, err)
		return
	}
	private, err := json.Marshal(sessionPrivate{ID: s.ID, EnvironmentID: envID})
	if err != nil {
		resp.Diagnostics.AddError("Unable to open environment session", fmt.Sprintf("Session token %s was minted, but could not be recorded for Close: %s. It expires at %s.", s.ID, err, timeValue(s.ExpiresAt).ValueString()))
		return
	}
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, sessionPrivateKey, private)...)
	m.fromAPI(s)
	resp.Diagnostics.Append(resp.Result.Set(ctx, m)...)
}

// Close revokes the session token; one revoked already (with its
// environment, or by hand) is fine.
func (e *EnvironmentSessionEphemeral) Close(ctx context.Context, req ephemeral.CloseRequest, resp *ephemeral.CloseResponse) {
	raw, diags := req.Private.GetKey(ctx, sessionPrivateKey)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() || raw == nil {
		return
	}
	var p sessionPrivate
	if err := json.Unmarshal(raw, &p); err != nil {
		resp.Diagnostics.AddError("Unable to close environment session", "The session token's record from Open is unreadable: "+err.Error()+". It expires by itself.")
		return
	}
	if !requireClient(e.client, &resp.Diagnostics) {
		return
	}
	if err := e.client.SessionTokens(p.EnvironmentID).Delete(ctx, p.ID); err != nil && !client.IsNotFound(err) {
		addAPIError(&resp.Diagnostics, "close", "environment session", p.ID, err)
	}
}

// toCreate is the POST of the configured session.
func (m environmentSessionModel) toCreate() apiv1.SessionTokenCreate {
	return apiv1.SessionTokenCreate{TTL: m.TTL.ValueString()}
}

// fromAPI sets what the server made of the session token.
func (m *environmentSessionModel) fromAPI(s *apiv1.TokenCreated) {
	m.ID = types.StringValue(s.ID)
	m.Token = types.StringValue(s.Secret)
	m.ExpiresAt = timeValue(s.ExpiresAt)
}
