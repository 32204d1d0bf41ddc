package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc/inittest"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/runc"
)

// needContainers skips a test that runs workloads where they are refused:
// without namespaces (root), runc, or the busybox the test images are
// made of.
func needContainers(t *testing.T) {
	t.Helper()
	if why := netnstest.Supported(); why != "" {
		t.Skip(why)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (make runtime-deps builds it into bin/)")
	}
	imagetest.SkipWithoutBusybox(t)
}

// starts is the file, in an environment's home, its workload appends a
// line to each time it starts.
const starts = "starts"

// isolationd killed with -9 while twenty workloads run leaves them
// running. Its next start adopts every one as it is (the same init, its
// command not started again, the same restart count) and removes a
// container of its prefix that belongs to no environment, with all it
// holds on the host.
func TestCrash_Kill9LeavesWorkloadsRunningAndTheRestartAdoptsThemAndRemovesAnOrphan(t *testing.T) {
	needContainers(t)
	dir := t.TempDir()
	// The containers' mapped root reaches its root filesystem through the
	// data directory's parents: the test's directory must be traversable
	// for the user namespace to be used.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	prefix := netnstest.UniquePrefix('k')
	stateRoot := filepath.Join("/run/isolationd", prefix, "runc")
	runtimeDir := filepath.Join(dir, server.RuntimeDir)
	// Registered first, so run last: after the servers are gone.
	t.Cleanup(func() {
		if code, out := runCLI(t, "cleanup", "--data-dir", dir, "--netns-prefix", prefix); code != 0 {
			t.Errorf("isolationd cleanup: exit %d: %s", code, out)
		}
	})
	flags := []string{"--driver", "netns", "--netns-prefix", prefix, "--address-pool", "198.18.0.0/16", "--init-binary", inittest.Binary(t)}
	p := startProc(t, dir, flags...)

	t.Setenv(envEndpoint, p.url)
	t.Setenv(envToken, testToken)
	img := imagetest.Busybox(t, imagetest.Options{Cmd: []string{"sh"}})
	if code, out := runCLI(t, "image", "import", "busybox:test", imagetest.WriteOCITar(t, img)); code != 0 {
		t.Fatalf("image import: exit %d: %s", code, out)
	}
	status, body, err := p.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "crash-workloads"}, "")
	if err != nil || status != 201 {
		t.Fatalf("create project: %d %s %v", status, body, err)
	}
	var prj apiv1.Project
	if err := json.Unmarshal(body, &prj); err != nil {
		t.Fatal(err)
	}

	const n = 20
	disk := int64(1) // GiB, sparse
	ids := make([]string, n)
	for i := range n {
		status, body, err := p.do("POST", "/v1/environments", apiv1.EnvironmentCreate{
			ProjectID: prj.ID, Name: fmt.Sprintf("w-%02d", i), Resources: &apiv1.ResourcesSpec{DiskGB: &disk},
			Workload: &apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{
				"sh", "-c", "echo started >> /home/" + starts + " && exec sleep 3600",
			}},
		}, "")
		if err != nil || status != 202 {
			t.Fatalf("create %d: %d %s %v", i, status, body, err)
		}
		ids[i] = decodeEnv(t, body).ID
	}
	before := make([]apiv1.Environment, n)
	pids, inits := make([]int, n), make([]int, n)
	startsBefore := make([]string, n)
	for i, id := range ids {
		before[i] = p.waitRunning(t, id)
		pids[i] = runningPid(t, stateRoot, before[i].Enforcement.Namespace)
		inits[i] = pidfd(t, pids[i])
		startsBefore[i] = readStarts(t, runtimeDir, before[i])
	}

	killProc(t, p)
	for i, e := range before {
		if pid := runningPid(t, stateRoot, e.Enforcement.Namespace); pid != pids[i] || exited(t, inits[i]) {
			t.Fatalf("after kill -9, environment %s's container runs init %d, not %d", e.ID, pid, pids[i])
		}
	}
	orphan := startOrphan(t, dir, prefix, before[0])
	orphanExited := pidfd(t, orphan.pid)

	p = startProc(t, dir, flags...)
	// The runtime's sync runs before the server listens: the orphan is
	// gone by now, every trace of it.
	if !exited(t, orphanExited) {
		t.Errorf("the orphan's init %d still runs after the restart", orphan.pid)
	}
	if left := orphan.traces(t); len(left) > 0 {
		t.Errorf("the restart left the orphan container %s's:\n%s", orphan.id, strings.Join(left, "\n"))
	}
	p.waitReady(t)
	// Every environment's first pass after the start gives its workload
	// to the runtime, which adopts or restarts it: wait for them all.
	p.waitPasses(t, "enforced", n)
	for i, id := range ids {
		e := p.waitRunning(t, id)
		if pid := runningPid(t, stateRoot, e.Enforcement.Namespace); pid != pids[i] || exited(t, inits[i]) {
			t.Errorf("environment %s: its container runs init %d after the restart, not %d: it was not adopted", id, pid, pids[i])
		}
		w, was := e.Workload, before[i].Workload
		if w.RestartCount != was.RestartCount || w.StartedAt == nil || !w.StartedAt.Equal(*was.StartedAt) || w.ImageDigest != was.ImageDigest {
			now, _ := json.Marshal(w)
			then, _ := json.Marshal(was)
			t.Errorf("environment %s: workload %s after the restart, %s before: want the same run", id, now, then)
		}
		if got := readStarts(t, runtimeDir, e); got != startsBefore[i] {
			t.Errorf("environment %s: its command's starts in /home/%s: %q after the restart, %q before: the restart ran it again", id, starts, got, startsBefore[i])
		}
	}

	stopProc(t, p)
	if code, out := runCLI(t, "cleanup", "--data-dir", dir, "--netns-prefix", prefix); code != 0 {
		t.Fatalf("isolationd cleanup: exit %d: %s", code, out)
	}
	for i, fd := range inits {
		if !exited(t, fd) {
			t.Errorf("after isolationd cleanup, init %d still runs", pids[i])
		}
	}
	if ms, err := volume.Mounts(dir); err != nil || len(ms) > 0 {
		t.Errorf("after isolationd cleanup, mounts under the data directory: %v %v", ms, err)
	}
	cgroups, err := filepath.Glob("/sys/fs/cgroup/*/isolationd/" + prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append(cgroups, "/sys/fs/cgroup/isolationd/"+prefix, filepath.Dir(stateRoot), runtimeDir) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after isolationd cleanup, %s is there (%v)", d, err)
		}
	}
}

