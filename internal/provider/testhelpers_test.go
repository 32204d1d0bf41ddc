package provider

// The helpers every test file of the package shares, and the acceptance
// harness (TestMain). A helper used by more than one test file lives here;
// one that serves a single file stays next to its tests
// (TestConventions_SharedTestHelpersLiveInTestHelpers keeps it so).
//
// Test names read as specifications, Test<Subject>_<Behaviour>, and the
// prefix says what a test needs:
//   - TestAcc<Subject>_ tests run only with TF_ACC set: they drive the
//     Terraform CLI (resource.Test, resource.ParallelTest) or use the shared
//     acceptance server (requireAcc). `go test -run TestAcc` runs exactly
//     them, as in HashiCorp's providers, whose CI selects acceptance tests
//     by that prefix.
//   - Test<Subject>_ tests run under plain `go test`: pure unit tests, and
//     tests that talk to an in-process isolationd of their own over the
//     plugin protocol, without the CLI.
// TestConventions_AcceptanceTestsAndOnlyThoseAreNamedTestAcc keeps the
// prefixes honest.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/logbuf"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc/inittest"
)

// ---- The acceptance harness ----
//
// With TF_ACC set, TestMain starts an in-process isolationd on a fresh
// temporary data dir, points the provider at it through ISOLATION_ENDPOINT
// and ISOLATION_TOKEN, and resolves the Terraform CLI. Tests then use
// testAccCase (or testAccProtoV6ProviderFactories) and, to look behind
// Terraform's back, testAccClient.

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

	testAccEndpoint, testAccToken = srv.URL(), srv.AdminToken()
	os.Setenv(EnvEndpoint, testAccEndpoint)
	os.Setenv(EnvToken, testAccToken)
	testAccClient, err = client.New(client.Config{Endpoint: testAccEndpoint, Token: testAccToken, UserAgent: "acceptance-tests"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "acceptance tests: client:", err)
		return 1
	}
	defer devProvider.remove()
	if code := m.Run(); code != 0 {
		return code
	}
	return scanTranscript()
}

// devProvider is the provider binary built from this tree, once per test
// binary, for the tests that run the Terraform CLI themselves (as a user
// does, through dev_overrides) rather than through terraform-plugin-testing.
var devProvider providerBuild

type providerBuild struct {
	once      sync.Once
	dir       string
	cliConfig string
	err       error
}

// cliConfigFile builds the provider the first time it is asked and returns
// the Terraform CLI configuration that installs it (TF_CLI_CONFIG_FILE).
func (b *providerBuild) cliConfigFile(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "isolation-provider-"); b.err != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(b.dir, devrun.ProviderBinary), "../..").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("building the provider: %v\n%s", err, out)
			return
		}
		b.cliConfig, b.err = devrun.WriteCLIConfig(b.dir, b.dir)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.cliConfig
}

func (b *providerBuild) remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// startServer starts an in-process isolationd on 127.0.0.1:0 whose logs
// and audit events go into the transcript.
func startServer(ctx context.Context, cfg server.Config) (*server.Server, error) {
	cfg.Listen = "127.0.0.1:0"
	srv, err := server.Start(ctx, observed(cfg))
	if err != nil {
		return nil, err
	}
	transcript.remember(srv.AdminToken())
	return srv, nil
}

