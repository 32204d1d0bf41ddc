// Package provider implements the isolation Terraform provider on
// terraform-plugin-framework. It reaches isolationd only through
// internal/client.
package provider

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

// maxMaxRetries bounds max_retries: beyond it, backoff would wait for hours.
const maxMaxRetries = 100

// Environment variables that supply provider settings absent from the configuration.
const (
	EnvEndpoint       = "ISOLATION_ENDPOINT"
	EnvToken          = "ISOLATION_TOKEN"
	EnvCACertPEM      = "ISOLATION_CA_CERT_PEM"
	EnvInsecure       = "ISOLATION_INSECURE"
	EnvMaxRetries     = "ISOLATION_MAX_RETRIES"
	EnvRequestTimeout = "ISOLATION_REQUEST_TIMEOUT"
)

var (
	_ provider.Provider                       = &IsolationProvider{}
	_ provider.ProviderWithEphemeralResources = &IsolationProvider{}
)

// New returns a constructor for the provider, as providerserver.Serve wants.
func New(version string) func() provider.Provider {
	return func() provider.Provider {
		return &IsolationProvider{version: version}
	}
}

// IsolationProvider is the isolation provider.
type IsolationProvider struct {
	// version is the provider's release ("dev" for local builds, "test" in
	// acceptance tests); it goes into the User-Agent.
	version string
	// simulateWarned holds the endpoints whose simulate driver this
	// provider has warned about, so that it warns once per server however
	// often it is configured: Terraform starts a process per provider
	// block and per walk and folds their identical warnings into one, but
	// a process serving many configurations (the acceptance tests' one
	// in-process provider) must not repeat itself either.
	simulateWarned onceSet
}

// onceSet tells the first time a key is seen, safely across goroutines.
type onceSet struct {
	mu   sync.Mutex
	seen map[string]bool
}

// first reports whether key is new, and records it.
func (o *onceSet) first(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen[key] {
		return false
	}
	if o.seen == nil {
		o.seen = map[string]bool{}
	}
	o.seen[key] = true
	return true
}

// IsolationProviderModel is the provider block.
type IsolationProviderModel struct {
	Endpoint       types.String `tfsdk:"endpoint"`
	Token          types.String `tfsdk:"token"`
	CACertPEM      types.String `tfsdk:"ca_cert_pem"`
	Insecure       types.Bool   `tfsdk:"insecure"`
	MaxRetries     types.Int64  `tfsdk:"max_retries"`
	RequestTimeout types.String `tfsdk:"request_timeout"`
}

func (p *IsolationProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "isolation"
	resp.Version = p.version
}

func (p *IsolationProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The isolation provider manages projects, isolated developer environments and " +
			"their network policies on an [isolationd](https://github.com/isolationhq/terraform-provider-isolation) control plane.",
		Attributes: map[string]schema.Attribute{
			"endpoint": schema.StringAttribute{
				MarkdownDescription: "Base URL of the isolationd API, for example `https://isolation.example.com`. " +
					"May also be set with the `" + EnvEndpoint + "` environment variable.",
				Optional: true,
			},
			"token": schema.StringAttribute{
				MarkdownDescription: "API token sent as a bearer token. May also be set with the `" + EnvToken +
					"` environment variable, which keeps it out of the configuration.",
				Optional:  true,
				Sensitive: true,
			},
			"ca_cert_pem": schema.StringAttribute{
				MarkdownDescription: "PEM-encoded CA certificates to trust for a TLS endpoint, instead of the system's. " +
					"May also be set with `" + EnvCACertPEM + "`.",
				Optional: true,
			},
			"insecure": schema.BoolAttribute{
				MarkdownDescription: "Skip TLS certificate verification. For testing only. May also be set with `" + EnvInsecure + "`.",
				Optional:            true,
			},
			"max_retries": schema.Int64Attribute{
				MarkdownDescription: fmt.Sprintf("Caps how many times a request that failed with 429, a 5xx, a connection error or a lost answer is retried. "+
					"Unset, retries are bounded by time only: they go on, with capped exponential backoff and jitter honouring `Retry-After`, "+
					"until the operation's deadline (the resource's `timeouts`, or `request_timeout` for a read). "+
					"`0` disables retries. May also be set with `%s`.", EnvMaxRetries),
				Optional: true,
			},
			"request_timeout": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("Timeout of each HTTP request, as a duration such as `30s` or `2m`. Defaults to `%s`. "+
					"Waiting for an environment is bounded by the resource's `timeouts` instead. May also be set with `%s`.",
					client.DefaultRequestTimeout, EnvRequestTimeout),
				Optional: true,
			},
		},
	}
}