// readStarts reads, from the host's side of e's home volume, the lines
// its command writes each time it starts.
func readStarts(t *testing.T, runtimeDir string, e apiv1.Environment) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runtimeDir, "volumes", e.Enforcement.Namespace, "home", starts))
	if err != nil || len(b) == 0 {
		t.Fatalf("environment %s: its command wrote no start in /home/%s: %q %v", e.ID, starts, b, err)
	}
	return string(b)
}

func decodeEnv(t *testing.T, body []byte) apiv1.Environment {
	t.Helper()
	var e apiv1.Environment
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("environment %s: %v", body, err)
	}
	return e
}

// waitRunning long-polls until environment id is ready and returns it,
// failing the test unless its workload runs.
func (p *proc) waitRunning(t *testing.T, id string) apiv1.Environment {
	t.Helper()
	status, body, err := p.do("GET", "/v1/environments/"+id+"?wait_for=ready&timeout=60s", nil, "")
	if err != nil || status != 200 {
		t.Fatalf("environment %s: %d %s %v", id, status, body, err)
	}
	e := decodeEnv(t, body)
	if e.State != apiv1.StateReady || e.Workload == nil || e.Workload.State != apiv1.WorkloadRunning || e.Workload.StartedAt == nil {
		t.Fatalf("environment %s: %s; want it ready, its workload running", id, body)
	}
	return e
}

// waitReady polls /readyz until it answers 200, for 30 s at most.
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		status, body, err := p.do("GET", "/readyz", nil, "")
		if err == nil && status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %s %v", status, body, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
}