// startSharedServer starts the acceptance server in a temporary dir that
// belongs to no single test, and returns its cleanup.
func startSharedServer() (*server.Server, func(), error) {
	dir, err := os.MkdirTemp("", "isolation-acc-")
	if err != nil {
		return nil, nil, err
	}
	srv, err := startServer(context.Background(), server.Config{DataDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return srv, func() {
		if err := shutdown(srv); err != nil {
			fmt.Fprintln(os.Stderr, "acceptance tests: shutting down isolationd:", err)
		}
		os.RemoveAll(dir)
	}, nil
}

func shutdown(srv *server.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// startServerWith starts an isolationd of the test's own on loopback, shut
// down with the test, with cfg's settings, in a temporary data directory
// unless cfg names one.
func startServerWith(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	srv, err := startServer(t.Context(), cfg)
	if err != nil {
		t.Fatalf("starting isolationd: %v", err)
	}
	t.Cleanup(func() {
		if err := shutdown(srv); err != nil {
			t.Errorf("shutting down isolationd: %v", err)
		}
	})
	return srv
}

// testServer is where a provider block points: an isolationd, or a proxy
// in front of one, and the token to use there.
type testServer struct {
	URL   string
	Token string
}

// startExtraServer starts a server of the test's own, shut down with the
// test, and returns where to reach it.
func startExtraServer(t *testing.T, cfg server.Config) *testServer {
	t.Helper()
	srv := startServerWith(t, cfg)
	return &testServer{URL: srv.URL(), Token: srv.AdminToken()}
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

// requireAcc runs a test only with the acceptance server (TF_ACC set), as
// resource.Test does for the tests that drive the Terraform CLI.
func requireAcc(t *testing.T) {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1 (make test does)")
	}
	testAccPreCheck(t)
}

// testAccCase is the test case of an acceptance test: the in-process
// provider, the precheck, and a CheckDestroy that every object the steps
// left in the state is gone from the shared server.
func testAccCase(t *testing.T, steps []resource.TestStep) resource.TestCase {
	return resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDestroyed,
		Steps:                    steps,
	}
}

// providerBlock configures the provider for another server than the
// shared one, such as a server of the test's own or a proxy.
func providerBlock(srv *testServer) string {
	return fmt.Sprintf(`
provider "isolation" {
  endpoint = %q
  token    = %q
}
`, srv.URL, srv.Token)
}

// sharedServerAs configures the provider for the shared server with the
// token in the sensitive variable variable, so the token is never written
// into a configuration the test framework logs.
func sharedServerAs(variable string) string {
	return fmt.Sprintf(`
variable %q {
  type      = string
  sensitive = true
}

provider "isolation" {
  endpoint = %q
  token    = var.%s
}
`, variable, testAccEndpoint, variable)
}

// serverProviderConfig configures the provider for a server of the test's
// own; the token and TLS settings come in as variables, so the token is
// never written into a configuration the test framework logs.
const serverProviderConfig = `
variable "endpoint" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

variable "ca_cert_pem" {
  type    = string
  default = null
}

variable "insecure" {
  type    = bool
  default = null
}

variable "max_retries" {
  type    = number
  default = null
}

provider "isolation" {
  endpoint    = var.endpoint
  token       = var.token
  ca_cert_pem = var.ca_cert_pem
  insecure    = var.insecure
  max_retries = var.max_retries
}
`

// serverVariables are the variables of serverProviderConfig for srv, plus extra.
func serverVariables(srv *server.Server, extra config.Variables) config.Variables {
	return providerVariables(srv.URL(), srv.AdminToken(), extra)
}

// providerVariables are the variables of serverProviderConfig for the
// server at endpoint as token, plus extra.
func providerVariables(endpoint, token string, extra config.Variables) config.Variables {
	v := config.Variables{"endpoint": config.StringVariable(endpoint), "token": config.StringVariable(token)}
	maps.Copy(v, extra)
	return v
}

// ---- The server transcript, scanned for secrets after the suite ----
//
// Every isolationd the acceptance suite starts writes its debug log and its
// audit events into one transcript; after the whole suite has run, TestMain
// scans it for any token secret. Targeted tests scan the Terraform CLI's and
// the provider's TRACE logs; this catches a secret leaking from the server
// side in any test, including ones written later.
var transcript = &scanLog{}

type scanLog struct {
	logbuf.Buffer
	mu      sync.Mutex
	secrets []string // admin secrets of the servers started, which do not all look like tokens we mint
}

func (l *scanLog) remember(secret string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, secret)
}

// observed makes a server's logs and audit events part of the transcript.
func observed(cfg server.Config) server.Config {
	cfg.Logger = slog.New(slog.NewJSONHandler(transcript, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.AuditLog = transcript
	return cfg
}

// mintedSecret matches every secret isolationd makes (auth.NewSecret).
var mintedSecret = regexp.MustCompile(`isot_[A-Za-z0-9_-]{43}`)

// scan reports where a secret appears, never the secret itself.
func (l *scanLog) scan() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	text := []byte(l.String())
	// The scan proves something only if servers logged requests and audited them.
	if !bytes.Contains(text, []byte(`"request_id"`)) || !bytes.Contains(text, []byte(`"prev_hash"`)) {
		return fmt.Errorf("the server transcript (%d bytes) holds no requests or audit events: the scan would prove nothing", len(text))
	}
	if loc := mintedSecret.FindIndex(text); loc != nil {
		return fmt.Errorf("a token secret appears in the server logs or audit events at byte %d of %d", loc[0], len(text))
	}
	for i, s := range l.secrets {
		if s != "" && bytes.Contains(text, []byte(s)) {
			return fmt.Errorf("the admin secret of server #%d appears in the server logs or audit events", i+1)
		}
	}
	return nil
}

// scanTranscript runs after the whole suite.
func scanTranscript() int {
	if err := transcript.scan(); err != nil {
		fmt.Fprintln(os.Stderr, "acceptance tests: secrets:", err)
		return 1
	}
	return 0
}

// traceLog sends the provider's and the Terraform CLI's TRACE logs to a
// file of the test's (the test cannot be parallel: TF_LOG is process-wide)
// and returns its reader. The scan of a log proves something only if the
// log holds the provider's requests, the CLI's own trace (Terraform and
// OpenTofu both log their Go runtime) and every one of proof.
func traceLog(t *testing.T) (read func(proof ...string) string) {
	logFile := filepath.Join(t.TempDir(), "trace.log")
	t.Setenv("TF_LOG", "TRACE")          // the provider's log level (terraform-plugin-log sink)
	t.Setenv("TF_ACC_LOG", "TRACE")      // the Terraform CLI's log level
	t.Setenv("TF_ACC_LOG_PATH", logFile) // both write here
	return func(proof ...string) string {
		t.Helper()
		raw, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatalf("reading the trace log: %v", err)
		}
		logs := string(raw)
		for _, want := range append([]string{"isolation_client", "performing request", "Go runtime version"}, proof...) {
			if !strings.Contains(logs, want) {
				t.Fatalf("the trace log (%d bytes) lacks %q: the test would prove nothing", len(logs), want)
			}
		}
		return logs
	}
}

// ---- The workload rigs ----
//
// The servers the tests of running workloads (and of exec into them) run
// against: the shared simulate server, and a runc server of the test's own.

// accImages are the two images the workload acceptance tests run, for an
// image change. They are named with a registry so that the simulate
// runtime, which resolves no image, takes them as they are; the runc rig
// imports them under these names, and an image in the store is never
// pulled.
var accImages = [2]string{"registry.example.com/acc/app:1", "registry.example.com/acc/app:2"}

// workloadRig is the server a workload acceptance test runs against and
// what it may expect of it, so that one test states one behaviour on
// every runtime: the shared acceptance server, on the simulate driver,
// which records workloads, runs none and reports them not_run; or an
// isolationd of the test's own on the netns driver with the runc runtime,
// where they run.
type workloadRig struct {
	provider string         // the provider block; "" is the shared server's (ISOLATION_ENDPOINT)
	client   *client.Client // the rig's server, as its admin
	srv      *server.Server // the runc rig's server; nil for the shared one
	driver   string
	runtime  string
	running  string // workload_state of a workload whose command keeps running
}

// onEachRig runs test on each rig, as subtests named by the runtime:
// simulate, which needs nothing, and runc, which skips, saying why, where
// this machine refuses containers (not root, no runc, no namespaces). So
// make test, which CI runs as root, runs both, on Terraform and on
// OpenTofu, with nothing to set; -run 'TestAcc.*/runc' picks one.
func onEachRig(t *testing.T, test func(t *testing.T, rig *workloadRig)) {
	t.Parallel()
	t.Run(apiv1.RuntimeSimulate, func(t *testing.T) {
		test(t, &workloadRig{client: testAccClient, driver: apiv1.DriverSimulate, runtime: apiv1.RuntimeSimulate, running: apiv1.WorkloadNotRun})
	})
	t.Run(apiv1.RuntimeRunc, func(t *testing.T) { test(t, newRuncRig(t)) })
}

// newRuncRig starts an isolationd of the test's own that runs workloads
// under runc, in network namespaces named with a prefix of its own, with
// accImages in its image store. When the test ends, after the server has
// shut down, every container, mount, volume and namespace of the prefix
// is removed: a stopped isolationd leaves them for its next start.
func newRuncRig(t *testing.T) *workloadRig {
	t.Helper()
	requireAcc(t)
	if why := runcRefused(); why != "" {
		t.Skip(why)
	}
	cfg := server.Config{
		Driver: apiv1.DriverNetns, Runtime: apiv1.RuntimeRunc, NetnsPrefix: "ac" + acctest.RandStringFromCharSet(4, "abcdefghijklmnopqrstuvwxyz0123456789"),
		InitBinary: inittest.Binary(t), DataDir: t.TempDir(),
	}
	// The containers' root, mapped to another host user, reaches its root
	// filesystem through the data directory's parents: the test's
	// directory must be traversable for the user namespace to be used.
	if err := os.Chmod(filepath.Dir(cfg.DataDir), 0o711); err != nil { //nolint:gosec // G302: traversable, not readable
		t.Fatal(err)
	}
	// Registered before the server starts, so that it runs after the
	// server's shutdown and before the data directory is removed.
	t.Cleanup(func() {
		if err := server.Cleanup(context.Background(), observed(cfg)); err != nil {
			t.Errorf("removing what the runc rig's server made: %v", err)
		}
	})
	srv := startServerWith(t, cfg)
	c, err := client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken(), UserAgent: "acceptance-tests"})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range accImages {
		// Each image says which it is in /etc/acc-image.
		img := imagetest.Busybox(t, imagetest.Options{Files: []imagetest.File{{Path: "etc/acc-image", Data: []byte(strconv.Itoa(i+1) + "\n")}}})
		f, err := os.Open(imagetest.WriteOCITar(t, img))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Images().Import(t.Context(), name, f)
		f.Close()
		if err != nil {
			t.Fatalf("importing %s: %v", name, err)
		}
	}
	return &workloadRig{
		provider: providerBlock(&testServer{URL: srv.URL(), Token: srv.AdminToken()}), client: c, srv: srv,
		driver: apiv1.DriverNetns, runtime: apiv1.RuntimeRunc, running: apiv1.WorkloadRunning,
	}
}

