// Command releasecheck installs the provider the way a user of a release
// would, from the artifacts `make release` wrote into dist/, and proves that
// Terraform (and OpenTofu) can use it: it verifies every archive against the
// release's SHA256SUMS, unpacks the host's provider zip into an unpacked
// filesystem mirror, starts the release's own isolationd, and for each CLI
// runs `init` with a CLI configuration that knows only that mirror (so
// nothing can come from the network) and a `plan` of examples/quickstart,
// which must name the quickstart's resources; it then applies the plan,
// finds the release's version in the User-Agent the server audited, and
// destroys. `make release-check` runs it.
//
// It uses internal/devrun, as `make demo` does, to run isolationd and the
// CLI as separate processes.
package main

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
)

const project = "terraform-provider-isolation"

// providerPlatforms are the OS_ARCH targets of the provider's zips, as
// .goreleaser.yaml builds them; isolationd is released for Linux only.
var (
	providerPlatforms   = []string{"darwin_amd64", "darwin_arm64", "linux_amd64", "linux_arm64", "windows_amd64", "windows_arm64"}
	isolationdPlatforms = []string{"linux_amd64", "linux_arm64"}
)

// quickstartResources are the managed resources a plan of
// examples/quickstart creates on an empty server.
var quickstartResources = []string{
	"isolation_environment.api",
	"isolation_environment.db",
	"isolation_policy.api_packages",
	"isolation_policy.app",
	"isolation_project.this",
}

func main() {
	c := &check{out: os.Stdout}
	var clis stringList
	flag.StringVar(&c.dist, "dist", "dist", "the directory make release wrote")
	flag.StringVar(&c.version, "version", "", "the release's version (required)")
	flag.StringVar(&c.example, "example", filepath.Join("examples", "quickstart"), "the configuration to plan")
	flag.Var(&clis, "cli", "a Terraform or OpenTofu CLI to install and plan with (repeatable)")
	keep := flag.Bool("keep", false, "keep the temporary directory (mirror, working directories, server log)")
	flag.Parse()
	for _, cli := range clis {
		// Absolute, as each command runs in its own working directory.
		abs, err := devrun.FindTerraform(cli)
		if err != nil {
			fmt.Fprintf(os.Stderr, "releasecheck: %v\n", err)
			os.Exit(2)
		}
		c.clis = append(c.clis, abs)
	}
	if c.version == "" || len(clis) == 0 {
		fmt.Fprintln(os.Stderr, "releasecheck: -version and at least one -cli are required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := c.run(ctx, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "\nrelease check failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(c.out, "\nrelease check passed: %s installed from its artifacts, planned, applied and destroyed with %d CLI(s)\n", c.version, len(c.clis))
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

type check struct {
	dist, version, example string
	clis                   []string
	out                    io.Writer

	dir    string // the temporary directory everything is unpacked into
	mirror string // the unpacked filesystem mirror
}

func (c *check) run(ctx context.Context, keep bool) (err error) {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("the check starts the release's isolationd, which is built for Linux only (this is %s)", runtime.GOOS)
	}
	c.dir, err = os.MkdirTemp("", "isolation-release-check-")
	if err != nil {
		return err
	}
	defer func() {
		if keep {
			fmt.Fprintf(c.out, "kept %s\n", c.dir)
			return
		}
		if rmErr := os.RemoveAll(c.dir); rmErr != nil && err == nil {
			err = rmErr
		}
	}()
	c.mirror = filepath.Join(c.dir, "mirror")

	if err := c.verifySums(); err != nil {
		return err
	}
	server, err := c.startIsolationd(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := server.Stop(30 * time.Second); err == nil {
			err = stopErr
		}
		if err != nil {
			if b, readErr := os.ReadFile(filepath.Join(c.dir, "isolationd.log")); readErr == nil {
				fmt.Fprintf(c.out, "\nisolationd's log:\n%s", b)
			}
		}
	}()
	for i, cli := range c.clis {
		if err := c.installAndPlan(ctx, i, cli, server); err != nil {
			return err
		}
	}
	return nil
}

// verifySums checks that the SHA256SUMS lists exactly the release's
// artifacts and that each file in dist matches its line, and that the
// registry manifest is the repository's.
func (c *check) verifySums() error {
	sumsName := fmt.Sprintf("%s_%s_SHA256SUMS", project, c.version)
	sums, err := readSums(filepath.Join(c.dist, sumsName))
	if err != nil {
		return err
	}
	want := []string{fmt.Sprintf("%s_%s_manifest.json", project, c.version)}
	for _, p := range providerPlatforms {
		want = append(want, c.providerZip(p))
	}
	for _, p := range isolationdPlatforms {
		want = append(want, c.isolationdArchive(p))
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(sums)); !slices.Equal(got, want) {
		return fmt.Errorf("%s lists %q, want %q", sumsName, got, want)
	}
	for _, name := range want {
		got, err := fileSHA256(filepath.Join(c.dist, name))
		if err != nil {
			return err
		}
		if got != sums[name] {
			return fmt.Errorf("%s: SHA-256 %s, but %s says %s", name, got, sumsName, sums[name])
		}
	}
	manifest, err := os.ReadFile(filepath.Join(c.dist, want[slices.IndexFunc(want, func(n string) bool { return strings.HasSuffix(n, "_manifest.json") })]))
	if err != nil {
		return err
	}
	repoManifest, err := os.ReadFile("terraform-registry-manifest.json")
	if err != nil {
		return err
	}
	if !bytes.Equal(manifest, repoManifest) {
		return errors.New("the release's manifest differs from terraform-registry-manifest.json")
	}
	fmt.Fprintf(c.out, "%s: %d artifacts, each matching its SHA-256\n", sumsName, len(want))
	return nil
}

func (c *check) providerZip(platform string) string {
	return fmt.Sprintf("%s_%s_%s.zip", project, c.version, platform)
}

func (c *check) isolationdArchive(platform string) string {
	return fmt.Sprintf("isolationd_%s_%s.tar.gz", c.version, platform)
}

// startIsolationd unpacks the host's isolationd archive, checks that the
// binary reports the release's version, and starts it on a fresh store.
func (c *check) startIsolationd(ctx context.Context) (*devrun.Server, error) {
	host := runtime.GOOS + "_" + runtime.GOARCH
	bin := filepath.Join(c.dir, "isolationd")
	if err := extractTarGz(filepath.Join(c.dist, c.isolationdArchive(host)), devrun.ServerBinary, bin); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("isolationd version: %w", err)
	}
	if !strings.Contains(string(out), c.version) {
		return nil, fmt.Errorf("isolationd version printed %q, want the release's %s", out, c.version)
	}
	dataDir := filepath.Join(c.dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return nil, err
	}
	logs, err := os.Create(filepath.Join(c.dir, "isolationd.log"))
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	s, err := devrun.StartServer(ctx, bin, dataDir, logs, 30*time.Second)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.out, "isolationd %s from %s is ready at %s\n", c.version, c.isolationdArchive(host), s.URL)
	return s, nil
}

