package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
)

// Fifty environments with workloads, created and deleted through the API
// eight at a time, leave no container, cgroup, mount, loop device, volume
// or bundle behind; the host's mounts and loop devices are what they were
// before. What stays while the server runs is its skeleton: the runtime's
// empty bundles/ and volumes/ directories, runc's empty state directory
// and the prefix's empty cgroup (runc makes a container's cgroup's parents
// and removes the container's own alone). Purging the prefix removes
// those too.
func TestRuncAPI_FiftyWorkloadsCreatedAndDeletedLeaveNoContainerCgroupMountLoopDeviceOrVolume(t *testing.T) {
	l := runcLab(t)
	cfg := l.cfg
	host := hostMounts(t)
	if left := runtimeLeftovers(t, cfg); len(left) > 0 {
		t.Fatalf("before any environment:\n%s", strings.Join(left, "\n"))
	}

	const n = 50
	disk := int64(1) // GiB, sparse: the disks cost what their ext4 writes
	start := time.Now()
	envs := l.createWorkloads(n, func(i int) apiv1.EnvironmentCreate {
		return apiv1.EnvironmentCreate{
			Name:      fmt.Sprintf("w-%d", i),
			Resources: &apiv1.ResourcesSpec{DiskGB: &disk},
			Workload: &apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{
				"sh", "-c", "echo $HOSTNAME > /home/hostname && exec sleep 3600",
			}},
		}
	})
	t.Logf("%d environments with workloads running in %v", n, time.Since(start).Round(time.Millisecond))
	// The inventory sees what every environment owns: without this, an
	// inventory looking in the wrong places would find nothing after the
	// deletion too.
	present := runtimeLeftovers(t, cfg)
	root := filepath.Join(cfg.DataDir, server.RuntimeDir)
	for _, e := range envs {
		ctr := e.Enforcement.Namespace
		for _, want := range []string{
			"container " + ctr + " running",
			"cgroup " + cgroupDir("pids", cfg.NetnsPrefix, ctr),
			"cgroup " + cgroupDir("memory", cfg.NetnsPrefix, ctr),
			"mount " + filepath.Join(root, "volumes", ctr),
			"mount " + filepath.Join(root, "bundles", ctr, "rootfs"),
			"loop device backed by " + filepath.Join(root, "volumes", ctr+".img"),
			"file " + filepath.Join(root, "volumes", ctr+".img"),
			"file " + filepath.Join(root, "bundles", ctr, "config.json"),
		} {
			if !slices.Contains(present, want) {
				t.Fatalf("environment %s runs its workload but the inventory has no %q; it has:\n%s", e.ID, want, strings.Join(present, "\n"))
			}
		}
	}

	start = time.Now()
	l.deleteAll(envs)
	t.Logf("%d environments deleted in %v", n, time.Since(start).Round(time.Millisecond))
	if left := runtimeLeftovers(t, cfg); len(left) > 0 {
		t.Errorf("after deleting every environment through the API:\n%s", strings.Join(left, "\n"))
	}
	host.assertBack(t, cfg)

	l.shutdown()
	purgePrefix(t, cfg)
	if left := runtimeLeftovers(t, cfg); len(left) > 0 {
		t.Errorf("after purging the prefix:\n%s", strings.Join(left, "\n"))
	}
	for _, skeleton := range append(prefixCgroups(t, cfg.NetnsPrefix), root, stateRoot(cfg), filepath.Dir(stateRoot(cfg))) {
		if _, err := os.Stat(skeleton); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after purging the prefix, %s is still there (%v)", skeleton, err)
		}
	}
}

// createRunning creates the environment c describes in the lab's project
// and waits until it is ready with its workload running.
func (l *apiLab) createRunning(c apiv1.EnvironmentCreate) (apiv1.Environment, error) {
	e, err := l.createReady(c)
	if err == nil && (e.Workload == nil || e.Workload.State != apiv1.WorkloadRunning) {
		err = fmt.Errorf("environment %s is ready but its workload is not running: %s", e.ID, js(e.Workload))
	}
	return e, err
}

// createWorkloads creates the n environments create describes, eight at
// a time, and returns them once ready with their workloads running.
func (l *apiLab) createWorkloads(n int, create func(i int) apiv1.EnvironmentCreate) []apiv1.Environment {
	l.tb.Helper()
	out := make([]apiv1.Environment, n)
	eightAtATime(l.tb, n, func(i int) (err error) {
		out[i], err = l.createRunning(create(i))
		return err
	})
	return out
}

// stateRoot is runc's --root for the lab's prefix.
func stateRoot(cfg server.Config) string {
	return filepath.Join("/run/isolationd", cfg.NetnsPrefix, "runc")
}