// runcRefused says why this machine cannot run the runc rig, "" when it
// can: root for namespaces, cgroups, mounts and loop devices, runc,
// mkfs.ext4 for the environments' disks, and busybox, of which the test
// images are made (make runtime-deps installs the packages).
var runcRefused = sync.OnceValue(func() string {
	if os.Geteuid() != 0 {
		return "the runc rig needs root (namespaces, cgroups, mounts, loop devices): run the tests as root, as make test does in CI"
	}
	for _, tool := range []string{"runc", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("the runc rig needs %s (Debian: make runtime-deps installs runc and e2fsprogs): %v", tool, err)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Sprintf("the runc rig needs loop devices for the environments' disks: %v", err)
	}
	if err := imagetest.BusyboxAvailable(); err != nil {
		return fmt.Sprintf("the runc rig builds its images from busybox (Debian: busybox-static): %v", err)
	}
	// The namespaces of an environment and of its container.
	if out, err := exec.Command("unshare", "--net", "--mount", "--pid", "--fork", "--uts", "--ipc", "true").CombinedOutput(); err != nil {
		return fmt.Sprintf("the kernel refuses the namespaces the runc rig needs (unshare: %v: %s)", err, bytes.TrimSpace(out))
	}
	return ""
})

// runs says whether the rig's workloads run: their output, their volume
// and their processes are there to look at.
func (r *workloadRig) runs() bool { return r.srv != nil }