// Configure builds the API client and asks isolationd who its token is,
// failing when the endpoint is not isolationd or the token is refused.
// When a setting is still unknown (an endpoint taken from a resource not
// yet created), it configures nothing: planning still works, and resources
// say so only if they must call the API.
func (p *IsolationProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg IsolationProviderModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if cfg.Endpoint.IsUnknown() || cfg.Token.IsUnknown() || cfg.CACertPEM.IsUnknown() ||
		cfg.Insecure.IsUnknown() || cfg.MaxRetries.IsUnknown() || cfg.RequestTimeout.IsUnknown() {
		return
	}

	clientCfg, diags := clientConfig(cfg, os.Getenv)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	clientCfg.UserAgent = fmt.Sprintf("terraform-provider-isolation/%s terraform/%s", p.version, req.TerraformVersion)
	ctx = maskSecret(ctx, clientCfg.Token)
	clientCfg.Logger = tflogAdapter{ctx: ctx}

	c, err := client.New(clientCfg)
	if err != nil {
		resp.Diagnostics.AddError("Unable to create the isolation API client", err.Error())
		return
	}
	// Before any Read: with the wrong endpoint or another project's token,
	// every object would answer 404 and look deleted.
	who, err := c.WhoAmI(ctx)
	if err != nil {
		addWhoAmIError(&resp.Diagnostics, c.Endpoint(), err)
		return
	}
	tflog.Info(ctx, "isolationd identity", map[string]any{
		"server_version": who.Server.Version, "server_driver": who.Server.Driver, "server_runtime": who.Server.Runtime,
		"token_id": who.TokenID, "token_name": who.Name, "role": who.Role, "project_id": who.ProjectID,
	})
	if who.Server.Driver == apiv1.DriverSimulate && p.simulateWarned.first(c.Endpoint()) {
		addSimulateWarning(&resp.Diagnostics, c.Endpoint())
	}
	pc := newProviderClient(c, *who)
	resp.DataSourceData = pc
	resp.ResourceData = pc
	resp.EphemeralResourceData = pc
}

// simulateWarning is the summary of addSimulateWarning's diagnostic.
const simulateWarning = "isolationd runs the simulate driver: nothing is isolated there"

// addSimulateWarning says, in every plan and apply against a server of
// the simulate driver, that its environments are not real.
func addSimulateWarning(diags *diag.Diagnostics, endpoint string) {
	diags.AddWarning(simulateWarning, fmt.Sprintf(
		"The isolationd at %s runs the simulate enforcement driver. It keeps environments, policies and the audit trail, and answers "+
			"checks with the rules a real driver would be given, but nothing is isolated there: it makes no network namespace and "+
			"no firewall rule, enforces no resources, and runs no workload (workload_state is %s).\n\n"+
			"That suits trying a configuration and tests. For real environments, run isolationd with --driver %s (as root, on Linux).",
		endpoint, apiv1.WorkloadNotRun, apiv1.DriverNetns))
}

// addWhoAmIError explains why GET /v1/whoami failed at Configure: the
// endpoint is not isolationd, the token is refused, or the server is out
// of reach. None of it can hold the token: the client scrubs it.
func addWhoAmIError(diags *diag.Diagnostics, endpoint string, err error) {
	switch {
	case errors.Is(err, client.ErrNotIsolationd):
		diags.AddAttributeError(path.Root("endpoint"), "Invalid provider configuration: endpoint", fmt.Sprintf(
			"The endpoint %s is not isolationd, or not the base URL of its API (%s).\n\nSet the \"endpoint\" attribute in the "+
				"provider block or the %s environment variable to the base URL of isolationd's API (such as https://isolation.example.com, without /v1).",
			endpoint, err, EnvEndpoint))
	case client.StatusCode(err) == http.StatusUnauthorized:
		diags.AddAttributeError(path.Root("token"), "Invalid provider configuration: token", fmt.Sprintf(
			"isolationd at %s refused the token: %s\n\nThe token is unknown, revoked or expired. Set the \"token\" attribute "+
				"in the provider block or the %s environment variable to a valid token.", endpoint, err, EnvToken))
	case client.StatusCode(err) == http.StatusNotFound:
		diags.AddAttributeError(path.Root("endpoint"), "Invalid provider configuration: endpoint", fmt.Sprintf(
			"The endpoint %s has no GET /v1/whoami: %s\n\nEither the endpoint is not the base URL of isolationd's API "+
				"(such as https://isolation.example.com, without /v1; set the \"endpoint\" attribute or %s), "+
				"or that isolationd is older than this provider and must be upgraded.", endpoint, err, EnvEndpoint))
	default:
		diags.AddError("Unable to reach isolationd", fmt.Sprintf(
			"Asking isolationd at %s who the provider's token is failed: %s\n\nCheck the endpoint, that isolationd runs, "+
				"and for TLS the ca_cert_pem and insecure settings.", endpoint, err))
	}
}

