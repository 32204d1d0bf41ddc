package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// The acceptance harness, shared by every acceptance test of the package.
//
// With TF_ACC set, TestMain starts an in-process isolationd on a fresh
// temporary data dir, points the provider at it through ISOLATION_ENDPOINT
// and ISOLATION_TOKEN, and resolves the Terraform CLI. Tests then use
// testAccProtoV6ProviderFactories and, to look behind Terraform's back,
// testAccClient.

// testAccProtoV6ProviderFactories serves the provider in-process to the Terraform CLI.
var testAccProtoV6ProviderFactories = map[string]func() (tfprotov6.ProviderServer, error){
	"isolation": providerserver.NewProtocol6WithError(New("test")()),
}

// The shared acceptance server, set by TestMain when TF_ACC is set.
var (
	testAccEndpoint string
	testAccToken    string
	// testAccClient talks to the acceptance server as the admin, for
	// changing things outside Terraform and for CheckDestroy.
	testAccClient *client.Client
)

// testServer is a running in-process isolationd.
type testServer struct {
	URL      string
	Token    string
	Shutdown func(context.Context) error
}

// testServerOptions are the settings acceptance tests vary between servers.
type testServerOptions struct {
	// AddressPool, when set, replaces the server's default address pool; a
	// tiny pool makes environment creation fail for real once exhausted.
	AddressPool string
}

// startTestServer starts an in-process isolationd on 127.0.0.1:0 with its
// data in dir.
func startTestServer(ctx context.Context, dir string, opts testServerOptions) (*testServer, error) {
	srv, err := server.Start(ctx, observed(server.Config{
		Listen:      "127.0.0.1:0",
		DataDir:     dir,
		AddressPool: opts.AddressPool,
	}))
	if err != nil {
		return nil, err
	}
	transcript.remember(srv.AdminToken())
	return &testServer{URL: srv.URL(), Token: srv.AdminToken(), Shutdown: srv.Shutdown}, nil
}

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if os.Getenv("TF_ACC") == "" {
		return m.Run()
	}
	if err := resolveTerraform(); err != nil {
		fmt.Fprintln(os.Stderr, "acceptance tests:", err)
		return 1
	}
	srv, cleanup, err := startSharedServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "acceptance tests: starting isolationd:", err)
		return 1
	}
	defer cleanup()

	testAccEndpoint, testAccToken = srv.URL, srv.Token
	os.Setenv(EnvEndpoint, srv.URL)
	os.Setenv(EnvToken, srv.Token)
	testAccClient, err = client.New(client.Config{Endpoint: srv.URL, Token: srv.Token, UserAgent: "acceptance-tests"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "acceptance tests: client:", err)
		return 1
	}
	if code := m.Run(); code != 0 {
		return code
	}
	return scanTranscript()
}

// startSharedServer starts the acceptance server in a temporary dir that
// belongs to no single test, and returns its cleanup.
func startSharedServer() (*testServer, func(), error) {
	dir, err := os.MkdirTemp("", "isolation-acc-")
	if err != nil {
		return nil, nil, err
	}
	srv, err := startTestServer(context.Background(), dir, testServerOptions{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return srv, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "acceptance tests: shutting down isolationd:", err)
		}
		os.RemoveAll(dir)
	}, nil
}

// startExtraServer starts a server of the test's own, shut down with the test.
func startExtraServer(t *testing.T, opts testServerOptions) *testServer {
	t.Helper()
	srv, err := startTestServer(t.Context(), t.TempDir(), opts)
	if err != nil {
		t.Fatalf("starting isolationd: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutting down isolationd: %v", err)
		}
	})
	return srv
}

// resolveTerraform makes TF_ACC_TERRAFORM_PATH an absolute path to a
// Terraform (or OpenTofu) CLI, taking terraform from PATH when unset, so
// that plain `go test` works and terraform-plugin-testing never downloads one.
func resolveTerraform() error {
	p := os.Getenv("TF_ACC_TERRAFORM_PATH")
	if p == "" {
		for _, name := range []string{"terraform", "tofu"} {
			if found, err := exec.LookPath(name); err == nil {
				p = found
				break
			}
		}
	}
	if p == "" {
		return errors.New("no Terraform CLI: put terraform (or tofu) on PATH or set TF_ACC_TERRAFORM_PATH (make test does this)")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("TF_ACC_TERRAFORM_PATH: %w", err)
	}
	return os.Setenv("TF_ACC_TERRAFORM_PATH", abs)
}

// testAccPreCheck is every acceptance test's PreCheck.
func testAccPreCheck(t *testing.T) {
	t.Helper()
	if testAccClient == nil {
		t.Fatal("the acceptance server is not running: TestMain starts it when TF_ACC is set")
	}
}

// providerBlock configures the provider for another server than the
// shared one, such as a server of the test's own.
func providerBlock(srv *testServer) string {
	return fmt.Sprintf(`
provider "isolation" {
  endpoint = %q
  token    = %q
}
`, srv.URL, srv.Token)
}

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