// cgroupV2 reports whether the host mounts the unified hierarchy alone.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupDir is the directory of container ctr's cgroup in the hierarchy
// of controller (the unified one on cgroup v2).
func cgroupDir(controller, prefix, ctr string) string {
	if cgroupV2() {
		return filepath.Join("/sys/fs/cgroup/isolationd", prefix, ctr)
	}
	return filepath.Join("/sys/fs/cgroup", controller, "isolationd", prefix, ctr)
}

// prefixCgroups are the prefix's cgroup directories, one per hierarchy
// that has one.
func prefixCgroups(t *testing.T, prefix string) []string {
	t.Helper()
	pattern := "/sys/fs/cgroup/*/isolationd/" + prefix
	if cgroupV2() {
		pattern = "/sys/fs/cgroup/isolationd/" + prefix
	}
	dirs, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// runtimeLeftovers lists, sorted, what the runc runtime of cfg's prefix
// has on the host beyond its skeleton: runc's containers, the cgroups
// below the prefix's (and any process in the prefix's own), the mounts
// and the loop devices under the data directory, and the files under the
// runtime's directory but for its empty bundles/ and volumes/ (not
// descending into mounts, which are listed already).
func runtimeLeftovers(t *testing.T, cfg server.Config) []string {
	t.Helper()
	var out []string
	if _, err := os.Stat(stateRoot(cfg)); err == nil { // runc list would make it
		b, err := exec.Command("runc", "--root", stateRoot(cfg), "list", "--format", "json").Output()
		if err != nil {
			t.Fatalf("runc list: %v", err)
		}
		var cs []struct{ ID, Status string }
		if err := json.Unmarshal(b, &cs); err != nil {
			t.Fatalf("runc list: %v: %s", err, b)
		}
		for _, c := range cs {
			out = append(out, "container "+c.ID+" "+c.Status)
		}
	}
	for _, dir := range prefixCgroups(t, cfg.NetnsPrefix) {
		if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(procs) > 0 {
			out = append(out, fmt.Sprintf("processes in cgroup %s: %s", dir, strings.Fields(string(procs))))
		}
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, "cgroup "+filepath.Join(dir, e.Name()))
			}
		}
	}
	mounts, err := volume.Mounts(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	points := map[string]bool{}
	for _, m := range mounts {
		out = append(out, "mount "+m.Point)
		points[m.Point] = true
	}
	loops, err := volume.LoopDevices(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, lo := range loops {
		out = append(out, "loop device backed by "+lo.File)
	}
	root := filepath.Join(cfg.DataDir, server.RuntimeDir)
	skeleton := map[string]bool{root: true, filepath.Join(root, "bundles"): true, filepath.Join(root, "volumes"): true}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == root {
			return nil // purged
		}
		if err != nil {
			return err
		}
		if !skeleton[path] {
			out = append(out, "file "+path)
		}
		if d.IsDir() && points[path] {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// hostState is every mount and attached loop device of the host (this
// process's mount namespace is the host's), counted.
type hostState map[string]int

func hostMounts(t *testing.T) hostState {
	t.Helper()
	mounts, err := volume.Mounts("/")
	if err != nil {
		t.Fatal(err)
	}
	loops, err := volume.LoopDevices("/")
	if err != nil {
		t.Fatal(err)
	}
	h := hostState{}
	proc := false
	for _, m := range mounts {
		h[fmt.Sprintf("mount %s (%s %s)", m.Point, m.FSType, m.Source)]++
		proc = proc || m.Point == "/proc"
	}
	if !proc {
		t.Fatalf("the host's mounts, as read, have no /proc: %v", mounts)
	}
	for _, lo := range loops {
		h[fmt.Sprintf("loop device %s backed by %s", lo.Device, lo.File)]++
	}
	return h
}

// assertBack checks that the host has the mounts and loop devices it had
// when before was taken. The host is shared: tests of other packages,
// which go test runs beside this one, mount and attach their own
// meanwhile. So what the host gained fails the test when it names the
// lab's data directory, runc's state directory or the prefix, and is
// reported otherwise, with the counts.
func (before hostState) assertBack(t *testing.T, cfg server.Config) {
	t.Helper()
	after := hostMounts(t)
	var ours, others []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if after[k] <= before[k] {
			continue
		}
		if strings.Contains(k, cfg.DataDir) || strings.Contains(k, "/"+cfg.NetnsPrefix) {
			ours = append(ours, k)
		} else {
			others = append(others, k)
		}
	}
	count := func(h hostState, kind string) (n int) {
		for k, c := range h {
			if strings.HasPrefix(k, kind) {
				n += c
			}
		}
		return n
	}
	t.Logf("host: %d mounts and %d loop devices before the environments, %d and %d after their deletion",
		count(before, "mount "), count(before, "loop "), count(after, "mount "), count(after, "loop "))
	if len(ours) > 0 {
		t.Errorf("the host kept mounts or loop devices of the deleted environments:\n%s", strings.Join(ours, "\n"))
	}
	if len(others) > 0 {
		t.Logf("the host gained, from other processes (none names the lab's directories or prefix):\n%s", strings.Join(others, "\n"))
	}
}