// namespace is the check of the environment's namespace on the rig: the
// simulate driver makes none.
func (r *workloadRig) namespace() knownvalue.Check {
	if r.runs() {
		return knownvalue.NotNull()
	}
	return knownvalue.Null()
}

// destroyed is the CheckDestroy of a test on the rig: the environment
// whose id was captured is gone from the rig's server, and from its
// runtime.
func (r *workloadRig) destroyed(id *string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		_, err := r.client.Environments().Get(context.Background(), *id)
		if !client.IsNotFound(err) {
			return fmt.Errorf("environment %s after destroy: %v, want 404", *id, err)
		}
		return r.runsNothing(id)(nil)
	}
}

// runsNothing checks that the runtime keeps nothing of the environment
// whose id was captured: no container, and so no volume.
func (r *workloadRig) runsNothing(id *string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		if !r.runs() {
			return nil
		}
		if st, err := r.srv.Runtime().Status(context.Background(), *id); !errors.Is(err, workload.ErrUnknown) {
			return fmt.Errorf("the runtime still runs a workload for %s: %+v (%v)", *id, st, err)
		}
		return nil
	}
}

// ---- Names and configurations ----

const (
	projectAddr     = "isolation_project.test"
	environmentAddr = "isolation_environment.test"
	policyAddr      = "isolation_policy.test"
	tokenAddr       = "isolation_token.test"
)

// accName returns a fresh DNS-label name, so tests sharing the server
// never collide on a unique name.
func accName(prefix string) string {
	return prefix + "-" + acctest.RandStringFromCharSet(8, "abcdefghijklmnopqrstuvwxyz0123456789")
}

// projectHCL is an isolation_project resource with the local name local.
func projectHCL(local, name string) string {
	return fmt.Sprintf(`
resource "isolation_project" %q {
  name = %q
}
`, local, name)
}

// environmentHCL is an isolation_environment resource with the local name
// local in isolation_project.<project>; labels is the inside of its labels
// map, or "" for none.
func environmentHCL(local, project, name, labels string) string {
	if labels != "" {
		labels = "\n  labels     = { " + labels + " }"
	}
	return fmt.Sprintf(`
resource "isolation_environment" %q {
  project_id = isolation_project.%s.id
  name       = %q%s
}
`, local, project, name, labels)
}

// projectConfig renders isolation_project.test; extra is raw HCL inside the block.
func projectConfig(name, extra string) string {
	return fmt.Sprintf(`
resource "isolation_project" "test" {
  name = %q
%s
}
`, name, extra)
}

// inTwoProjects renders two projects, "a" and "b", and a resource of typ
// named "test" in the one named by project; body is the rest of its block.
func inTwoProjects(typ, projectA, projectB, project, body string) string {
	return projectHCL("a", projectA) + projectHCL("b", projectB) + fmt.Sprintf(`
resource %q "test" {
  project_id = isolation_project.%s.id
%s
}
`, typ, project, body)
}

// environmentConfig is isolation_environment.test in project "a" or "b".
func environmentConfig(projectA, projectB, project, body string) string {
	return inTwoProjects("isolation_environment", projectA, projectB, project, body)
}

// policyConfig is isolation_policy.test in project "a" or "b".
func policyConfig(projectA, projectB, project, body string) string {
	return inTwoProjects("isolation_policy", projectA, projectB, project, body)
}

