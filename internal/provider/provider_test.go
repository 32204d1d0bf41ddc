package provider

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

func TestProvider_SchemasAreValid(t *testing.T) {
	t.Parallel()
	srv, err := testAccProtoV6ProviderFactories["isolation"]()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.GetProviderSchema(t.Context(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.Diagnostics {
		t.Errorf("schema diagnostic: %s: %s", d.Summary, d.Detail)
	}
	for _, name := range []string{"isolation_project", "isolation_environment"} {
		if _, ok := resp.ResourceSchemas[name]; !ok {
			t.Errorf("resource %s is not registered", name)
		}
	}
	for _, name := range []string{"isolation_project", "isolation_environment", "isolation_environments"} {
		if _, ok := resp.DataSourceSchemas[name]; !ok {
			t.Errorf("data source %s is not registered", name)
		}
	}
}

func TestClientConfig_NamesTheAttributeAndTheVariableOfEveryBadSetting(t *testing.T) {
	t.Parallel()
	null := IsolationProviderModel{
		Endpoint: types.StringNull(), Token: types.StringNull(), CACertPEM: types.StringNull(),
		Insecure: types.BoolNull(), MaxRetries: types.Int64Null(), RequestTimeout: types.StringNull(),
	}
	good := map[string]string{EnvEndpoint: "http://127.0.0.1:1", EnvToken: "t0ken"}
	with := func(extra map[string]string) func(string) string {
		env := map[string]string{}
		maps.Copy(env, good)
		maps.Copy(env, extra)
		return func(k string) string { return env[k] }
	}
	cases := []struct {
		name      string
		cfg       IsolationProviderModel
		env       func(string) string
		wantAttr  string
		wantInMsg string
	}{
		{"missing endpoint", null, with(map[string]string{EnvEndpoint: ""}), "endpoint", EnvEndpoint},
		{"bad endpoint from env", null, with(map[string]string{EnvEndpoint: "localhost:8080"}), "endpoint", EnvEndpoint},
		{"missing token", null, with(map[string]string{EnvToken: ""}), "token", EnvToken},
		{"bad insecure", null, with(map[string]string{EnvInsecure: "maybe"}), "insecure", EnvInsecure},
		{"bad max_retries from env", null, with(map[string]string{EnvMaxRetries: "-3"}), "max_retries", EnvMaxRetries},
		{"max_retries from config out of range", withMaxRetries(null, 101), with(nil), "max_retries", EnvMaxRetries},
		{"bad endpoint from config", withEndpoint(null, "ftp://example.com"), with(nil), "endpoint", EnvEndpoint},
		{"bad request_timeout", null, with(map[string]string{EnvRequestTimeout: "soon"}), "request_timeout", EnvRequestTimeout},
		{"bad ca_cert_pem", null, with(map[string]string{EnvCACertPEM: "not a certificate"}), "ca_cert_pem", EnvCACertPEM},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, diags := clientConfig(tc.cfg, tc.env)
			if !diags.HasError() {
				t.Fatal("no error")
			}
			d := diags.Errors()[0]
			withPath, ok := d.(diag.DiagnosticWithPath)
			if !ok || !withPath.Path().Equal(path.Root(tc.wantAttr)) {
				t.Errorf("diagnostic is not on attribute %q: %v", tc.wantAttr, d)
			}
			if msg := d.Summary() + d.Detail(); !strings.Contains(msg, tc.wantAttr) || !strings.Contains(msg, tc.wantInMsg) {
				t.Errorf("message %q does not name %q and %q", msg, tc.wantAttr, tc.wantInMsg)
			}
			if strings.Contains(d.Detail(), "t0ken") {
				t.Errorf("message leaks the token: %q", d.Detail())
			}
		})
	}
}

func withMaxRetries(m IsolationProviderModel, n int64) IsolationProviderModel {
	m.MaxRetries = types.Int64Value(n)
	return m
}

func withEndpoint(m IsolationProviderModel, e string) IsolationProviderModel {
	m.Endpoint = types.StringValue(e)
	return m
}

func TestClientConfig_ConfigurationWinsOverEnvironment(t *testing.T) {
	t.Parallel()
	cfg := IsolationProviderModel{
		Endpoint: types.StringValue("https://from-config.example"), Token: types.StringValue("config-token"),
		CACertPEM: types.StringNull(), Insecure: types.BoolValue(true), MaxRetries: types.Int64Value(0),
		RequestTimeout: types.StringValue("45s"),
	}
	env := map[string]string{EnvEndpoint: "https://from-env.example", EnvToken: "env-token", EnvInsecure: "false", EnvMaxRetries: "7", EnvRequestTimeout: "1s"}
	got, diags := clientConfig(cfg, func(k string) string { return env[k] })
	if diags.HasError() {
		t.Fatalf("diagnostics: %v", diags)
	}
	want := client.Config{Endpoint: "https://from-config.example", Token: "config-token", Insecure: true, MaxRetries: -1, RequestTimeout: 45 * time.Second}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(client.Config{}, "Logger")); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestAccProvider_EndpointUnknownUntilApplyStillPlansAndApplies(t *testing.T) {
	name := accName("prj")
	config := func(generation string) string {
		return fmt.Sprintf(`
# The endpoint comes from a resource, so it is unknown while planning.
resource "terraform_data" "endpoint" {
  input            = %q
  triggers_replace = %q
}

provider "isolation" {
  endpoint = terraform_data.endpoint.output
}
`, testAccEndpoint, generation) + projectConfig(name, "")
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		{
			Config: config("1"),
			ConfigPlanChecks: afterApply(
				plancheck.ExpectUnknownValue("terraform_data.endpoint", tfjsonpath.New("output")),
				plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionCreate),
			),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(projectAddr, tfjsonpath.New("id"), knownvalue.NotNull()),
			},
		},
		{
			// With a project in the state and the endpoint unknown again,
			// the refresh keeps the state and the plan still works.
			Config: config("2"),
			ConfigPlanChecks: afterApply(
				plancheck.ExpectResourceAction("terraform_data.endpoint", plancheck.ResourceActionReplace),
				plancheck.ExpectResourceAction(projectAddr, plancheck.ResourceActionNoop),
			),
		},
	}))
}

func TestAccProvider_BadSettingFailsThePlanNamingAttributeAndVariable(t *testing.T) {
	withProvider := func(setting string) string {
		return "\nprovider \"isolation\" {\n  " + setting + "\n}\n" + projectConfig(accName("prj"), "")
	}
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{
		planFails(withProvider(`endpoint = "isolation.example.com:8080"`),
			errorWith("Invalid provider configuration: endpoint", "must be an http or https URL", `"endpoint" attribute`, EnvEndpoint)),
		planFails(withProvider(`request_timeout = "forever"`),
			errorWith("Invalid provider configuration: request_timeout", "not a positive duration", EnvRequestTimeout)),
	}))
}
