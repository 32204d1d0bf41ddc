// Package inittest builds the environment init (cmd/isolation-init) for
// tests that run it: the init's own tests, and the runtime's, which mount
// it into containers.
package inittest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const pkg = "github.com/isolationhq/terraform-provider-isolation/cmd/isolation-init"

// dirPrefix names the per-process build directories under os.TempDir.
const dirPrefix = "isolation-init-test-"

var (
	once sync.Once
	bin  string
	err  error
)

// Binary returns the path of the init, built once per test binary as the
// release builds it (static, CGO_ENABLED=0), into a directory of
// os.TempDir named by the test binary's pid. Go's build cache makes it
// quick after the first time. Directories that earlier test binaries
// left behind are removed when their process is gone.
func Binary(t testing.TB) string {
	t.Helper()
	once.Do(func() { bin, err = build() })
	if err != nil {
		t.Fatalf("building the init: %v", err)
	}
	return bin
}

func build() (string, error) {
	removeStale()
	dir := filepath.Join(os.TempDir(), dirPrefix+strconv.Itoa(os.Getpid()))
	// World-readable: a container's root, mapped to another host user,
	// executes it through a bind mount.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "isolation-init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// removeStale removes the build directories of test binaries that have
// exited.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), dirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		// Signal 0 tells whether the process exists; EPERM means it does.
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}
