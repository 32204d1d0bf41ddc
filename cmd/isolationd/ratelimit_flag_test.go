package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
)

func TestParseRoleRateLimits(t *testing.T) {
	t.Parallel()
	got, err := parseRoleRateLimits(" viewer=5, editor=20:40,admin=0 ")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]api.RateLimit{"viewer": {PerSecond: 5}, "editor": {PerSecond: 20, Burst: 40}, "admin": {}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if got, err := parseRoleRateLimits(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{"owner=5", "viewer", "viewer=fast", "viewer=-1", "viewer=5:0", "viewer=5:x", "viewer=1,viewer=2", "viewer=NaN"} {
		if _, err := parseRoleRateLimits(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
