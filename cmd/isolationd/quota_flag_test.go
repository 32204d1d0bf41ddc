package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
