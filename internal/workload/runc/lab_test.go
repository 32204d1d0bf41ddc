package runc

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc/inittest"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// layersDir holds the test images' layers, made once per test binary by
// the first test that needs them (not by TestHelperRuntimeChild, whose
// process is killed).
var layersDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if layersDir != "" {
		os.RemoveAll(layersDir)
	}
	os.Exit(code)
}

// requireRunc skips a test that needs what containers need, saying what
// is missing: root, runc, network namespaces, loop devices, e2fsprogs,
// busybox.
func requireRunc(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containers need root (namespaces, cgroups, mounts, loop devices); run the tests as root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (make runtime-deps builds it into bin/)")
	}
	if why := netnstest.Supported(); why != "" {
		t.Skip(why)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices here: %v", err)
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("e2fsprogs is not installed (Debian: apt-get install e2fsprogs)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("the test images are made of /bin/busybox (Debian: apt-get install busybox-static)")
	}
}

// Test images: busybox with a passwd and a group file, its applets in
// /bin, and an app user whose home holds a file. A second image adds a
// layer with /etc/image-b.
var (
	imagesOnce sync.Once
	baseImage  image.Resolved
	imageB     image.Resolved
	imagesErr  error
)

func testImages(t *testing.T) (image.Resolved, image.Resolved) {
	t.Helper()
	imagesOnce.Do(func() { imagesErr = makeImages() })
	if imagesErr != nil {
		t.Fatalf("test images: %v", imagesErr)
	}
	return baseImage, imageB
}

