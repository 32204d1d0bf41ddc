package devrun

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteCLIConfig_OverridesOnlyThisProviderAndNeedsItsBinary(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	if _, err := WriteCLIConfig(t.TempDir(), bin); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("without a provider binary: err = %v, want one that says to run make build", err)
	}
	if err := os.WriteFile(filepath.Join(bin, ProviderBinary), []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := WriteCLIConfig(t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"isolationhq/isolation" = "` + bin + `"`, "dev_overrides", "direct {}"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("CLI config lacks %q:\n%s", want, b)
		}
	}
}

func TestCopyConfig_CopiesTerraformFilesOnly(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "work")
	for name, body := range map[string]string{"main.tf": "a", "vars.tfvars": "b", "terraform.tfstate": "c", "README.md": "d"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := CopyConfig(src, dst); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dst)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != "main.tf,vars.tfvars" {
		t.Errorf("copied %v, want main.tf and vars.tfvars", got)
	}
	if err := CopyConfig(t.TempDir(), dst); err == nil {
		t.Error("copying a directory without .tf files succeeded")
	}
}

func TestExitCode_TellsTerraformsStatusFromOtherFailures(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]int{
		nil: 0,
		&ExitError{Args: []string{"plan"}, Code: 2}: 2,
		errors.New("could not start"):               -1,
	} {
		if got := ExitCode(err); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

func TestFindTerraform_ExplicitPathMustExist(t *testing.T) {
	t.Parallel()
	if _, err := FindTerraform(filepath.Join(t.TempDir(), "no-such-terraform")); err == nil {
		t.Error("a missing explicit CLI was accepted")
	}
}
