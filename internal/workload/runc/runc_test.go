package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gorunc "github.com/containerd/go-runc"
	vnetns "github.com/vishvananda/netns"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	enforcens "github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

func TestRuntime_RunsTheCommandAsTheImageUserWithItsEnvironment(t *testing.T) {
	l := newLab(t)
	spec := l.spec("hello", sh(`echo "user $(id -u):$(id -g) groups $(id -G) home $HOME host $HOSTNAME greeting $GREETING cwd $(pwd)"; ls -a /home/app; sleep 1000`))
	spec.Image.User = "app"
	spec.Workload.Env = map[string]string{"GREETING": "hi"}
	spec.Workload.WorkingDir = "/tmp"
	a := l.ensure(spec)
	if a.Status.State != apiv1.WorkloadRunning || a.Status.Pid == 0 || a.Restarted || a.Status.ImageDigest != spec.Image.Digest {
		t.Fatalf("ensure: %+v", a)
	}
	out := strings.Join(l.waitOutput(spec.EnvID, ".profile", 5*time.Second), "\n")
	if want := "user 1000:1000 groups 1000 50 home /home/app host hello greeting hi cwd /tmp"; !strings.Contains(out, want) {
		t.Fatalf("output %q, want a line %q", out, want)
	}
}

func TestRuntime_AMissingProgramOrOneThatExitsAtOnceIsASpecErrorAndLeavesNothingRunning(t *testing.T) {
	l := newLab(t)
	for _, c := range []struct {
		name  string
		w     apiv1.WorkloadSpec
		field string
		msg   string
	}{
		{"missing", apiv1.WorkloadSpec{Command: []string{"no-such-program"}}, "workload.command", `"no-such-program" is not in the image's PATH`},
		{"exits", sh("echo goodbye; exit 3"), "workload.command", "exited with code 3; its last output:\ngoodbye"},
		{"noentry", apiv1.WorkloadSpec{Args: []string{"/nowhere"}}, "workload.args", `"/nowhere" is not an executable file`},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := l.spec(c.name, c.w)
			_, err := l.rt.Ensure(context.Background(), spec)
			var se *workload.SpecError
			if !errors.As(err, &se) || se.Field != c.field || !strings.Contains(se.Message, c.msg) {
				t.Fatalf("ensure: %v, want a spec error on %s saying %q", err, c.field, c.msg)
			}
			if c, err := l.rt.state(context.Background(), l.rt.id(spec.EnvID)); err != nil || c != nil {
				t.Fatalf("a container is left: %+v %v", c, err)
			}
			if st := l.status(spec.EnvID); st.State != apiv1.WorkloadExited || st.Message != se.Error() {
				t.Fatalf("status after the spec error: %+v, want exited saying %q", st, se.Error())
			}
		})
	}
}

func TestRuntime_WithoutACommandTheInitRunsAlone(t *testing.T) {
	l := newLab(t)
	spec := l.spec("idle", apiv1.WorkloadSpec{})
	a := l.ensure(spec)
	if a.Status.State != apiv1.WorkloadRunning || a.Status.Pid == 0 || a.Status.ExitCode != nil {
		t.Fatalf("ensure: %+v", a)
	}
}

func TestRuntime_AProcessAllocatingPastMemoryIsOOMKilledAndRestarted(t *testing.T) {
	l := newLab(t)
	// The second of sleep outlives Ensure's start window: this is a
	// workload that runs, then goes over its allowance.
	spec := l.spec("oom", sh("sleep 1; exec dd if=/dev/zero of=/dev/null bs=200M count=1"))
	spec.Resources.MemoryMB = 64
	l.ensure(spec)
	st := l.waitStatus(spec.EnvID, 15*time.Second, func(st workload.Status) bool { return st.RestartCount >= 2 })
	if st.ExitCode == nil || *st.ExitCode != 137 {
		t.Fatalf("exit code %v, want 137 (SIGKILL)", st.ExitCode)
	}
	if want := "killed by the kernel's OOM killer: memory_mb is 64"; !strings.Contains(st.Message, want) {
		t.Fatalf("message %q, want it to say %q", st.Message, want)
	}
}

// cpuUsage is the CPU time envID's cgroup has used.
func (l *lab) cpuUsage(envID string) time.Duration {
	l.t.Helper()
	if l.rt.cg.v2 {
		n, err := readKeyed(filepath.Join(l.rt.cg.dir("", l.rt.cgroupsPath(l.rt.id(envID))), "cpu.stat"), "usage_usec")
		if err != nil {
			l.t.Fatal(err)
		}
		return time.Duration(n) * time.Microsecond
	}
	n, err := strconv.ParseInt(l.cgroupFile(envID, "cpuacct", "cpuacct.usage"), 10, 64)
	if err != nil {
		l.t.Fatal(err)
	}
	return time.Duration(n)
}

