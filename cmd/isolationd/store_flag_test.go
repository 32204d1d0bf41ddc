package main

import (
	"bytes"
	"strings"
	"testing"
)

// A --store that names no usable store is refused before anything
// starts, naming the flag, and the password it held is not printed.
func TestServe_RefusesABadStoreBeforeStartingWithoutItsPassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ value, want string }{
		{"mysql://u:s3cret@db/iso", "--store: mysql://u:REDACTED@db/iso: want sqlite, sqlite:PATH, or a postgres://"},
		{"postgres://u:s3cret@/iso", "--store: postgres://u:REDACTED@/iso names no host"},
		{"postgresql://u:s3cret@db:5432", "names no database"},
	} {
		wantRefusedStart(t, 2, tc.want, "--listen", "127.0.0.1:0", "--store", tc.value)
	}
}

// ISOLATION_STORE is --store's default, and -h does not print it: the URL
// may hold a password.
func TestServe_ReadsTheStoreFromTheEnvironmentAndKeepsItOutOfTheHelp(t *testing.T) {
	t.Setenv(envStore, "postgres://u:s3cret@/iso")
	wantRefusedStart(t, 2, "--store: postgres://u:REDACTED@/iso names no host", "--listen", "127.0.0.1:0")

	var out, errb bytes.Buffer
	if code := run([]string{"serve", "-h"}, &out, &errb); code != 2 {
		t.Fatalf("serve -h: exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "-store") || strings.Contains(errb.String(), "s3cret") {
		t.Errorf("serve -h should describe -store without the environment's URL, got:\n%s", errb.String())
	}
	// The flag, when given, wins over the environment.
	wantRefusedStart(t, 2, "--store: mysql://x: want sqlite", "--listen", "127.0.0.1:0", "--store", "mysql://x")
}