// Resources lists the provider's resources. Add a resource by appending its
// constructor here (one file per resource, see project_resource.go).
func (p *IsolationProvider) Resources(_ context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		NewProjectResource,
		NewAssertionResource,
		NewEnvironmentResource,
		NewPolicyResource,
		NewTokenResource,
	}
}

// DataSources lists the provider's data sources. Add one by appending its
// constructor here.
func (p *IsolationProvider) DataSources(_ context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		NewProjectDataSource,
		NewEnvironmentDataSource,
		NewEnvironmentsDataSource,
		NewPolicyDataSource,
		NewEffectivePolicyDataSource,
		NewCheckDataSource,
		NewTokensDataSource,
	}
}

// EphemeralResources lists the provider's ephemeral resources. Add one by
// appending its constructor here.
func (p *IsolationProvider) EphemeralResources(_ context.Context) []func() ephemeral.EphemeralResource {
	return []func() ephemeral.EphemeralResource{
		NewEnvironmentSessionEphemeral,
	}
}

// clientConfig merges the configuration with the environment (getenv) and
// checks every setting; each error names the attribute and its variable.
func clientConfig(cfg IsolationProviderModel, getenv func(string) string) (client.Config, diag.Diagnostics) {
	var diags diag.Diagnostics
	var out client.Config
	bad := func(attr, env, format string, args ...any) {
		diags.AddAttributeError(path.Root(attr), "Invalid provider configuration: "+attr,
			fmt.Sprintf(format, args...)+fmt.Sprintf(" Set the %q attribute in the provider block or the %s environment variable.", attr, env))
	}

	out.Endpoint = stringSetting(cfg.Endpoint, getenv(EnvEndpoint))
	if out.Endpoint == "" {
		bad("endpoint", EnvEndpoint, "The isolationd endpoint is missing.")
	} else if err := validators.CheckHTTPURL(out.Endpoint); err != nil {
		bad("endpoint", EnvEndpoint, "The endpoint %s.", err)
	}

	out.Token = stringSetting(cfg.Token, getenv(EnvToken))
	if out.Token == "" {
		bad("token", EnvToken, "The API token is missing.")
	}

	out.CACertPEM = stringSetting(cfg.CACertPEM, getenv(EnvCACertPEM))
	if out.CACertPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(out.CACertPEM)) {
		bad("ca_cert_pem", EnvCACertPEM, "The value holds no PEM-encoded certificate.")
	}

	if !cfg.Insecure.IsNull() {
		out.Insecure = cfg.Insecure.ValueBool()
	} else if v := getenv(EnvInsecure); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("insecure", EnvInsecure, "%s=%q is not a boolean (true or false).", EnvInsecure, v)
		}
		out.Insecure = b
	}

	// Unset (0 in client.Config): bounded by the operation's deadline only.
	if !cfg.MaxRetries.IsNull() {
		out.MaxRetries = int(cfg.MaxRetries.ValueInt64())
	} else if v := getenv(EnvMaxRetries); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			n = -1
		}
		out.MaxRetries = n
	}
	if out.MaxRetries < 0 || out.MaxRetries > maxMaxRetries {
		bad("max_retries", EnvMaxRetries, "max_retries must be a whole number between 0 and %d.", maxMaxRetries)
	}
	if out.MaxRetries == 0 && (!cfg.MaxRetries.IsNull() || getenv(EnvMaxRetries) != "") {
		out.MaxRetries = -1 // client.Config: negative disables retries, 0 means no cap
	}

	timeout := stringSetting(cfg.RequestTimeout, getenv(EnvRequestTimeout))
	if timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil || d <= 0 {
			bad("request_timeout", EnvRequestTimeout, "%q is not a positive duration such as 30s or 2m.", timeout)
		}
		out.RequestTimeout = d
	}
	return out, diags
}

// stringSetting prefers the configuration's value to the environment's.
func stringSetting(v types.String, env string) string {
	if !v.IsNull() {
		return v.ValueString()
	}
	return env
}