func TestRuntime_ABusyLoopIsHeldToCPUMillis(t *testing.T) {
	l := newLab(t)
	spec := l.spec("spin", sh("while :; do :; done"))
	spec.Resources.CPUMillis = 250
	l.ensure(spec)
	u0, t0 := l.cpuUsage(spec.EnvID), time.Now()
	time.Sleep(3 * time.Second) // the measurement's span, not a wait for anything
	share := float64(l.cpuUsage(spec.EnvID)-u0) / float64(time.Since(t0))
	t.Logf("measured share %.3f of a core, allowed 0.250", share)
	if share < 0.2 || share > 0.3 {
		t.Fatalf("a busy loop allowed 250 millicores used %.3f of a core over 3 s", share)
	}
}

func TestRuntime_AForkLoopStopsAtMaxProcesses(t *testing.T) {
	l := newLab(t)
	spec := l.spec("forks", sh("while :; do sleep 1000 & done"))
	spec.Resources.MaxProcesses = 32
	l.ensure(spec)
	l.waitOutput(spec.EnvID, "can't fork", 10*time.Second)
	for range 20 {
		n, err := strconv.Atoi(l.cgroupFile(spec.EnvID, "pids", "pids.current"))
		if err != nil || n > 32 {
			t.Fatalf("pids.current %d (%v), the limit is 32", n, err)
		}
	}
	if n, err := readKeyed(filepath.Join(l.rt.cg.dir("pids", l.rt.cgroupsPath(l.rt.id(spec.EnvID))), "pids.events"), "max"); err != nil || n == 0 {
		t.Fatalf("pids.events max %d (%v): no fork was refused", n, err)
	}
	if st := l.status(spec.EnvID); st.State != apiv1.WorkloadRunning || st.RestartCount != 0 {
		t.Fatalf("the init did not keep running through the fork loop: %+v", st)
	}
}

func TestRuntime_WritingPastDiskGBGetsENOSPCWhileANeighbourWritesFine(t *testing.T) {
	l := newLab(t)
	full := l.spec("full", sh("dd if=/dev/zero of=/home/big bs=1M 2>&1; echo dd exited $?; sleep 1000")) // one stream: the error comes before the marker
	neighbour := l.spec("neighbour", sh("while [ ! -e /home/go ]; do sleep 0.05; done; dd if=/dev/zero of=/home/small bs=1M count=64 && echo neighbour wrote; sleep 1000"))
	l.ensure(full)
	l.ensure(neighbour)
	out := strings.Join(l.waitOutput(full.EnvID, "dd exited", 20*time.Second), "\n")
	if !strings.Contains(out, "No space left on device") || strings.Contains(out, "dd exited 0") {
		t.Fatalf("writing past 1 GiB: %q, want ENOSPC", out)
	}
	if err := os.WriteFile(filepath.Join(l.rt.paths(l.rt.id(neighbour.EnvID)).home, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l.waitOutput(neighbour.EnvID, "neighbour wrote", 10*time.Second)
}

func TestRuntime_AnEnvironmentSeesNothingOfTheHostOrOfAnotherAndCannotTouchItsNetwork(t *testing.T) {
	l := newLab(t)
	other := l.spec("other", sh("echo secret > /home/secret; echo other-pid $$; sleep 1000"))
	l.ensure(other)
	l.waitOutput(other.EnvID, "other-pid", 5*time.Second)
	spec := l.spec("inside", sh(`
		exec 2>&1 # one stream, so every error comes before "done"
		echo "hostname $(hostname)"
		echo "pids $(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')"
		ps -o pid,comm
		grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status
		cat /proc/mounts
		ls /home; cat /home/secret
		ip link set lo down; echo "link down exit $?"
		ip addr add 10.9.9.9/32 dev lo; echo "addr add exit $?"
		echo done; sleep 1000`))
	l.ensure(spec)
	lines := l.waitOutput(spec.EnvID, "done", 10*time.Second)
	out := strings.Join(lines, "\n")
	t.Logf("what the environment sees:\n%s", out)
	line := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		}
		t.Fatalf("no line %q in:\n%s", prefix, out)
		return ""
	}
	if h := line("hostname "); h != "inside" {
		t.Errorf("hostname %q, want inside", h)
	}
	// The init, the shell and the pipeline's processes: the host has
	// hundreds, the other environment its own.
	if pids := strings.Fields(line("pids ")); len(pids) > 8 || !slices.Contains(pids, "1") {
		t.Errorf("the container sees pids %v: more than its own", pids)
	}
	var comms []string
	for _, l := range lines[slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "PID") })+1:] {
		f := strings.Fields(l)
		if len(f) != 2 || strings.Trim(f[0], "0123456789") != "" {
			break
		}
		comms = append(comms, f[0]+" "+f[1])
	}
	if !slices.Equal(comms[:1], []string{"1 init"}) || slices.ContainsFunc(comms[1:], func(c string) bool {
		return !strings.HasSuffix(c, " sh") && !strings.HasSuffix(c, " ps")
	}) {
		t.Errorf("ps shows processes other than the init, the shell and ps: %v", comms)
	}
	for _, cap := range []struct {
		name string
		bit  uint
	}{{"NET_ADMIN", 12}, {"NET_RAW", 13}, {"SYS_ADMIN", 21}} {
		eff, err := strconv.ParseUint(strings.TrimSpace(line("CapEff:")), 16, 64)
		if err != nil || eff&(1<<cap.bit) != 0 {
			t.Errorf("the workload holds CAP_%s (CapEff %x, %v)", cap.name, eff, err)
		}
	}
	if line("Seccomp:") != "\t2" || line("NoNewPrivs:") != "\t1" {
		t.Errorf("the workload runs without a seccomp filter or with new privileges:\n%s", out)
	}
	allowed := []string{"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/home", "/.isolation/run", "/.isolation/init", "/etc/resolv.conf", "/etc/hosts"}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[1], "/") || !strings.ContainsAny(f[3], "rw") {
			continue
		}
		point := f[1]
		// The masked and read-only paths are mounts over /proc and /sys.
		if !slices.Contains(allowed, point) && !strings.HasPrefix(point, "/proc/") && !strings.HasPrefix(point, "/sys/") {
			t.Errorf("a mount the spec does not name: %s", l)
		}
	}
	if slices.Contains(lines, "secret") || !strings.Contains(out, "can't open '/home/secret'") {
		t.Errorf("another environment's file is visible:\n%s", out)
	}
	for _, op := range []string{"link down", "addr add"} {
		if line(op+" exit ") == "0" {
			t.Errorf("root in the environment could %s:\n%s", op, out)
		}
	}
	if !strings.Contains(out, "Operation not permitted") {
		t.Errorf("no EPERM from ip:\n%s", out)
	}
}