// installAndPlan unpacks the host's provider zip into the mirror under
// the CLI's registry hostname, runs init with a CLI configuration that
// knows only that mirror, and plans the example.
func (c *check) installAndPlan(ctx context.Context, i int, cli string, server *devrun.Server) error {
	name, hostname, err := identify(ctx, cli)
	if err != nil {
		return err
	}
	platform := runtime.GOOS + "_" + runtime.GOARCH
	binary := fmt.Sprintf("%s_v%s", project, c.version)
	pkgDir := filepath.Join(c.mirror, hostname, "isolationhq", "isolation", c.version, platform)
	if err := os.MkdirAll(pkgDir, 0o750); err != nil {
		return err
	}
	if err := extractZip(filepath.Join(c.dist, c.providerZip(platform)), binary, filepath.Join(pkgDir, binary)); err != nil {
		return err
	}

	dir := filepath.Join(c.dir, fmt.Sprintf("%d-%s", i, name))
	if err := devrun.CopyConfig(c.example, dir); err != nil {
		return err
	}
	cliConfig := dir + ".tfrc"
	// No direct block: a provider that is not in the mirror fails to
	// install rather than being fetched.
	rc := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path    = %q\n    include = [\"%s/isolationhq/isolation\"]\n  }\n}\n", c.mirror, hostname)
	if err := os.WriteFile(cliConfig, []byte(rc), 0o600); err != nil {
		return err
	}
	var log bytes.Buffer
	tf := &devrun.Terraform{
		Path: cli, Dir: dir,
		// A plugin cache would hide whether the mirror was used.
		Env:    append(devrun.Env(cliConfig, server), "TF_PLUGIN_CACHE_DIR="),
		Stdout: &log, Stderr: &log,
	}
	fail := func(err error) error {
		return fmt.Errorf("%s: %w\n%s", name, err, log.String())
	}
	if err := tf.Run(ctx, "init", "-input=false", "-no-color"); err != nil {
		return fail(err)
	}
	selected, err := selectedVersion(ctx, tf, hostname+"/isolationhq/isolation")
	if err != nil {
		return fail(err)
	}
	if selected != c.version {
		return fail(fmt.Errorf("init selected isolationhq/isolation %q, want %q from the mirror", selected, c.version))
	}
	if err := tf.Run(ctx, "plan", "-input=false", "-no-color", "-out=release-check.tfplan"); err != nil {
		return fail(err)
	}
	created, err := plannedCreates(ctx, tf, "release-check.tfplan")
	if err != nil {
		return fail(err)
	}
	if !slices.Equal(created, quickstartResources) {
		return fail(fmt.Errorf("the plan creates %q, want %q", created, quickstartResources))
	}
	fmt.Fprintf(c.out, "%s: init installed %s/isolationhq/isolation %s from the mirror; plan creates %s\n",
		name, hostname, selected, strings.Join(created, ", "))

	// Applying shows the release's provider saying its version to the
	// server, which audits every change with the request's User-Agent.
	if err := tf.Run(ctx, "apply", "-input=false", "-no-color", "release-check.tfplan"); err != nil {
		return fail(err)
	}
	ua, err := lastUserAgent(ctx, server, "project.create")
	if err != nil {
		return fail(err)
	}
	if want := "terraform-provider-isolation/" + c.version + " "; !strings.HasPrefix(ua, want) {
		return fail(fmt.Errorf("the provider's User-Agent is %q, want it to start with %q", ua, want))
	}
	if err := tf.Run(ctx, "destroy", "-auto-approve", "-input=false", "-no-color"); err != nil {
		return fail(err)
	}
	fmt.Fprintf(c.out, "%s: applied and destroyed; the provider's User-Agent was %q\n", name, ua)
	return nil
}