// waitPasses polls /metrics until the reconciler has made at least n
// passes with outcome, for 60 s at most.
func (p *proc) waitPasses(t *testing.T, outcome string, n int) {
	t.Helper()
	series := fmt.Sprintf(`isolationd_reconcile_duration_seconds_count{outcome=%q} `, outcome)
	got := 0
	for deadline := time.Now().Add(60 * time.Second); ; {
		status, body, err := p.do("GET", "/metrics", nil, "")
		if err != nil || status != 200 {
			t.Fatalf("/metrics: %d %s %v", status, body, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), series); ok {
				got, _ = strconv.Atoi(v)
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reconcile passes %s within 60s, want %d", got, outcome, n)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
}

// runningPid is the pid of container id's init, failing the test unless
// runc says it runs.
func runningPid(t *testing.T, stateRoot, id string) int {
	t.Helper()
	out, err := exec.Command("runc", "--root", stateRoot, "state", id).Output()
	if err != nil {
		t.Fatalf("runc state %s: %v", id, err)
	}
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("runc state %s: %v: %s", id, err, out)
	}
	if st.Status != "running" || st.Pid <= 0 {
		t.Fatalf("container %s: %s, want running", id, out)
	}
	return st.Pid
}

// pidfd opens a pidfd of pid, closed when the test ends: it becomes
// readable once the process exits, whatever pid reuse does meanwhile (and
// whether or not anyone reaps it: the host's init may not).
func pidfd(t *testing.T, pid int) int {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// exited reports whether the process of pidfd fd has exited.
func exited(t *testing.T, fd int) bool {
	t.Helper()
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
	if err != nil {
		t.Fatalf("poll a pidfd: %v", err)
	}
	return n > 0
}

// orphanContainer is a container of the prefix that belongs to no
// environment.
type orphanContainer struct {
	id, stateRoot, runtimeDir, prefix string
	pid                               int
}

// startOrphan makes, while isolationd is down, a container of the prefix
// for an environment the database does not hold: with the runtime
// isolationd runs, on its directories, from its image store, joining
// like's network namespace. It is what an isolationd that lost the
// environment's row would leave, down to its disk, loop device, overlay
// and cgroups, which a hand-made bundle would only imitate.
func startOrphan(t *testing.T, dir, prefix string, like apiv1.Environment) orphanContainer {
	t.Helper()
	ctx := context.Background()
	runtimeDir := filepath.Join(dir, server.RuntimeDir)
	// The same user namespace mapping as the server's containers, for
	// which the image's layers were unpacked.
	base := usernsBase(t, filepath.Join(runtimeDir, "bundles", like.Enforcement.Namespace, "config.json"))
	store, err := image.Open(filepath.Join(dir, server.ImagesDir), image.Options{UIDShift: base, GIDShift: base})
	if err != nil {
		t.Fatal(err)
	}
	img, err := store.Resolve(ctx, "busybox:test")
	if err != nil {
		t.Fatal(err)
	}
	o := orphanContainer{stateRoot: filepath.Join("/run/isolationd", prefix, "runc"), runtimeDir: runtimeDir, prefix: prefix}
	rt, err := runc.New(runc.Options{
		Root: runtimeDir, StateRoot: o.stateRoot, Prefix: prefix, InitBinary: inittest.Binary(t), UsernsBase: base,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close() // the container runs on
	b := make([]byte, 8)
	rand.Read(b)
	spec := workload.Spec{
		EnvID: "env_orphan" + hex.EncodeToString(b), Hostname: "orphan", Namespace: like.Enforcement.Namespace, Image: img,
		Workload:  apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"sleep", "3600"}},
		Resources: apiv1.Resources{CPUMillis: apiv1.DefaultCPUMillis, MemoryMB: apiv1.DefaultMemoryMB, DiskGB: 1, MaxProcesses: apiv1.DefaultMaxProcesses},
	}
	if _, err := rt.Ensure(ctx, spec); err != nil {
		t.Fatalf("start the orphan: %v", err)
	}
	// Container ids are the environments' namespace names.
	o.id = netns.NamespaceName(prefix, spec.EnvID)
	o.pid = runningPid(t, o.stateRoot, o.id)
	// What the restart must remove is there to be removed.
	left := o.traces(t)
	for _, kind := range []string{"runc state", "cgroup", "mount", "loop device", "file"} {
		if !slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, kind+" ") }) {
			t.Fatalf("the orphan %s has no %s; it has:\n%s", o.id, kind, strings.Join(left, "\n"))
		}
	}
	return o
}

// traces lists what the host holds of the orphan: runc's state, its
// cgroups, the mounts of its root and disk, its disk's loop device, and
// its bundle and disk files.
func (o orphanContainer) traces(t *testing.T) []string {
	t.Helper()
	var out []string
	if _, err := os.Stat(filepath.Join(o.stateRoot, o.id)); err == nil {
		out = append(out, "runc state "+filepath.Join(o.stateRoot, o.id))
	}
	for _, pattern := range []string{"/sys/fs/cgroup/*/isolationd/", "/sys/fs/cgroup/isolationd/"} {
		dirs, err := filepath.Glob(pattern + o.prefix + "/" + o.id)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dirs {
			out = append(out, "cgroup "+d)
		}
	}
	bundle, vol, img := filepath.Join(o.runtimeDir, "bundles", o.id), filepath.Join(o.runtimeDir, "volumes", o.id), filepath.Join(o.runtimeDir, "volumes", o.id+".img")
	for _, d := range []string{bundle, vol} {
		ms, err := volume.Mounts(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			out = append(out, "mount "+m.Point)
		}
	}
	loops, err := volume.LoopDevices(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range loops {
		out = append(out, "loop device "+l.Device+" backed by "+l.File)
	}
	for _, f := range []string{bundle, vol, img} {
		if _, err := os.Stat(f); err == nil {
			out = append(out, "file "+f)
		}
	}
	return out
}

// usernsBase is the host uid a container's root maps to in the bundle
// config at path, 0 without a user namespace.
func usernsBase(t *testing.T, path string) uint32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Linux struct {
			UIDMappings []struct {
				HostID uint32 `json:"hostID"`
			} `json:"uidMappings"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(cfg.Linux.UIDMappings) == 0 {
		return 0
	}
	return cfg.Linux.UIDMappings[0].HostID
}
