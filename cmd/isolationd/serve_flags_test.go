package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc/inittest"
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
		{[]string{"--driver", "simulate", "--uplink", "host"}, "--uplink only applies to the netns driver"},
		{[]string{"--driver", "netns", "--uplink", "elsewhere"}, "write host or netns:NAME"},
		{[]string{"--driver", "netns", "--address-pool6", "fd00:198:18::1/96"}, "host bits set"},
		{[]string{"--driver", "netns", "--address-pool6", "not-a-cidr"}, "--address-pool6"},
		{[]string{"--driver", "simulate", "--dns-upstream", "192.0.2.53"}, "--dns-upstream only applies to the netns driver"},
		{[]string{"--driver", "netns", "--dns-upstream", "resolver.example"}, `--dns-upstream: netns: DNS upstream "resolver.example": write an IP address`},
		{[]string{"--driver", "netns", "--dns-upstream", "192.0.2.53:0"}, "--dns-upstream"},
		{[]string{"--driver", "netns", "--dns-min-ttl", "2h"}, "--dns-min-ttl (2h0m0s) is above --dns-max-ttl (1h0m0s)"},
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

// A per-token limit of exec sessions below one would refuse every exec:
// it is refused before anything starts.
func TestServe_RefusesAnExecSessionLimitBelowOneBeforeStarting(t *testing.T) {
	t.Parallel()
	for _, n := range []string{"0", "-3", "many"} {
		wantRefusedStart(t, 2, "exec-sessions-per-token", "--listen", "127.0.0.1:0", "--exec-sessions-per-token", n)
	}
}

// --exec-sessions-per-token reaches the API: with 1, a token's second
// session at once is refused with 429 naming the limit. (The user
// namespace is off: the flag, not the container, is under test.)
func TestServe_ExecSessionsPerTokenLimitsEachTokensOpenSessions(t *testing.T) {
	needContainers(t)
	dir := t.TempDir()
	prefix := netnstest.UniquePrefix('x')
	t.Cleanup(func() {
		if code, out := runCLI(t, "cleanup", "--data-dir", dir, "--netns-prefix", prefix); code != 0 {
			t.Errorf("isolationd cleanup: exit %d: %s", code, out)
		}
	})
	p := startProc(t, dir, "--driver", "netns", "--netns-prefix", prefix, "--address-pool", "198.18.0.0/16",
		"--init-binary", inittest.Binary(t), "--userns", "off", "--exec-sessions-per-token", "1")
	t.Setenv(envEndpoint, p.url)
	t.Setenv(envToken, testToken)
	if code, out := runCLI(t, "image", "import", "busybox:test", imagetest.WriteOCITar(t, imagetest.Busybox(t, imagetest.Options{}))); code != 0 {
		t.Fatalf("image import: exit %d: %s", code, out)
	}
	status, body, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "exec-limit"}, "")
	if err != nil || status != 201 {
		t.Fatalf("create project: %d %s %v", status, body, err)
	}
	var prj apiv1.Project
	if err := json.Unmarshal(body, &prj); err != nil {
		t.Fatal(err)
	}
	status, body, err = p.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: prj.ID, Name: "shell",
		Workload: &apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"sleep", "3600"}}}, "")
	if err != nil || status != 202 {
		t.Fatalf("create environment: %d %s %v", status, body, err)
	}
	env := p.waitRunning(t, decodeEnv(t, body).ID)

	// The first session stays open while the second is asked for.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", p.url+"/v1/environments/"+env.ID+"/exec", strings.NewReader(`{"command":["sleep","60"]}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	first, err := http.DefaultClient.Do(req)
	if err != nil || first.StatusCode != 200 {
		t.Fatalf("first session: %v %v", first, err)
	}
	defer first.Body.Close()
	status, body, err = p.do("POST", "/v1/environments/"+env.ID+"/exec", apiv1.ExecRequest{Command: []string{"true"}}, "")
	if err != nil || status != 429 || !strings.Contains(string(body), "exec-sessions-per-token 1") {
		t.Fatalf("second session: %d %s %v; want 429 naming the limit", status, body, err)
	}
}

// Flow record bounds that keep nothing are refused before anything
// starts, each naming its flag.
func TestServe_RefusesFlowBoundsThatKeepNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--flow-retention", "0s"}, "--flow-retention 0s: must be a positive duration"},
		{[]string{"--flow-retention", "-1h"}, "--flow-retention -1h0m0s: must be a positive duration"},
		{[]string{"--flow-max-records", "0"}, "--flow-max-records 0: must be at least 1"},
	} {
		wantRefusedStart(t, 2, tc.want, append([]string{"--listen", "127.0.0.1:0"}, tc.args...)...)
	}
}