// lastUserAgent is the User-Agent of the latest audit event of action.
func lastUserAgent(ctx context.Context, server *devrun.Server, action string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server.URL+"/v1/audit-events?limit=1000&action="+url.QueryEscape(action), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+server.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/audit-events: %s", resp.Status)
	}
	var page apiv1.List[apiv1.AuditEvent]
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return "", fmt.Errorf("GET /v1/audit-events: %w", err)
	}
	if len(page.Items) == 0 {
		return "", fmt.Errorf("the audit trail holds no %s event", action)
	}
	return page.Items[len(page.Items)-1].Source.UserAgent, nil
}

// identify tells Terraform from OpenTofu by what `version` prints, and
// returns a name for the CLI and the registry hostname it resolves
// isolationhq/isolation to.
func identify(ctx context.Context, cli string) (name, hostname string, err error) {
	out, err := (&devrun.Terraform{Path: cli}).Output(ctx, "version")
	if err != nil {
		return "", "", fmt.Errorf("%s version: %w", cli, err)
	}
	if strings.Contains(string(out), "OpenTofu v") {
		return "tofu", "registry.opentofu.org", nil
	}
	return "terraform", "registry.terraform.io", nil
}

// selectedVersion is the version of provider that init selected, from
// `version -json`'s provider_selections.
func selectedVersion(ctx context.Context, tf *devrun.Terraform, provider string) (string, error) {
	out, err := tf.Output(ctx, "version", "-json")
	if err != nil {
		return "", err
	}
	var v struct {
		ProviderSelections map[string]string `json:"provider_selections"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return "", fmt.Errorf("version -json: %w", err)
	}
	return v.ProviderSelections[provider], nil
}

// plannedCreates lists the managed resources the saved plan creates, sorted.
func plannedCreates(ctx context.Context, tf *devrun.Terraform, planFile string) ([]string, error) {
	out, err := tf.Output(ctx, "show", "-json", planFile)
	if err != nil {
		return nil, err
	}
	var plan struct {
		ResourceChanges []struct {
			Address string `json:"address"`
			Mode    string `json:"mode"`
			Change  struct {
				Actions []string `json:"actions"`
			} `json:"change"`
		} `json:"resource_changes"`
	}
	if err := json.Unmarshal(out, &plan); err != nil {
		return nil, fmt.Errorf("show -json: %w", err)
	}
	var created []string
	for _, rc := range plan.ResourceChanges {
		if rc.Mode == "managed" && slices.Equal(rc.Change.Actions, []string{"create"}) {
			created = append(created, rc.Address)
		}
	}
	slices.Sort(created)
	return created, nil
}

// readSums parses a SHA256SUMS file: "HEX  NAME" per line.
func readSums(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w (run `make release` first)", err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != sha256.Size*2 {
			return nil, fmt.Errorf("%s: malformed line %q", path, sc.Text())
		}
		sums[name] = sum
	}
	return sums, sc.Err()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// extractZip writes the zip's only file, which must be named name, to dst.
func extractZip(archive, name, dst string) error {
	zr, err := zip.OpenReader(archive)
	if err != nil {
		return err
	}
	defer zr.Close()
	if len(zr.File) != 1 || zr.File[0].Name != name {
		names := make([]string, len(zr.File))
		for i, f := range zr.File {
			names[i] = f.Name
		}
		return fmt.Errorf("%s holds %q, want only %q", archive, names, name)
	}
	r, err := zr.File[0].Open()
	if err != nil {
		return err
	}
	defer r.Close()
	return writeExecutable(dst, r)
}

// extractTarGz writes the file named name of a .tar.gz to dst.
func extractTarGz(archive, name, dst string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s holds no %s", archive, name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		if h.Name == name {
			return writeExecutable(dst, tr)
		}
	}
}

func writeExecutable(dst string, r io.Reader) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o700) //nolint:gosec // G302: a binary the check runs, in its own temporary directory
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