// tokenConfig is project "a" and isolation_token.test; body is the whole
// token block's content.
func tokenConfig(project, body string) string {
	return projectHCL("a", project) + fmt.Sprintf(`
resource "isolation_token" "test" {
%s
}
`, body)
}

// The policy of the lifecycle tests, in three versions.
const (
	policyBodyV1 = `
  name                 = "web"
  environment_selector = { match_labels = { app = "web" } }
  policy_types         = ["ingress", "egress"]

  ingress = [{
    from  = [{ environment_selector = { match_labels = { app = "lb" } } }]
    ports = [{ port = 8080 }, { protocol = "udp", port = 6000, end_port = 6010 }]
  }]

  egress = [{
    to    = [{ cidr = "0.0.0.0/0", except = ["10.0.0.0/8", "192.168.0.0/16"] }]
    ports = [{ protocol = "tcp", port = 443 }]
  }]
`
	// V2 changes the description, a port and adds a rule: an update in place.
	policyBodyV2 = `
  name                 = "web"
  description          = "web tier"
  environment_selector = { match_labels = { app = "web" } }
  policy_types         = ["ingress", "egress"]

  ingress = [{
    from  = [{ environment_selector = { match_labels = { app = "lb" } } }]
    ports = [{ port = 8443 }, { protocol = "udp", port = 6000, end_port = 6010 }]
  }]

  egress = [
    {
      to    = [{ cidr = "0.0.0.0/0", except = ["10.0.0.0/8", "192.168.0.0/16"] }]
      ports = [{ protocol = "tcp", port = 443 }]
    },
    {
      to    = [{ cidr = "2001:db8::/32" }]
      ports = [{ protocol = "icmp" }]
    },
    {
      to    = [{ fqdn = "registry.npmjs.org" }, { fqdn = "*.github.com" }]
      ports = [{ port = 443 }]
    },
  ]
`
	// V2Reordered is V2 with every set written in another order.
	policyBodyV2Reordered = `
  egress = [
    {
      ports = [{ port = 443 }]
      to    = [{ fqdn = "*.github.com" }, { fqdn = "registry.npmjs.org" }]
    },
    {
      ports = [{ protocol = "icmp" }]
      to    = [{ cidr = "2001:db8::/32" }]
    },
    {
      to    = [{ except = ["192.168.0.0/16", "10.0.0.0/8"], cidr = "0.0.0.0/0" }]
      ports = [{ port = 443 }]
    },
  ]

  ingress = [{
    ports = [{ protocol = "udp", end_port = 6010, port = 6000 }, { protocol = "tcp", port = 8443 }]
    from  = [{ environment_selector = { match_labels = { app = "lb" } } }]
  }]

  policy_types         = ["egress", "ingress"]
  environment_selector = { match_labels = { app = "web" } }
  description          = "web tier"
  name                 = "web"
`
)

// ---- Steps ----

// afterApply returns plan checks: preApply before the apply, and an empty
// plan after it (the plan after every apply step must be empty).
func afterApply(preApply ...plancheck.PlanCheck) resource.ConfigPlanChecks {
	return resource.ConfigPlanChecks{
		PreApply:             preApply,
		PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
	}
}

// noChange is the plan checks of a step whose configuration must plan nothing.
var noChange = resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}}

// createdStep applies config, expects an empty plan after it, and records
// the id of the resource at addr.
func createdStep(config, addr string, id *string) resource.TestStep {
	return resource.TestStep{Config: config, ConfigPlanChecks: afterApply(), ConfigStateChecks: []statecheck.StateCheck{captureID(addr, id)}}
}

// updatedStep applies config as an update in place of the resource at
// addr, after which the plan is empty and checks hold.
func updatedStep(config, addr string, checks ...statecheck.StateCheck) resource.TestStep {
	return resource.TestStep{
		Config:            config,
		ConfigPlanChecks:  afterApply(plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)),
		ConfigStateChecks: checks,
	}
}

// importSteps import the resource at addr with `terraform import` by id,
// every attribute verified, and with an import block, planning no change.
func importSteps(addr string) []resource.TestStep {
	return []resource.TestStep{
		{ResourceName: addr, ImportState: true, ImportStateVerify: true},
		{ResourceName: addr, ImportState: true, ImportStateKind: resource.ImportBlockWithID},
	}
}

// importByNameSteps import the resource at addr by PROJECT_NAME/NAME
// (name): with `terraform import`, every attribute verified, and with an
// import block, planning no change; and an unknown name fails, saying so.
func importByNameSteps(addr, kind, projectName, name string) []resource.TestStep {
	id := projectName + "/" + name
	return []resource.TestStep{
		{ResourceName: addr, ImportState: true, ImportStateId: id, ImportStateVerify: true},
		{ResourceName: addr, ImportState: true, ImportStateId: id, ImportStateKind: resource.ImportBlockWithID},
		{ResourceName: addr, ImportState: true, ImportStateId: projectName + "/nope",
			ExpectError: errorWith("Unable to import "+kind, "has no "+kind+` named "nope"`)},
		{ResourceName: addr, ImportState: true, ImportStateId: "nope/" + name,
			ExpectError: errorWith("Unable to import "+kind, `no project is named "nope"`)},
	}
}

