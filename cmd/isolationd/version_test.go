package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/version"
)

func TestVersion_PrintsTheServerVersion(t *testing.T) {
	code, out := runCLI(t, "version")
	if code != 0 || out != "isolationd "+version.String()+"\n" {
		t.Fatalf("isolationd version: exit %d, output %q", code, out)
	}
}

func TestVersion_IsSetByLdflagsAtBuildTime(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "isolationd")
	const want = "9.8.7-ldflags"
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X github.com/isolationhq/terraform-provider-isolation/internal/version.Version="+want, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("isolationd version: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "isolationd "+want {
		t.Fatalf("isolationd version = %q, want %q", got, "isolationd "+want)
	}
}