func TestRuntime_ANamespaceMadeAgainRestartsTheContainerInTheNewOne(t *testing.T) {
	l := newLab(t)
	spec := l.spec("renewed", sh("echo up; sleep 1000"))
	first := l.ensure(spec)
	if again := l.ensure(spec); again.Restarted || again.Status.Pid != first.Status.Pid {
		t.Fatalf("ensure with nothing changed restarted the container: %+v, first %+v", again, first)
	}
	// What a drift repair, or a restart that found the namespace gone,
	// does: the same name, another namespace.
	err := enforcens.OnLockedThread(func() error {
		if err := vnetns.DeleteNamed(spec.Namespace); err != nil {
			return err
		}
		h, err := vnetns.NewNamed(spec.Namespace)
		if err == nil {
			err = h.Close()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inNetns(first.Status.Pid, netnsPath(spec.Namespace)) {
		t.Fatal("the namespace was not made again")
	}
	second := l.ensure(spec)
	if !second.Restarted || second.Status.Pid == first.Status.Pid || !inNetns(second.Status.Pid, netnsPath(spec.Namespace)) {
		t.Fatalf("after the namespace was made again: %+v, want the container restarted in the new namespace", second)
	}
}

func TestRuntime_ResourcesChangeInPlace(t *testing.T) {
	l := newLab(t)
	spec := l.spec("update", sh("sleep 1000"))
	a := l.ensure(spec)
	spec.Resources = apiv1.Resources{CPUMillis: 500, MemoryMB: 128, DiskGB: 1, MaxProcesses: 64}
	b := l.ensure(spec)
	if b.Restarted || b.Status.Pid != a.Status.Pid {
		t.Fatalf("updating resources restarted the container: %+v then %+v", a, b)
	}
	for _, c := range []struct{ controller, file, want string }{
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"memory", "memory.limit_in_bytes", strconv.Itoa(128 << 20)},
		{"memory", "memory.memsw.limit_in_bytes", strconv.Itoa(128 << 20)},
		{"pids", "pids.max", "64"},
	} {
		if l.rt.cg.v2 {
			t.Skip("cgroup v2: the files differ (cpu.max, memory.max, memory.swap.max, pids.max)")
		}
		if got := l.cgroupFile(spec.EnvID, c.controller, c.file); got != c.want {
			t.Errorf("%s: %s, want %s", c.file, got, c.want)
		}
	}
}

// capEffective reports whether this process holds capability bit.
func capEffective(t *testing.T, bit uint) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && eff&(1<<bit) != 0
		}
	}
	return false
}