// planFails is a plan-only step whose plan of config fails with want.
func planFails(config string, want *regexp.Regexp) resource.TestStep {
	return resource.TestStep{Config: config, PlanOnly: true, ExpectError: want}
}

// outside returns a PreConfig that plays someone else: change runs against
// the server directly, and the test fails when it does.
func outside(t *testing.T, change func(ctx context.Context) error) func() {
	return func() {
		if err := change(context.Background()); err != nil {
			t.Fatalf("changing outside Terraform: %v", err)
		}
	}
}

// deletedOutsideSteps create the resource at addr from config, delete it
// outside Terraform (del, given its id), then apply config again: the
// refresh finds it gone (a warning, not an error), the plan creates it
// again under a new id, and checks hold.
func deletedOutsideSteps(t *testing.T, config, addr string, del func(ctx context.Context, id string) error, checks ...statecheck.StateCheck) []resource.TestStep {
	var id string
	return []resource.TestStep{
		createdStep(config, addr, &id),
		{
			PreConfig:         outside(t, func(ctx context.Context) error { return del(ctx, id) }),
			Config:            config,
			ConfigPlanChecks:  afterApply(plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate)),
			ConfigStateChecks: append([]statecheck.StateCheck{expectID(addr, &id, false)}, checks...),
		},
	}
}

// unconditionally is a client's Delete without If-Match, as someone
// outside Terraform deletes.
func unconditionally(del func(ctx context.Context, id, etag string) error) func(ctx context.Context, id string) error {
	return func(ctx context.Context, id string) error { return del(ctx, id, "") }
}

// refreshShowsStep changes the resource at addr outside Terraform, then
// runs a refresh: the state records the change (shown) and the plan that
// follows proposes to put it back.
func refreshShowsStep(t *testing.T, addr string, change func(ctx context.Context) error, shown ...resource.TestCheckFunc) resource.TestStep {
	return resource.TestStep{
		PreConfig:    outside(t, change),
		RefreshState: true,
		Check:        resource.ComposeAggregateTestCheckFunc(shown...),
		RefreshPlanChecks: resource.RefreshPlanChecks{
			PostRefresh: []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)},
		},
		ExpectNonEmptyPlan: true,
	}
}

// concurrentChangeSteps are the steps of a change someone else makes
// while Terraform applies: the resource at addr is created by before; the
// apply of after, planned as an update, meets the colleague's change and
// fails with refused; the refresh that follows finds the colleague's
// change (found), which nothing overwrote. before and after go through
// the colleague's proxy.
func concurrentChangeSteps(c *colleague, addr string, id *string, before, after string, refused *regexp.Regexp, found resource.TestCheckFunc) []resource.TestStep {
	return []resource.TestStep{
		createdStep(c.provider+before, addr, id),
		{
			Config:           c.provider + after,
			ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)}},
			ExpectError:      refused,
		},
		{
			RefreshState:       true,
			ExpectNonEmptyPlan: true,
			Check:              resource.ComposeAggregateTestCheckFunc(c.changedOnce, found),
		},
	}
}

// colleague is someone else who changes an object at the one moment
// Terraform cannot see: after its plan, while its apply's write is on the
// way. The provider reaches the shared server through a proxy that, before
// it forwards the first PATCH of the object, runs the colleague's change
// directly on the server; the apply's If-Match then carries the ETag
// Terraform planned with.
type colleague struct {
	provider string // the provider block that goes through the proxy
	mu       sync.Mutex
	changes  int
}

// newColleague makes the colleague who runs change before the first
// PATCH of collection+*id (such as "/v1/projects/" and a captured id).
func newColleague(t *testing.T, collection string, id *string, change func(ctx context.Context) error) *colleague {
	t.Helper()
	c := &colleague{}
	proxy := newProxy(t, testAccEndpoint, func(r *http.Request) error {
		if r.Method != http.MethodPatch || r.URL.Path != collection+*id {
			return nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.changes++; c.changes > 1 {
			return nil
		}
		return change(r.Context())
	})
	c.provider = providerBlock(&testServer{URL: proxy.URL, Token: testAccToken})
	return c
}

// changedOnce checks that the colleague changed the object exactly once,
// or the test proved nothing.
func (c *colleague) changedOnce(*terraform.State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changes != 1 {
		return fmt.Errorf("the colleague saw %d writes of the object, want 1: the test proved nothing", c.changes)
	}
	return nil
}

// newProxy is a reverse proxy to backend, closed with the test, that runs
// before on each request before forwarding it; an error from before is
// answered 502 instead.
func newProxy(t *testing.T, backend string, before func(*http.Request) error) *httptest.Server {
	t.Helper()
	target, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := before(r); err != nil {
			http.Error(w, "the test proxy: "+err.Error(), http.StatusBadGateway)
			return
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	return proxy
}

// outsideProject creates a project on the shared server outside
// Terraform, deleted with the test (if Terraform has not).
func outsideProject(t *testing.T, name string) *apiv1.Project {
	t.Helper()
	p, err := testAccClient.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testAccClient.Projects().Delete(context.Background(), p.ID, "") })
	return p
}

