package provider

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
)

// The examples are the documentation's code (tfplugindocs renders them)
// and the quickstart is what `make demo` applies, so both are tested: the
// quickstart is applied for real, and every example is validated against
// the provider's schema by the Terraform CLI.

// examplesDir is the repository's examples/, seen from this package.
var examplesDir = filepath.Join("..", "..", "examples")

func TestAccQuickstart_AppliesWithAnEmptyPlanAndShowsTheEffectivePolicy(t *testing.T) {
	// versions.tf holds the terraform and provider blocks, which the test
	// harness supplies itself (it serves the provider in-process).
	var cfg strings.Builder
	for _, name := range []string{"main.tf", "variables.tf", "outputs.tf"} {
		b, err := os.ReadFile(filepath.Join(examplesDir, "quickstart", name))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Write(b)
		cfg.WriteString("\n")
	}
	ready := knownvalue.ObjectPartial(map[string]knownvalue.Check{
		"state":   knownvalue.StringExact("ready"),
		"address": knownvalue.NotNull(),
	})
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config:           cfg.String(),
		ConfigVariables:  config.Variables{"project_name": config.StringVariable(accName("acc-qs"))},
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownOutputValue("environments", knownvalue.ObjectExact(map[string]knownvalue.Check{"api": ready, "db": ready})),
			statecheck.ExpectKnownOutputValueAtPath("db_effective_policy", tfjsonpath.New("policies"),
				knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("api-and-db")})),
			statecheck.ExpectKnownOutputValueAtPath("db_effective_policy", tfjsonpath.New("ingress"), knownvalue.ListExact([]knownvalue.Check{
				knownvalue.ObjectExact(map[string]knownvalue.Check{
					"from":  knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("api"), knownvalue.StringExact("db")}),
					"ports": knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("tcp/5432")}),
				}),
			})),
			// The database reaches api and itself on 5432, and no name nor
			// address of the internet: only api fetches packages.
			statecheck.ExpectKnownOutputValueAtPath("db_effective_policy", tfjsonpath.New("egress"), knownvalue.ListExact([]knownvalue.Check{
				knownvalue.ObjectExact(map[string]knownvalue.Check{
					"to":    knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("api"), knownvalue.StringExact("db")}),
					"ports": knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("tcp/5432")}),
				}),
			})),
		},
	}}))
}

// TestAccExamples_AreFormattedAndValidAgainstTheProviderSchema runs `terraform
// fmt -check` on every example and `terraform validate` on the provider
// example, the quickstart, and all resource and data source examples
// together (they refer to each other, as the docs read), with the provider
// built from this tree and installed through dev_overrides.
func TestAccExamples_AreFormattedAndValidAgainstTheProviderSchema(t *testing.T) {
	requireAcc(t)
	tfPath := os.Getenv("TF_ACC_TERRAFORM_PATH")
	ctx := t.Context()

	fmtCheck := exec.CommandContext(ctx, tfPath, "fmt", "-check", "-recursive", "-diff", examplesDir)
	if out, err := fmtCheck.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check: %v\n%s", err, out)
	}

	cliConfig := devProvider.cliConfigFile(t)

	resourcesAndDataSources, err := filepath.Glob(filepath.Join(examplesDir, "*", "isolation_*", "*.tf"))
	if err != nil || len(resourcesAndDataSources) == 0 {
		t.Fatalf("no resource or data source examples found: %v", err)
	}
	quickstart, _ := filepath.Glob(filepath.Join(examplesDir, "quickstart", "*.tf"))
	cases := map[string][]string{
		"provider":   {filepath.Join(examplesDir, "provider", "provider.tf")},
		"quickstart": quickstart,
		// The provider example declares the provider for the rest.
		"resources and data sources": append(resourcesAndDataSources, filepath.Join(examplesDir, "provider", "provider.tf")),
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				// Files of different examples may share a base name.
				dst := strings.ReplaceAll(strings.TrimPrefix(f, examplesDir+string(filepath.Separator)), string(filepath.Separator), "_")
				if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stderr strings.Builder
			tf := &devrun.Terraform{Path: tfPath, Dir: dir, Env: []string{"TF_CLI_CONFIG_FILE=" + cliConfig, "CHECKPOINT_DISABLE=1"}, Stderr: &stderr}
			out, err := tf.Output(ctx, "validate", "-no-color")
			if err != nil {
				t.Errorf("terraform validate: %v\n%s%s", err, out, stderr.String())
			}
		})
	}
}
