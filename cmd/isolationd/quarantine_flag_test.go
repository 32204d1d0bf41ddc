package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
		dir := filepath.Join(t.TempDir(), "data")
		var out, errb bytes.Buffer
		code := run([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--address-quarantine", tc.value}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("--address-quarantine %s: exit %d, stderr %q; want exit 2 saying %q", tc.value, code, errb.String(), tc.want)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("--address-quarantine %s: the refused start created its data dir", tc.value)
		}
	}
}