func TestRuntime_ADiskGrowsInPlaceAndShrinksWithARestartWhenItsDataFits(t *testing.T) {
	l := newLab(t)
	spec := l.spec("resize", sh("echo kept > /home/kept; sleep 1000"))
	first := l.ensure(spec)
	p := l.rt.paths(l.rt.id(spec.EnvID))
	spec.Resources.DiskGB = 2
	grown := l.ensure(spec)
	// Online growth needs CAP_SYS_RESOURCE, which some sandboxes
	// withhold; without it the disk grows offline, with a restart.
	const capSysResource = 24
	if online := capEffective(t, capSysResource); grown.Restarted == online {
		t.Errorf("growing the disk with CAP_SYS_RESOURCE %v: restarted %v", online, grown.Restarted)
	} else if !online {
		t.Log("no CAP_SYS_RESOURCE here: the disk grew offline")
	}
	if size, err := p.vol.Size(); err != nil || size != 2<<30 {
		t.Fatalf("disk size %d (%v), want 2 GiB", size, err)
	}

	// 1.5 GiB of data cannot shrink to 1 GiB: refused before anything stops.
	big := filepath.Join(p.home, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, 3<<29); err != nil {
		t.Fatal(err)
	}
	f.Close()
	spec.Resources.DiskGB = 1
	before := l.status(spec.EnvID)
	_, err = l.rt.Ensure(context.Background(), spec)
	var se *workload.SpecError
	if !errors.As(err, &se) || se.Field != "resources.disk_gb" {
		t.Fatalf("shrinking a disk holding 1.5 GiB to 1 GiB: %v, want a spec error on resources.disk_gb", err)
	}
	if after := l.status(spec.EnvID); after.State != apiv1.WorkloadRunning || after.Pid != before.Pid {
		t.Fatalf("a refused shrink touched the container: %+v then %+v", before, after)
	}
	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	shrunk := l.ensure(spec)
	if !shrunk.Restarted || shrunk.Status.Pid == first.Status.Pid {
		t.Fatalf("shrinking the disk: %+v, want a restart", shrunk)
	}
	if size, err := p.vol.Size(); err != nil || size != 1<<30 {
		t.Fatalf("disk size %d (%v), want 1 GiB", size, err)
	}
	if b, err := os.ReadFile(filepath.Join(p.home, "kept")); err != nil || string(b) != "kept\n" {
		t.Fatalf("resizing the disk lost its data: %q %v", b, err)
	}
}

func TestRuntime_AnImageChangeRecreatesTheContainerKeepingHomeAndEmptyingTheWritableLayer(t *testing.T) {
	l := newLab(t)
	_, b := testImages(t)
	spec := l.spec("change", sh("echo kept > /home/kept; echo scratch > /tmp/scratch; cat /etc/image-b; echo first; sleep 1000"))
	first := l.ensure(spec)
	l.waitOutput(spec.EnvID, "first", 5*time.Second)
	p := l.rt.paths(l.rt.id(spec.EnvID))
	if _, err := os.Stat(filepath.Join(p.upper, "tmp/scratch")); err != nil {
		t.Fatalf("the first container's write is not in the writable layer: %v", err)
	}
	spec.Image = b
	spec.Workload = sh("cat /home/kept; cat /etc/image-b; ls /tmp; echo second; sleep 1000")
	second := l.ensure(spec)
	if !second.Restarted || second.Status.Pid == first.Status.Pid || second.Status.ImageDigest != b.Digest {
		t.Fatalf("an image change did not recreate the container: %+v then %+v", first, second)
	}
	out := strings.Join(l.waitOutput(spec.EnvID, "second", 5*time.Second), "\n")
	if !strings.Contains(out, "kept\nb\nsecond") {
		t.Fatalf("the new container's output %q: want home kept, the new image's file, an empty /tmp", out)
	}
	if _, err := os.Stat(filepath.Join(p.upper, "tmp/scratch")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the writable layer was not emptied: %v", err)
	}
}