func makeImages() error {
	dir, err := os.MkdirTemp("", "runc-test-layers-")
	if err != nil {
		return err
	}
	layersDir = dir
	base := filepath.Join(layersDir, "base")
	files := map[string]string{
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":           "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n",
		"home/app/.profile":   "# the image's own\n",
		"etc/image":           "base\n",
		"usr/share/README.md": "a test image made of busybox\n",
	}
	for _, d := range []string{"bin", "tmp", "root", "proc", "dev", "sys", "etc", "home/app", "usr/share"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(base, "tmp"), 0o1777); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(base, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.Lchown(filepath.Join(base, "home/app"), 1000, 1000); err != nil {
		return err
	}
	if err := os.Lchown(filepath.Join(base, "home/app/.profile"), 1000, 1000); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(base, "bin/busybox")).CombinedOutput(); err != nil {
		return fmt.Errorf("cp busybox: %v: %s", err, out)
	}
	applets, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, a := range strings.Fields(string(applets)) {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(base, "bin", a)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	extra := filepath.Join(layersDir, "b")
	if err := os.MkdirAll(filepath.Join(extra, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(extra, "etc/image-b"), []byte("b\n"), 0o644); err != nil {
		return err
	}
	baseImage = image.Resolved{Name: "busybox", Digest: digest("base"), Layers: []string{base}, Env: []string{"PATH=/bin"}}
	imageB = image.Resolved{Name: "busybox-b", Digest: digest("b"), Layers: []string{base, extra}, Env: []string{"PATH=/bin"}}
	return nil
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// shifted is img with its layers copied and owned by the container's
// root of a user namespace with base, as the image store unpacks them.
func shifted(t *testing.T, img image.Resolved, base uint32) image.Resolved {
	t.Helper()
	var layers []string
	for _, l := range img.Layers {
		dst := fmt.Sprintf("%s-shifted-%d", l, base)
		if _, err := os.Stat(dst); errors.Is(err, os.ErrNotExist) {
			if out, err := exec.Command("cp", "-a", l, dst).CombinedOutput(); err != nil {
				t.Fatalf("cp -a %s: %v: %s", l, err, out)
			}
			err := filepath.WalkDir(dst, func(p string, _ fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				fi, err := os.Lstat(p)
				if err != nil {
					return err
				}
				st := fi.Sys().(*syscall.Stat_t)
				return os.Lchown(p, int(base)+int(st.Uid), int(base)+int(st.Gid))
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		layers = append(layers, dst)
	}
	img.Layers = layers
	return img
}

// lab is a runtime under test with a prefix of its own, everything of
// which is removed when the test ends, and checked to be gone.
type lab struct {
	t    *testing.T
	rt   *Runtime
	opts Options
}

// testOptions are a lab's options: quick to stop and to notice changes.
func testOptions(t *testing.T) Options {
	t.Helper()
	prefix := netnstest.UniquePrefix('r')
	// Searchable by everyone, for a container's root mapped to another
	// host user.
	dir, err := os.MkdirTemp("", "runc-test-"+prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return Options{
		Root:         filepath.Join(dir, "runtime"),
		StateRoot:    filepath.Join("/run/isolationd-test", prefix, "runc"),
		Prefix:       prefix,
		InitBinary:   inittest.Binary(t),
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		StopGrace:    2 * time.Second,
		PollInterval: 50 * time.Millisecond,
		StartWindow:  300 * time.Millisecond,
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newLab(t *testing.T, edit ...func(*Options)) *lab {
	t.Helper()
	requireRunc(t)
	opts := testOptions(t)
	for _, e := range edit {
		e(&opts)
	}
	l := &lab{t: t, opts: opts}
	l.start()
	t.Cleanup(func() {
		l.rt.Close()
		if err := Cleanup(context.Background(), opts); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		assertNothingLeft(t, opts)
		os.RemoveAll(filepath.Dir(opts.StateRoot))
	})
	return l
}

// testUsernsBase is the host id a user namespace lab maps its
// containers' root to.
const testUsernsBase = 2_000_000_000

// usernsLab is a lab whose containers get a user namespace mapping their
// ids to testUsernsBase..; it skips where the kernel refuses one.
func usernsLab(t *testing.T) *lab {
	t.Helper()
	requireRunc(t)
	if err := UsernsSupported(testUsernsBase); err != nil {
		t.Skip(err)
	}
	return newLab(t, func(o *Options) { o.UsernsBase = testUsernsBase })
}

// usernsSpec is spec on the base image shifted for a user namespace lab.
func (l *lab) usernsSpec(name string, w apiv1.WorkloadSpec) workload.Spec {
	l.t.Helper()
	spec := l.spec(name, w)
	spec.Image = shifted(l.t, spec.Image, testUsernsBase)
	return spec
}

// start (re)starts the lab's runtime, as isolationd does.
func (l *lab) start() {
	l.t.Helper()
	rt, err := New(l.opts)
	if err != nil {
		l.t.Fatal(err)
	}
	l.rt = rt
}

// spec is an environment named name with a namespace of its own and the
// minimum allowances but memory, running w on the base image.
func (l *lab) spec(name string, w apiv1.WorkloadSpec) workload.Spec {
	l.t.Helper()
	base, _ := testImages(l.t)
	envID := "env-" + name
	ns := netns.NamespaceName(l.opts.Prefix, envID)
	if _, err := os.Stat("/run/netns/" + ns); err != nil {
		netnstest.NewNamespace(l.t, ns)
	}
	w.Image = cmp.Or(w.Image, "busybox")
	return workload.Spec{
		EnvID:     envID,
		Hostname:  name,
		Namespace: ns,
		Image:     base,
		Workload:  w.Normalize(),
		Resources: apiv1.Resources{CPUMillis: 1000, MemoryMB: 256, DiskGB: 1, MaxProcesses: 256},
	}
}

func sh(script string) apiv1.WorkloadSpec {
	return apiv1.WorkloadSpec{Command: []string{"sh", "-c", script}}
}

func (l *lab) ensure(spec workload.Spec) workload.Apply {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := l.rt.Ensure(ctx, spec)
	if err != nil {
		l.t.Fatalf("ensure %s: %v", spec.EnvID, err)
	}
	return a
}

func (l *lab) status(envID string) workload.Status {
	l.t.Helper()
	st, err := l.rt.Status(context.Background(), envID)
	if err != nil {
		l.t.Fatalf("status %s: %v", envID, err)
	}
	return st
}

// waitStatus waits, on the runtime's Changes, for envID's status to
// satisfy ok.
func (l *lab) waitStatus(envID string, within time.Duration, ok func(workload.Status) bool) workload.Status {
	l.t.Helper()
	deadline := time.After(within)
	for {
		st := l.status(envID)
		if ok(st) {
			return st
		}
		select {
		case <-l.rt.Changes():
		case <-deadline:
			l.t.Fatalf("%s: after %s the status is still %+v", envID, within, st)
		}
	}
}

var errFound = errors.New("found")

// waitOutput follows envID's output until a line contains marker, and
// returns every line up to it.
func (l *lab) waitOutput(envID, marker string, within time.Duration) []string {
	l.t.Helper()
	dir, err := l.rt.LogDir(envID)
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var lines []string
	err = logs.Read(ctx, dir, logs.Query{Tail: logs.All, Follow: true}, func(line apiv1.LogLine) error {
		lines = append(lines, line.Line)
		if strings.Contains(line.Line, marker) {
			return errFound
		}
		return nil
	})
	if !errors.Is(err, errFound) {
		l.t.Fatalf("%s: no line with %q in %s (%v); the output:\n%s", envID, marker, within, err, strings.Join(lines, "\n"))
	}
	return lines
}

// cgroupFile reads a file of envID's cgroup in controller's hierarchy.
func (l *lab) cgroupFile(envID, controller, file string) string {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.rt.cg.dir(controller, l.rt.cgroupsPath(l.rt.id(envID))), file))
	if err != nil {
		l.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// assertNothingLeft checks that nothing of opts' prefix is left: no
// container, cgroup, mount, loop device or file.
func assertNothingLeft(t *testing.T, opts Options) {
	t.Helper()
	if out, err := exec.Command("runc", "--root", opts.StateRoot, "list", "-q").CombinedOutput(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("containers left: %s", out)
	}
	v1, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", "isolationd", opts.Prefix, "*"))
	v2, _ := filepath.Glob(filepath.Join(cgroupRoot, "isolationd", opts.Prefix, "*"))
	var cgs []string
	for _, p := range append(v1, v2...) {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			cgs = append(cgs, p)
		}
	}
	if len(cgs) > 0 {
		t.Errorf("cgroups left: %v", cgs)
	}
	if ms, err := volume.Mounts(opts.Root); err != nil || len(ms) > 0 {
		t.Errorf("mounts left under %s: %v %v", opts.Root, ms, err)
	}
	if ls, err := volume.LoopDevices(opts.Root); err != nil || len(ls) > 0 {
		t.Errorf("loop devices left: %v %v", ls, err)
	}
	var files []string
	err := filepath.WalkDir(opts.Root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil // Cleanup removes Root
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
	if len(files) > 0 {
		t.Errorf("files left under %s: %v", opts.Root, files)
	}
	if sessions, _ := os.ReadDir(filepath.Join(filepath.Dir(opts.StateRoot), "exec")); len(sessions) > 0 {
		t.Errorf("exec sessions' directories left: %v", sessions)
	}
}
