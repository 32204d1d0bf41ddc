package runc

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
)

func testSpec(t *testing.T, userns bool) *specs.Spec {
	t.Helper()
	opts := []specOpt{
		withProcess(process{Args: []string{"sh", "-c", "true"}, Env: []string{"PATH=/bin"}, Cwd: "/", UID: 1000, GID: 1000, Groups: []uint32{50, 60}}, "on-failure", 0),
		withHostname("dev"),
		withNamespaces("/run/netns/isoabc", userns),
		withMounts(binds{Home: "/v/home", Run: "/v/run", Init: "/bin/init", ResolvConf: "/b/resolv.conf", Hosts: "/b/hosts"}, userns),
		withProcfsMasks(),
		withResources(apiv1.Resources{CPUMillis: 250, MemoryMB: 64, DiskGB: 1, MaxProcesses: 100}, "/isolationd/iso/isoabc", false),
		withSeccomp(),
	}
	if userns {
		opts = append(opts, withUserns(2_000_000_000))
	}
	s, err := newSpec(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSpec_TheInitRunsTheCommandAsTheImageUserWithNoNewPrivileges(t *testing.T) {
	s := testSpec(t, false)
	want := []string{initspec.Binary, "--restart", "on-failure", "--uid", "1000", "--gid", "1000", "--exec-fd", "3", "--groups", "50,60", "--", "sh", "-c", "true"}
	if diff := cmp.Diff(want, s.Process.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if s.Process.User.UID != 0 || !s.Process.NoNewPrivileges || s.Hostname != "dev" {
		t.Errorf("process %+v, hostname %q", s.Process, s.Hostname)
	}
	for _, c := range [][]string{s.Process.Capabilities.Bounding, s.Process.Capabilities.Effective, s.Process.Capabilities.Permitted} {
		if slices.Contains(c, "CAP_NET_ADMIN") || slices.Contains(c, "CAP_NET_RAW") || slices.Contains(c, "CAP_SYS_ADMIN") || !slices.Contains(c, "CAP_CHOWN") {
			t.Errorf("capabilities %v: want Docker's default set less NET_RAW and NET_ADMIN", c)
		}
	}
	if len(s.Process.Capabilities.Inheritable) > 0 || len(s.Process.Capabilities.Ambient) > 0 {
		t.Errorf("inheritable or ambient capabilities: %+v", s.Process.Capabilities)
	}
}

func TestSpec_NamespacesJoinTheEnvironmentsNetworkAndMakeTheRest(t *testing.T) {
	for _, userns := range []bool{false, true} {
		s := testSpec(t, userns)
		var got []string
		for _, ns := range s.Linux.Namespaces {
			got = append(got, string(ns.Type)+"="+ns.Path)
		}
		want := []string{"pid=", "ipc=", "uts=", "mount=", "cgroup=", "network=/run/netns/isoabc"}
		if userns {
			want = append(want, "user=")
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("userns %v: namespaces (-want +got):\n%s", userns, diff)
		}
		hasSys := slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys" })
		if hasSys == userns {
			t.Errorf("userns %v: /sys mounted %v", userns, hasSys)
		}
		if userns && (len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0] != (specs.LinuxIDMapping{ContainerID: 0, HostID: 2_000_000_000, Size: 65536})) {
			t.Errorf("uid mappings %+v", s.Linux.UIDMappings)
		}
	}
}

func TestSpec_NoHostMountButTheNamedOnes(t *testing.T) {
	s := testSpec(t, false)
	var binds []string
	for _, m := range s.Mounts {
		if m.Type == "bind" {
			ro := slices.Contains(m.Options, "ro")
			binds = append(binds, m.Source+"->"+m.Destination+map[bool]string{true: " ro", false: " rw"}[ro])
		}
	}
	want := []string{"/v/home->/home rw", "/v/run->" + initspec.Dir + " rw", "/bin/init->" + initspec.Binary + " ro", "/b/resolv.conf->/etc/resolv.conf ro", "/b/hosts->/etc/hosts ro"}
	if diff := cmp.Diff(want, binds); diff != "" {
		t.Errorf("binds (-want +got):\n%s", diff)
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("masked %v, read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if s.Root.Readonly {
		t.Error("the root is read-only: the overlay's upper layer is the writable one")
	}
}

func TestSpec_ResourcesBecomeCgroupLimits(t *testing.T) {
	s := testSpec(t, false)
	r := s.Linux.Resources
	if *r.CPU.Quota != 25_000 || *r.CPU.Period != 100_000 {
		t.Errorf("cpu quota %d per %d, want 25000 per 100000 for 250 millicores", *r.CPU.Quota, *r.CPU.Period)
	}
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 || *r.Memory.Swappiness != 0 {
		t.Errorf("memory %d, memory+swap %d, swappiness %d: want 64 MiB and no swap", *r.Memory.Limit, *r.Memory.Swap, *r.Memory.Swappiness)
	}
	if *r.Pids.Limit != 100 || s.Linux.CgroupsPath != "/isolationd/iso/isoabc" {
		t.Errorf("pids %d, cgroup %s", *r.Pids.Limit, s.Linux.CgroupsPath)
	}
	if v2 := linuxResources(apiv1.Resources{CPUMillis: 100, MemoryMB: 64, MaxProcesses: 16}, true); v2.Memory.Swappiness != nil {
		t.Error("swappiness on cgroup v2, which has none")
	}
	if len(r.Devices) != 1 || r.Devices[0].Allow {
		t.Errorf("devices %+v: want every device denied but runc's standard ones", r.Devices)
	}
}

func TestSpec_SeccompIsDockersDefaultProfile(t *testing.T) {
	s := testSpec(t, false)
	sc := s.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) < 10 {
		t.Fatalf("seccomp %+v", sc)
	}
	// ptrace-like and admin syscalls that need CAP_SYS_ADMIN are left out
	// of the allowed list without it.
	for _, call := range sc.Syscalls {
		if call.Action == specs.ActAllow && slices.Contains(call.Names, "mount") {
			t.Errorf("mount is allowed without CAP_SYS_ADMIN: %+v", call)
		}
	}
}

// writeRootfs makes a directory standing for an image's root.
func writeRootfs(t *testing.T, files map[string]string) rootfs {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if filepath.Dir(name) == "bin" {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	r, err := openRootfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

var idFiles = map[string]string{
	"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
	"etc/group":  "root:x:0:\napp:x:1001:\nstaff:x:50:app,other\nwheel:x:10:root\n",
	"bin/sh":     "#!",
	"bin/server": "#!",
	"etc/motd":   "not executable",
}

func TestResolveUser_NamesAndIdsAsDockerDoes(t *testing.T) {
	r := writeRootfs(t, idFiles)
	for _, c := range []struct {
		user string
		want user
	}{
		{"", user{UID: 0, GID: 0, Groups: []uint32{10}, Home: "/root"}},
		{"app", user{UID: 1000, GID: 1001, Groups: []uint32{50}, Home: "/home/app"}},
		{"1000", user{UID: 1000, GID: 1001, Groups: []uint32{50}, Home: "/home/app"}},
		{"app:staff", user{UID: 1000, GID: 50, Groups: nil, Home: "/home/app"}},
		{"app:7", user{UID: 1000, GID: 7, Groups: []uint32{50}, Home: "/home/app"}},
		{"4242", user{UID: 4242, GID: 0, Home: "/"}},
		{"4242:4343", user{UID: 4242, GID: 4343, Home: "/"}},
	} {
		got, err := r.resolveUser(c.user)
		if err != nil {
			t.Errorf("%q: %v", c.user, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", c.user, diff)
		}
	}
	for _, bad := range []string{"nobody", "app:nogroup"} {
		var se *workload.SpecError
		if _, err := r.resolveUser(bad); !errors.As(err, &se) || se.Field != "workload.image" {
			t.Errorf("%q: %v, want a spec error on workload.image", bad, err)
		}
	}
}

func TestRootfs_ASymlinkCannotReachTheHost(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// On the host, /etc/passwd holds root; resolved in the image's root,
	// the link leads to a file that does not exist.
	if err := os.Symlink("/../../../../etc/passwd", filepath.Join(dir, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	r, err := openRootfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, err := r.readFile("/etc/passwd", maxIDFile); err == nil {
		t.Fatalf("read the host's /etc/passwd through the image: %q", b)
	}
}

func TestResolveProcess_CommandArgsEntrypointAndEnvironment(t *testing.T) {
	r := writeRootfs(t, idFiles)
	img := image.Resolved{Entrypoint: []string{"/bin/server"}, Cmd: []string{"--port", "80"}, Env: []string{"PATH=/bin", "MODE=image"}, WorkingDir: "/srv", User: "app"}
	for _, c := range []struct {
		name string
		w    apiv1.WorkloadSpec
		args []string
	}{
		{"image", apiv1.WorkloadSpec{}, []string{"/bin/server", "--port", "80"}},
		{"args replace cmd", apiv1.WorkloadSpec{Args: []string{"--port", "8080"}}, []string{"/bin/server", "--port", "8080"}},
		{"command replaces both", apiv1.WorkloadSpec{Command: []string{"sh"}}, []string{"sh"}},
		{"command and args", apiv1.WorkloadSpec{Command: []string{"sh"}, Args: []string{"-c", "x"}}, []string{"sh", "-c", "x"}},
	} {
		p, err := resolveProcess(r, workload.Spec{Hostname: "dev", Image: img, Workload: c.w})
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if diff := cmp.Diff(c.args, p.Args); diff != "" {
			t.Errorf("%s: args (-want +got):\n%s", c.name, diff)
		}
	}
	p, err := resolveProcess(r, workload.Spec{Hostname: "dev", Image: img, Workload: apiv1.WorkloadSpec{Env: map[string]string{"MODE": "mine", "EXTRA": "1"}, WorkingDir: "/tmp"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"PATH=/bin", "MODE=mine", "EXTRA=1", "HOSTNAME=dev", "HOME=/home/app"}, p.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if p.Cwd != "/tmp" || p.UID != 1000 {
		t.Errorf("cwd %q uid %d", p.Cwd, p.UID)
	}
	noPath, err := resolveProcess(r, workload.Spec{Workload: apiv1.WorkloadSpec{Command: []string{"sh"}}})
	if err != nil || !slices.Contains(noPath.Env, "PATH="+defaultPath) || noPath.Cwd != "/" {
		t.Errorf("an image without PATH or working dir: %+v %v", noPath, err)
	}

	for _, c := range []struct {
		name  string
		img   image.Resolved
		w     apiv1.WorkloadSpec
		field string
	}{
		{"command not found", img, apiv1.WorkloadSpec{Command: []string{"python"}}, "workload.command"},
		{"not executable", img, apiv1.WorkloadSpec{Command: []string{"/etc/motd"}}, "workload.command"},
		{"bad entrypoint", image.Resolved{Entrypoint: []string{"/bin/nothing"}}, apiv1.WorkloadSpec{}, "workload.image"},
		{"args naming no program", image.Resolved{}, apiv1.WorkloadSpec{Args: []string{"nothing"}}, "workload.args"},
	} {
		var se *workload.SpecError
		if _, err := resolveProcess(r, workload.Spec{Image: c.img, Workload: c.w}); !errors.As(err, &se) || se.Field != c.field {
			t.Errorf("%s: %v, want a spec error on %s", c.name, err, c.field)
		}
	}
	idle, err := resolveProcess(r, workload.Spec{Image: image.Resolved{}})
	if err != nil || len(idle.Args) != 0 {
		t.Errorf("no command anywhere: %+v %v, want the init alone", idle, err)
	}
}

func TestSpecHash_OnlyWhatNeedsARestartChangesIt(t *testing.T) {
	spec := workload.Spec{EnvID: "e", Hostname: "dev", Namespace: "isoabc", Image: image.Resolved{Name: "a", Digest: "sha256:1"}, Workload: apiv1.WorkloadSpec{Image: "a", Command: []string{"x"}}, Resources: apiv1.Resources{CPUMillis: 100}}
	h := specHash(spec, 0)
	same := spec
	same.Image.Name, same.Workload.Image = "b", "b"
	same.Resources = apiv1.Resources{CPUMillis: 900, MemoryMB: 1, DiskGB: 3, MaxProcesses: 20}
	same.Workload.Restart = apiv1.RestartAlways // the default, spelt out
	if specHash(same, 0) != h {
		t.Error("resources, the image's name or the default restart policy changed the hash")
	}
	for name, edit := range map[string]func(*workload.Spec){
		"digest":  func(s *workload.Spec) { s.Image.Digest = "sha256:2" },
		"command": func(s *workload.Spec) { s.Workload.Command = []string{"y"} },
		"args":    func(s *workload.Spec) { s.Workload.Args = []string{"y"} },
		"env":     func(s *workload.Spec) { s.Workload.Env = map[string]string{"A": "1"} },
		"cwd":     func(s *workload.Spec) { s.Workload.WorkingDir = "/x" },
		"restart": func(s *workload.Spec) { s.Workload.Restart = apiv1.RestartNever },
		"user":    func(s *workload.Spec) { s.Image.User = "app" },
	} {
		changed := spec
		edit(&changed)
		if specHash(changed, 0) == h {
			t.Errorf("a new %s left the hash as it was", name)
		}
	}
	if specHash(spec, 1) == h {
		t.Error("the user namespace's base left the hash as it was")
	}
}

func TestContainerResolvConf_DropsLoopbackNameservers(t *testing.T) {
	got := string(containerResolvConf([]byte("search example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\noptions edns0\n"), nil))
	if want := "search example.com\nnameserver 10.0.0.2\noptions edns0\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestContainerResolvConf_TheEnvironmentsResolversReplaceTheHosts(t *testing.T) {
	got := string(containerResolvConf([]byte("search example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\n"), []string{"198.18.0.1", "fd00::1"}))
	if want := "nameserver 198.18.0.1\nnameserver fd00::1\nsearch example.com\noptions edns0\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestNew_NamesWhatIsMissing(t *testing.T) {
	base := Options{Root: t.TempDir(), StateRoot: t.TempDir(), Prefix: "iso", InitBinary: "/bin/sh"}
	for _, c := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"runc", func(o *Options) { o.RuncBinary = "no-such-runc" }, "no-such-runc is not installed (make runtime-deps builds runc"},
		{"init", func(o *Options) { o.InitBinary = "/no/such/init" }, "the init /no/such/init is not an executable file"},
		{"no init", func(o *Options) { o.InitBinary = "" }, "no init binary"},
		{"prefix", func(o *Options) { o.Prefix = "Iso-1" }, `prefix "Iso-1" must be`},
	} {
		opts := base
		c.edit(&opts)
		if _, err := New(opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}
