package provider

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
)

// BenchmarkTerraformEnvironmentsVsTerraformData measures what the provider
// costs a Terraform user: the wall time of `terraform apply`, `terraform
// plan` (with refresh) and `terraform destroy` of N isolation_environment
// resources against a local isolationd, next to the same commands on N
// built-in terraform_data resources in the same run, and reports each
// ratio (targets: apply ≤ 1.3x, plan ≤ 2x, destroy ≤ 1.3x).
//
// It uses the real CLI, the provider built as a binary and installed
// through dev_overrides, and isolationd as its own process, as a user runs
// them; -parallelism is Terraform's default (10). The two configurations
// alternate in order, round after round, and the figures are medians.
//
// Settings (environment): ISOLATION_BENCH_BIN, the directory holding
// isolationd and terraform-provider-isolation (built into a temporary
// directory when unset); ISOLATION_BENCH_N (default 500);
// ISOLATION_BENCH_ROUNDS (default 3). Run it with -benchtime 1x: each
// iteration is a full set of rounds.
func BenchmarkTerraformEnvironmentsVsTerraformData(b *testing.B) {
	n := envInt(b, "ISOLATION_BENCH_N", 500)
	rounds := envInt(b, "ISOLATION_BENCH_ROUNDS", 3)
	tfPath, err := devrun.FindTerraform(os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		b.Fatal(err)
	}
	binDir := benchBinaries(b)
	work := b.TempDir()

	logs, err := os.Create(filepath.Join(work, "isolationd.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	dataDir := filepath.Join(work, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		b.Fatal(err)
	}
	srv, err := devrun.StartServer(b.Context(), filepath.Join(binDir, devrun.ServerBinary), dataDir, logs, 30*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := srv.Stop(30 * time.Second); err != nil {
			b.Errorf("stopping isolationd: %v", err)
		}
	}()
	floorDir := b.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(floorDir, "terraform-provider-floor"), "./testdata/floorprovider").CombinedOutput(); err != nil {
		b.Fatalf("building the floor provider: %v\n%s", err, out)
	}
	cliConfig, err := devrun.WriteCLIConfig(work, binDir, devrun.Override{Source: "isolationhq/floor", Dir: floorDir})
	if err != nil {
		b.Fatal(err)
	}

	// The two configurations the targets compare, and floor_thing: the
	// same graph on a plugin provider that does nothing, which shows what
	// any plugin provider costs over a built-in resource.
	configs := []*benchConfig{
		{name: "isolation_environment", hcl: environmentsHCL(n)},
		{name: "terraform_data", hcl: terraformDataHCL(n)},
		{name: "floor_thing", hcl: floorHCL(n)},
	}
	for _, c := range configs {
		dir := filepath.Join(work, c.name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(c.hcl), 0o644); err != nil {
			b.Fatal(err)
		}
		c.tf = &devrun.Terraform{Path: tfPath, Dir: dir, Env: devrun.Env(cliConfig, srv)}
		c.srv = srv
	}

	b.ResetTimer()
	for i := range b.N {
		for r := range rounds {
			// Rotate which configuration goes first, so that none always
			// runs on a warmer (or more tired) machine.
			first := (i*rounds + r) % len(configs)
			for k := range configs {
				c := configs[(first+k)%len(configs)]
				if err := c.round(b); err != nil {
					b.Fatalf("%s: %v (isolationd log: %s)", c.name, err, logs.Name())
				}
			}
		}
	}
	b.StopTimer()

	report := benchReport(n, configs)
	b.Log(report)
	fmt.Fprint(os.Stderr, report)
	for _, cmd := range benchCommands {
		env, data := median(configs[0].wall[cmd.name]), median(configs[1].wall[cmd.name])
		b.ReportMetric(env.Seconds()/data.Seconds(), cmd.name+"-ratio")
		b.ReportMetric(env.Seconds(), cmd.name+"-env-s")
		b.ReportMetric(data.Seconds(), cmd.name+"-data-s")
	}
}

// benchCommands are the timed commands, in order, with their targets as a
// multiple of terraform_data's time.
var benchCommands = []struct {
	name   string
	args   []string
	target float64
}{
	{"apply", []string{"apply", "-auto-approve", "-input=false", "-no-color"}, 1.3},
	{"plan", []string{"plan", "-detailed-exitcode", "-input=false", "-no-color"}, 2},
	{"destroy", []string{"destroy", "-auto-approve", "-input=false", "-no-color"}, 1.3},
}

// benchConfig is one of the two configurations and its measurements, by
// command: wall time, the CPU time of terraform and its provider plugins,
// and the CPU time isolationd spent meanwhile.
type benchConfig struct {
	name, hcl              string
	tf                     *devrun.Terraform
	srv                    *devrun.Server
	wall, tfCPU, serverCPU map[string][]time.Duration
}

