package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
		dir := filepath.Join(t.TempDir(), "data")
		var out, errb bytes.Buffer
		code := run(append([]string{"serve", "--data-dir", dir}, tc.args...), &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want exit %d naming %s", tc.args, code, errb.String(), tc.code, tc.want)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("serve %v: the refused start created its data dir", tc.args)
		}
	}
}