// outsideToken creates a token outside Terraform, revoked with the test;
// the secret scan looks for its secret too.
func outsideToken(t *testing.T, name, role, projectID string) *apiv1.TokenCreated {
	t.Helper()
	tok, err := testAccClient.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: name, Role: role, ProjectID: projectID})
	if err != nil {
		t.Fatal(err)
	}
	transcript.remember(tok.Secret)
	t.Cleanup(func() { _ = testAccClient.Tokens().Delete(context.Background(), tok.ID, "") })
	return tok
}

// deleteEnvironment deletes an environment and waits until it is gone,
// as someone outside Terraform would.
func deleteEnvironment(ctx context.Context, id string) error {
	if err := testAccClient.Environments().Delete(ctx, id, ""); err != nil {
		return err
	}
	return testAccClient.Environments().WaitDeleted(ctx, id)
}

// ---- State checks ----

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

// stateAttr reads an attribute of a resource from the state, for the
// outside changes that need an id.
func stateAttr(s *terraform.State, name, attr string) (string, error) {
	rs, ok := s.RootModule().Resources[name]
	if !ok {
		return "", fmt.Errorf("%s is not in the state", name)
	}
	return rs.Primary.Attributes[attr], nil
}

// getFromServer reads an object of a resource type from the shared
// server; known is false for a type it does not know.
func getFromServer(ctx context.Context, typ, id string) (known bool, err error) {
	switch typ {
	case "isolation_project":
		_, err = testAccClient.Projects().Get(ctx, id)
	case "isolation_environment":
		_, err = testAccClient.Environments().Get(ctx, id)
	case "isolation_policy":
		_, err = testAccClient.Policies().Get(ctx, id)
	case "isolation_token":
		_, err = testAccClient.Tokens().Get(ctx, id)
	default:
		return false, nil
	}
	return true, err
}

// checkDestroyed is a CheckDestroy: every project, environment, policy and
// token the state held is gone from the shared server (a get answers 404).
func checkDestroyed(s *terraform.State) error {
	for key, rs := range s.RootModule().Resources {
		if strings.HasPrefix(key, "data.") {
			continue
		}
		known, err := getFromServer(context.Background(), rs.Type, rs.Primary.ID)
		switch {
		case !known || client.IsNotFound(err):
		case err == nil:
			return fmt.Errorf("%s %s still exists after destroy", rs.Type, rs.Primary.ID)
		default:
			return fmt.Errorf("checking %s %s: %w", rs.Type, rs.Primary.ID, err)
		}
	}
	return nil
}

// checkNothingLeft is the CheckDestroy of a test that goes through a fault
// proxy: proved says whether the proxy did its part (else the test proved
// nothing), the project left no environment behind, and checkDestroyed
// holds.
func checkNothingLeft(projectID *string, proved func() error) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		if err := proved(); err != nil {
			return err
		}
		envs, err := testAccClient.Environments().List(context.Background(), client.ListOptions{ProjectID: *projectID})
		if err != nil && !client.IsNotFound(err) {
			return err
		}
		if len(envs) != 0 {
			return fmt.Errorf("environments left behind: %+v", envs)
		}
		return checkDestroyed(s)
	}
}

// port, cidrPeer, selectorPeer and rule are the knownvalue checks of a
// policy rule's parts as the state holds them.
func port(protocol string, p, end int64) knownvalue.Check {
	var endCheck knownvalue.Check = knownvalue.Null()
	if end != 0 {
		endCheck = knownvalue.Int64Exact(end)
	}
	var portCheck knownvalue.Check = knownvalue.Null()
	if p != 0 {
		portCheck = knownvalue.Int64Exact(p)
	}
	return knownvalue.ObjectExact(map[string]knownvalue.Check{
		"protocol": knownvalue.StringExact(protocol), "port": portCheck, "end_port": endCheck, "port_name": knownvalue.Null(),
	})
}

func cidrPeer(cidr string, except ...string) knownvalue.Check {
	var exceptCheck knownvalue.Check = knownvalue.Null()
	if len(except) > 0 {
		var checks []knownvalue.Check
		for _, e := range except {
			checks = append(checks, knownvalue.StringExact(e))
		}
		exceptCheck = knownvalue.SetExact(checks)
	}
	return knownvalue.ObjectExact(map[string]knownvalue.Check{
		"cidr": knownvalue.StringExact(cidr), "except": exceptCheck, "environment_selector": knownvalue.Null(), "project_selector": knownvalue.Null(), "fqdn": knownvalue.Null(),
	})
}