// round applies the configuration from nothing, plans it (with refresh:
// the plan must be empty) and destroys it, measuring each command.
func (c *benchConfig) round(b *testing.B) error {
	if c.wall == nil {
		c.wall, c.tfCPU, c.serverCPU = map[string][]time.Duration{}, map[string][]time.Duration{}, map[string][]time.Duration{}
	}
	for _, cmd := range benchCommands {
		var stderr strings.Builder
		c.tf.Stderr = &stderr
		serverBefore, err := c.srv.CPUTime()
		if err != nil {
			return err
		}
		start := time.Now()
		err = c.tf.Run(b.Context(), cmd.args...)
		elapsed := time.Since(start)
		if err != nil {
			return fmt.Errorf("terraform %s: %w\n%s", cmd.name, err, stderr.String())
		}
		serverAfter, err := c.srv.CPUTime()
		if err != nil {
			return err
		}
		c.wall[cmd.name] = append(c.wall[cmd.name], elapsed)
		c.tfCPU[cmd.name] = append(c.tfCPU[cmd.name], c.tf.LastCPU)
		c.serverCPU[cmd.name] = append(c.serverCPU[cmd.name], serverAfter-serverBefore)
	}
	return nil
}

// benchReport is the table of medians and ratios, with every round's wall
// time, so a reader sees the spread behind each median.
func benchReport(n int, configs []*benchConfig) string {
	env, data, floor := configs[0], configs[1], configs[2]
	var r strings.Builder
	fmt.Fprintf(&r, "\nN = %d resources, %d rounds; medians in seconds (tf CPU: terraform and its provider plugins)\n", n, len(env.wall["apply"]))
	fmt.Fprintf(&r, "%-8s %-22s %7s %8s %11s   %s\n", "command", "configuration", "wall", "tf CPU", "server CPU", "wall per round")
	for _, cmd := range benchCommands {
		for _, c := range configs {
			fmt.Fprintf(&r, "%-8s %-22s %7.2f %8.2f %11.2f   %s\n", cmd.name, c.name,
				median(c.wall[cmd.name]).Seconds(), median(c.tfCPU[cmd.name]).Seconds(), median(c.serverCPU[cmd.name]).Seconds(),
				seconds(c.wall[cmd.name]))
		}
	}
	fmt.Fprintf(&r, "\nwall time ratios: isolation_environment / terraform_data against the target; floor_thing / terraform_data is\n"+
		"what any plugin provider pays; isolation_environment / floor_thing is what this provider and isolationd add to it\n")
	fmt.Fprintf(&r, "%-8s %7s %7s %8s %11s %11s\n", "command", "ratio", "target", "", "floor/data", "env/floor")
	for _, cmd := range benchCommands {
		e, d, f := median(env.wall[cmd.name]).Seconds(), median(data.wall[cmd.name]).Seconds(), median(floor.wall[cmd.name]).Seconds()
		verdict := "met"
		if e/d > cmd.target {
			verdict = "MISSED"
		}
		fmt.Fprintf(&r, "%-8s %6.2fx %6.1fx %8s %10.2fx %10.2fx\n", cmd.name, e/d, cmd.target, verdict, f/d, e/f)
	}
	return r.String()
}

func seconds(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	return strings.Join(parts, " ")
}

// environmentsHCL is a project and n environments in it.
func environmentsHCL(n int) string {
	return fmt.Sprintf(`
terraform {
  required_providers {
    isolation = {
      source = %q
    }
  }
}

resource "isolation_project" "bench" {
  name = "bench"
}

resource "isolation_environment" "env" {
  count      = %d
  project_id = isolation_project.bench.id
  name       = "env-${count.index}"
  labels     = { bench = "true" }
}
`, devrun.ProviderSource, n)
}

// terraformDataHCL is the same graph with built-in terraform_data: one
// resource that the n others depend on.
func terraformDataHCL(n int) string {
	return fmt.Sprintf(`
resource "terraform_data" "project" {
  input = "bench"
}

resource "terraform_data" "env" {
  count = %d
  input = {
    project_id = terraform_data.project.id
    name       = "env-${count.index}"
    labels     = { bench = "true" }
  }
}
`, n)
}

// floorHCL is the same graph on the floor provider.
func floorHCL(n int) string {
	return fmt.Sprintf(`
terraform {
  required_providers {
    floor = {
      source = "isolationhq/floor"
    }
  }
}

resource "floor_thing" "project" {
  project_id = "none"
  name       = "bench"
}

resource "floor_thing" "env" {
  count      = %d
  project_id = floor_thing.project.id
  name       = "env-${count.index}"
  labels     = { bench = "true" }
}
`, n)
}

// benchBinaries returns the directory with isolationd and the provider:
// ISOLATION_BENCH_BIN (make bench builds them into bin/), or a fresh build.
func benchBinaries(b *testing.B) string {
	if dir := os.Getenv("ISOLATION_BENCH_BIN"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			b.Fatal(err)
		}
		return abs
	}
	dir := b.TempDir()
	for bin, pkg := range map[string]string{devrun.ProviderBinary: "../..", devrun.ServerBinary: "../../cmd/isolationd"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, bin), pkg).CombinedOutput(); err != nil {
			b.Fatalf("building %s: %v\n%s", bin, err, out)
		}
	}
	return dir
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
