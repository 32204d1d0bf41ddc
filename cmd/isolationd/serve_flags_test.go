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

// wantRefusedStart runs serve with args and a data dir of its own, and
// checks that it exits with code, its stderr saying want, before it has
// created the data dir: a flag that cannot apply stops serve before
// anything starts.
func wantRefusedStart(t *testing.T, code int, want string, args ...string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	var out, errb bytes.Buffer
	got := run(append([]string{"serve", "--data-dir", dir}, args...), &out, &errb)
	if got != code || !strings.Contains(errb.String(), want) {
		t.Errorf("serve %v: exit %d, stderr %q; want exit %d saying %q", args, got, errb.String(), code, want)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("serve %v: the refused start created its data dir", args)
	}
}

// The netns driver's own flags are refused before anything starts when
// they cannot apply: with another driver, or an IPv6 pool that is not a
// prefix.
func TestServe_RefusesNetnsFlagsThatCannotApplyBeforeStarting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--address-pool6", "fd00:198:18::/96"}, "--address-pool6 only applies to the netns driver"},
		{[]string{"--driver", "simulate", "--netns-prefix", "abc"}, "--netns-prefix only applies to the netns driver"},
		{[]string{"--driver", "netns", "--address-pool6", "fd00:198:18::1/96"}, "host bits set"},
		{[]string{"--driver", "netns", "--address-pool6", "not-a-cidr"}, "--address-pool6"},
	} {
		wantRefusedStart(t, 1, tc.want, append([]string{"--listen", "127.0.0.1:0"}, tc.args...)...)
	}
}

// A quarantine that is not a positive duration is refused before anything
// starts: handing a freed address out again at once is what it prevents.
func TestServe_RefusesAnAddressQuarantineThatIsNotPositive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		want  string
	}{
		{"0s", "--address-quarantine 0s: must be positive"},
		{"-1h", "--address-quarantine -1h0m0s: must be positive"},
		{"a-day", "-address-quarantine"},
	} {
		wantRefusedStart(t, 2, tc.want, "--listen", "127.0.0.1:0", "--address-quarantine", tc.value)
	}
}

// The serve flags of access control are refused before anything starts:
// a bad --rate-limit-role, and plain HTTP beyond loopback without
// --insecure-listen.
func TestServe_RefusesBadAccessSettingsBeforeStarting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--rate-limit-role", "owner=5"}, 2, "--rate-limit-role"},
		{[]string{"--rate-limit-role", "viewer=fast"}, 2, "--rate-limit-role"},
		{[]string{"--listen", "0.0.0.0:0"}, 1, "--insecure-listen"},
		{[]string{"--listen", ":0", "--tls-cert", "server.crt"}, 1, "--tls-key"},
	} {
		wantRefusedStart(t, tc.code, tc.want, tc.args...)
	}
}

func TestServe_RefusesADefaultEnvironmentQuotaOutOfRangeBeforeStarting(t *testing.T) {
	t.Parallel()
	for _, quota := range []string{"-1", "1048577", "lots"} {
		wantRefusedStart(t, 2, "default-environment-quota", "--listen", "127.0.0.1:0", "--default-environment-quota", quota)
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