func TestRuntime_RemoveLeavesNothingBehind(t *testing.T) {
	l := newLab(t)
	var specs []workload.Spec
	for i := range 3 {
		spec := l.spec(fmt.Sprintf("gone%d", i), sh("sleep 1000 & sleep 1000"))
		l.ensure(spec)
		specs = append(specs, spec)
	}
	for _, spec := range specs {
		if err := l.rt.Remove(context.Background(), spec.EnvID); err != nil {
			t.Fatal(err)
		}
		if _, err := l.rt.Status(context.Background(), spec.EnvID); !errors.Is(err, workload.ErrUnknown) {
			t.Fatalf("status after remove: %v, want ErrUnknown", err)
		}
	}
	if err := l.rt.Remove(context.Background(), specs[0].EnvID); err != nil {
		t.Fatalf("removing a removed environment: %v", err)
	}
	assertNothingLeft(t, l.opts)
	for _, dir := range []string{"bundles", "volumes"} {
		if entries, err := os.ReadDir(filepath.Join(l.opts.Root, dir)); err != nil || len(entries) > 0 {
			t.Errorf("%s left: %v %v", dir, entries, err)
		}
	}
}

func TestRuntime_AContainerDeletedFromOutsideIsReportedAndMadeAgain(t *testing.T) {
	l := newLab(t)
	spec := l.spec("outside", sh("sleep 1000"))
	first := l.ensure(spec)
	id := l.rt.id(spec.EnvID)
	if err := l.rt.runc.Delete(context.Background(), id, nil); err == nil {
		t.Fatal("runc deleted a running container without --force")
	}
	if err := syscall.Kill(first.Status.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := l.waitStatus(spec.EnvID, 5*time.Second, func(st workload.Status) bool { return st.State == apiv1.WorkloadExited })
	if !strings.Contains(st.Message, "made again") {
		t.Fatalf("status of a killed container: %+v", st)
	}
	second := l.ensure(spec)
	if !second.Restarted || second.Status.State != apiv1.WorkloadRunning || second.Status.Pid == first.Status.Pid {
		t.Fatalf("ensure after the init was killed: %+v", second)
	}
	if ms, _ := volume.Mounts(l.rt.paths(id).rootfs); len(ms) != 1 {
		t.Fatalf("mounts at the root after recreating: %v, want one", ms)
	}
}

func TestRuntime_InAUserNamespaceRootIsAnUnprivilegedHostUser(t *testing.T) {
	l := usernsLab(t)
	spec := l.usernsSpec("userns", sh("cat /proc/self/uid_map; id -u; echo hi > /home/file; ls /sys | wc -l; echo done; sleep 1000"))
	l.ensure(spec)
	out := strings.Join(l.waitOutput(spec.EnvID, "done", 10*time.Second), "\n")
	if f := strings.Fields(out); len(f) < 4 || f[0] != "0" || f[1] != strconv.Itoa(testUsernsBase) || f[2] != "65536" || f[3] != "0" {
		t.Fatalf("uid_map and id -u inside: %q, want 0 %d 65536 and root", out, testUsernsBase)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(l.rt.paths(l.rt.id(spec.EnvID)).home, "file"), &st); err != nil || st.Uid != testUsernsBase {
		t.Fatalf("a file root wrote is owned by host uid %d (%v), want %d", st.Uid, err, testUsernsBase)
	}
	if !strings.Contains(out, "\n0\ndone") {
		t.Fatalf("/sys is not empty in a user namespace: %q", out)
	}
}

func TestRuntime_AfterAHostRestartTheContainerIsMadeAgainOnItsDisk(t *testing.T) {
	l := newLab(t)
	spec := l.spec("reboot", sh("[ -e /tmp/booted ] && echo again; touch /tmp/booted; echo kept > /home/kept; echo up; sleep 1000"))
	l.ensure(spec)
	l.waitOutput(spec.EnvID, "up", 5*time.Second)

	// A reboot takes runc's state (a tmpfs), the processes and the mounts.
	l.rt.Close()
	id := l.rt.id(spec.EnvID)
	p := l.rt.paths(id)
	if err := l.rt.runc.Delete(context.Background(), id, &gorunc.DeleteOpts{Force: true}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{p.rootfs, p.vol.Dir} {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(l.opts.StateRoot); err != nil {
		t.Fatal(err)
	}

	l.start()
	if err := l.rt.Sync(context.Background(), map[string]bool{spec.EnvID: true}); err != nil {
		t.Fatal(err)
	}
	if st := l.status(spec.EnvID); st.State != apiv1.WorkloadExited || !strings.Contains(st.Message, "gone") {
		t.Fatalf("status before Ensure: %+v, want the container gone", st)
	}
	if a := l.ensure(spec); !a.Restarted || a.Status.State != apiv1.WorkloadRunning {
		t.Fatalf("ensure after the reboot: %+v", a)
	}
	// The same spec keeps the writable layer, as a restarted container does.
	l.waitOutput(spec.EnvID, "again", 5*time.Second)
}
