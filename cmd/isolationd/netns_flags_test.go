package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
		dir := filepath.Join(t.TempDir(), "data")
		var out, errb bytes.Buffer
		code := run(append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir}, tc.args...), &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want exit 1 saying %q", tc.args, code, errb.String(), tc.want)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("serve %v: the refused start created its data dir", tc.args)
		}
	}
}
