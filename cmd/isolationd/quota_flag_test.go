package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestServe_RefusesADefaultEnvironmentQuotaOutOfRangeBeforeStarting(t *testing.T) {
	t.Parallel()
	for _, quota := range []string{"-1", "1048577", "lots"} {
		dir := filepath.Join(t.TempDir(), "data")
		var out, errb bytes.Buffer
		code := run([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--default-environment-quota", quota}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "default-environment-quota") {
			t.Errorf("--default-environment-quota %s: exit %d, stderr %q; want exit 2 naming the flag", quota, code, errb.String())
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("--default-environment-quota %s: the refused start created its data dir", quota)
		}
	}
}

func TestServe_ProjectsGetAnEnvironmentQuotaOf1000UnlessToldOtherwise(t *testing.T) {
	t.Parallel()
	for flags, want := range map[string]int64{"": 1000, "0": 0, "7": 7} {
		var extra []string
		if flags != "" {
			extra = []string{"--default-environment-quota", flags}
		}
		p := startProc(t, t.TempDir(), extra...)
		status, body, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "quota"}, "")
		if err != nil || status != 201 {
			t.Fatalf("create project (flag %q): %d %s %v", flags, status, body, err)
		}
		var prj apiv1.Project
		if err := json.Unmarshal(body, &prj); err != nil {
			t.Fatal(err)
		}
		if prj.EnvironmentQuota != want {
			t.Errorf("flag %q: environment_quota %d, want %d", flags, prj.EnvironmentQuota, want)
		}
	}
}