func fqdnPeer(name string) knownvalue.Check {
	return knownvalue.ObjectExact(map[string]knownvalue.Check{
		"cidr": knownvalue.Null(), "except": knownvalue.Null(), "environment_selector": knownvalue.Null(), "project_selector": knownvalue.Null(), "fqdn": knownvalue.StringExact(name),
	})
}

func selectorPeer(key, value string) knownvalue.Check {
	return knownvalue.ObjectExact(map[string]knownvalue.Check{
		"cidr": knownvalue.Null(), "except": knownvalue.Null(), "fqdn": knownvalue.Null(), "project_selector": knownvalue.Null(),
		"environment_selector": knownvalue.ObjectExact(map[string]knownvalue.Check{
			"match_labels":      knownvalue.MapExact(map[string]knownvalue.Check{key: knownvalue.StringExact(value)}),
			"match_expressions": knownvalue.Null(),
		}),
	})
}

func rule(peersAttr string, peers []knownvalue.Check, ports ...knownvalue.Check) knownvalue.Check {
	return knownvalue.ObjectExact(map[string]knownvalue.Check{
		peersAttr: knownvalue.SetExact(peers),
		"ports":   knownvalue.SetExact(ports),
	})
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

// ---- The plugin protocol, without the CLI ----

// objectWith is a value of typ with the given attributes and every other one null.
func objectWith(typ tftypes.Object, set map[string]tftypes.Value) tftypes.Value {
	vals := map[string]tftypes.Value{}
	for name, at := range typ.AttributeTypes {
		if v, ok := set[name]; ok {
			vals[name] = v
		} else {
			vals[name] = tftypes.NewValue(at, nil)
		}
	}
	return tftypes.NewValue(typ, vals)
}

// configuredProvider returns the provider server configured for endpoint.
// Configure must say nothing but, for a simulate server, that nothing is
// isolated there.
func configuredProvider(t *testing.T, endpoint, token string) tfprotov6.ProviderServer {
	t.Helper()
	p, diags := configureProvider(t, endpoint, token)
	for _, d := range diags {
		if d.Severity != tfprotov6.DiagnosticSeverityWarning || d.Summary != simulateWarning {
			t.Fatalf("configure: %s: %s", d.Summary, d.Detail)
		}
	}
	return p
}

// configureProvider configures a new provider server for endpoint and
// returns it with Configure's diagnostics.
func configureProvider(t *testing.T, endpoint, token string) (tfprotov6.ProviderServer, []*tfprotov6.Diagnostic) {
	t.Helper()
	p, err := testAccProtoV6ProviderFactories["isolation"]()
	if err != nil {
		t.Fatal(err)
	}
	return p, configure(t, p, endpoint, token)
}

// configure sends p a ConfigureProvider for endpoint, as a provider block
// does, and returns its diagnostics.
func configure(t *testing.T, p tfprotov6.ProviderServer, endpoint, token string) []*tfprotov6.Diagnostic {
	t.Helper()
	schemas, err := p.GetProviderSchema(t.Context(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	providerType := schemas.Provider.ValueType().(tftypes.Object)
	config, err := tfprotov6.NewDynamicValue(providerType, objectWith(providerType, map[string]tftypes.Value{
		"endpoint":    tftypes.NewValue(tftypes.String, endpoint),
		"token":       tftypes.NewValue(tftypes.String, token),
		"max_retries": tftypes.NewValue(tftypes.Number, 0),
	}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.ConfigureProvider(t.Context(), &tfprotov6.ConfigureProviderRequest{Config: &config})
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	return resp.Diagnostics
}

// resourceType is the object type of a resource's state.
func resourceType(t *testing.T, p tfprotov6.ProviderServer, typeName string) tftypes.Object {
	t.Helper()
	schemas, err := p.GetProviderSchema(t.Context(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return schemas.ResourceSchemas[typeName].ValueType().(tftypes.Object)
}

// read sends ReadResource for an object of typeName whose state has attrs.
func read(t *testing.T, p tfprotov6.ProviderServer, typeName string, attrs map[string]string) (*tfprotov6.ReadResourceResponse, tftypes.Object) {
	t.Helper()
	typ := resourceType(t, p, typeName)
	vals := map[string]tftypes.Value{}
	for k, v := range attrs {
		vals[k] = tftypes.NewValue(tftypes.String, v)
	}
	state, err := tfprotov6.NewDynamicValue(typ, objectWith(typ, vals))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.ReadResource(t.Context(), &tfprotov6.ReadResourceRequest{TypeName: typeName, CurrentState: &state})
	if err != nil {
		t.Fatal(err)
	}
	return resp, typ
}
