package initproc

import (
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestBackoff_DoublesUpToTheCapAndResetsAfterAHealthyRun(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newBackoff(c)
	quick, healthy := time.Second, 10*time.Second
	type step struct {
		Delay   time.Duration
		Looping bool
	}
	var got []step
	for _, ran := range []time.Duration{quick, quick, quick, quick, quick, quick, quick, quick, quick, quick, healthy, quick, quick, quick} {
		d, looping := b.exited(ran)
		got = append(got, step{d, looping})
	}
	ms := time.Millisecond
	want := []step{
		{100 * ms, false}, {200 * ms, false}, {400 * ms, true}, {800 * ms, true}, {1600 * ms, true},
		{3200 * ms, true}, {6400 * ms, true}, {10 * time.Second, true}, {10 * time.Second, true}, {10 * time.Second, true},
		// a run of 10 s is healthy: the delay and the count of quick runs start again
		{100 * ms, false}, {200 * ms, false}, {400 * ms, false}, {800 * ms, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
}

func TestRestarts_ByPolicyAndExitCode(t *testing.T) {
	for _, tc := range []struct {
		policy string
		code   int
		want   bool
	}{
		{apiv1.RestartAlways, 0, true},
		{apiv1.RestartAlways, 1, true},
		{apiv1.RestartOnFailure, 0, false},
		{apiv1.RestartOnFailure, 1, true},
		{apiv1.RestartOnFailure, 137, true},
		{apiv1.RestartNever, 0, false},
		{apiv1.RestartNever, 1, false},
	} {
		if got := restarts(tc.policy, tc.code); got != tc.want {
			t.Errorf("restarts(%s, %d) = %v; want %v", tc.policy, tc.code, got, tc.want)
		}
	}
}

func TestParse_FlagsAndCommand(t *testing.T) {
	c, err := Parse([]string{"--restart", "on-failure", "--uid", "1000", "--gid", "100", "--groups", "10,20", "--log-max-bytes", "65536", "--", "sh", "-c", "echo --restart"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Restart != "on-failure" || c.LogMaxBytes != 65536 || !cmp.Equal(c.User, &syscall.Credential{Uid: 1000, Gid: 100, Groups: []uint32{10, 20}}) {
		t.Errorf("config %+v", c)
	}
	if want := []string{"sh", "-c", "echo --restart"}; !cmp.Equal(c.Command, want) {
		t.Errorf("command %q; want %q", c.Command, want)
	}
	d, err := Parse([]string{"--"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Restart != apiv1.RestartAlways || d.User != nil || len(d.Command) != 0 || d.Dir != "/.isolation/run" {
		t.Errorf("defaults %+v", d)
	}
}

func TestParse_RefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--restart", "sometimes"},
		{"--uid", "1000"},
		{"--groups", "10"},
		{"--uid", "-1", "--gid", "0"},
		{"--uid", "1", "--gid", "1", "--groups", "a"},
		{"--log-max-bytes", "10"},
		{"sh"},
		{"--", ""},
		{"--bogus"},
		{"--backoff", "1s", "--max-backoff", "10ms"},
	} {
		if _, err := Parse(args); err == nil {
			t.Errorf("Parse(%q) succeeded; want an error", args)
		}
	}
}