// afterApply returns plan checks: preApply before the apply, and an empty
// plan after it (the plan after every apply step must be empty).
func afterApply(preApply ...plancheck.PlanCheck) resource.ConfigPlanChecks {
	return resource.ConfigPlanChecks{
		PreApply:             preApply,
		PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
	}
}

// changeOutsideTerraform is a plan check that, instead of checking,
// changes something on the server between Terraform's plan and its apply:
// the window in which another user's change makes If-Match fail.
func changeOutsideTerraform(change func(ctx context.Context) error) plancheck.PlanCheck {
	return outsideChange(change)
}

type outsideChange func(ctx context.Context) error

func (f outsideChange) CheckPlan(ctx context.Context, _ plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	resp.Error = f(ctx)
}

// stateAttr reads an attribute of a resource from the state, for the
// outside changes that need an id.
func stateAttr(s *terraform.State, name, attr string) (string, error) {
	rs, ok := s.RootModule().Resources[name]
	if !ok {
		return "", fmt.Errorf("%s is not in the state", name)
	}
	return rs.Primary.Attributes[attr], nil
}

// captureID is a state check that records the id of the resource at addr.
func captureID(addr string, id *string) statecheck.StateCheck {
	return resourceCheck{addr, func(attrs map[string]any) error {
		*id = fmt.Sprint(attrs["id"])
		return nil
	}}
}

// expectID is a state check that the resource at addr has the id recorded
// in want (same) or another one (replaced or recreated).
func expectID(addr string, want *string, same bool) statecheck.StateCheck {
	return resourceCheck{addr, func(attrs map[string]any) error {
		got := fmt.Sprint(attrs["id"])
		switch {
		case same && got != *want:
			return fmt.Errorf("%s has id %s, want %s (the same object)", addr, got, *want)
		case !same && got == *want:
			return fmt.Errorf("%s still has id %s, want a new object", addr, got)
		}
		return nil
	}}
}

// resourceCheck is a state check of one resource's attributes, as the
// JSON state has them.
type resourceCheck struct {
	addr  string
	check func(attrs map[string]any) error
}

func (c resourceCheck) CheckState(_ context.Context, req statecheck.CheckStateRequest, resp *statecheck.CheckStateResponse) {
	if req.State == nil || req.State.Values == nil || req.State.Values.RootModule == nil {
		resp.Error = fmt.Errorf("no state")
		return
	}
	for _, r := range req.State.Values.RootModule.Resources {
		if r.Address == c.addr {
			resp.Error = c.check(r.AttributeValues)
			return
		}
	}
	resp.Error = fmt.Errorf("%s is not in the state", c.addr)
}

// checkDestroyed is a CheckDestroy: every resource of type typ in the
// state is gone from the server (get answers 404).
func checkDestroyed(typ string, get func(ctx context.Context, id string) error) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		for _, rs := range s.RootModule().Resources {
			if rs.Type != typ {
				continue
			}
			err := get(context.Background(), rs.Primary.ID)
			if err == nil {
				return fmt.Errorf("%s %s still exists after destroy", typ, rs.Primary.ID)
			}
			if !client.IsNotFound(err) {
				return fmt.Errorf("checking %s %s: %w", typ, rs.Primary.ID, err)
			}
		}
		return nil
	}
}

func projectGetter(c *client.Client) func(context.Context, string) error {
	return func(ctx context.Context, id string) error {
		_, err := c.Projects().Get(ctx, id)
		return err
	}
}

func environmentGetter(c *client.Client) func(context.Context, string) error {
	return func(ctx context.Context, id string) error {
		_, err := c.Environments().Get(ctx, id)
		return err
	}
}

// errorWith matches a Terraform error output that contains each part in
// order. Terraform wraps long lines, so a space in a part matches any run
// of white space.
func errorWith(parts ...string) *regexp.Regexp {
	quoted := make([]string, len(parts))
	for i, p := range parts {
		quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(p), " ", `\s+`)
	}
	return regexp.MustCompile(`(?s)` + strings.Join(quoted, ".*"))
}

func TestProvider_EndpointUnknownUntilApplyStillPlansAndApplies(t *testing.T) {
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

resource "isolation_project" "test" {
  name = %q
}
`, testAccEndpoint, generation, name)
	}
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDestroyed("isolation_project", projectGetter(testAccClient)),
		Steps: []resource.TestStep{
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
		},
	})
}

func TestProvider_BadSettingFailsThePlanNamingAttributeAndVariable(t *testing.T) {
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config: `
provider "isolation" {
  endpoint = "isolation.example.com:8080"
}
` + projectConfig(accName("prj"), ""),
				PlanOnly:    true,
				ExpectError: errorWith("Invalid provider configuration: endpoint", "must be an http or https URL", `"endpoint" attribute`, EnvEndpoint),
			},
			{
				Config: `
provider "isolation" {
  request_timeout = "forever"
}
` + projectConfig(accName("prj"), ""),
				PlanOnly:    true,
				ExpectError: errorWith("Invalid provider configuration: request_timeout", "not a positive duration", EnvRequestTimeout),
			},
		},
	})
}
