package runc

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
)

// A container's OCI spec is built from a minimal spec by options, each
// owning one concern (after containerd's pkg/oci), in the order newSpec
// applies them.
type specOpt func(*specs.Spec) error

// newSpec builds the spec from its options; the root filesystem is the
// bundle's rootfs directory, where the runtime has mounted the overlay.
func newSpec(opts ...specOpt) (*specs.Spec, error) {
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{},
		Linux:   &specs.Linux{},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// defaultCapabilities is the default set of containerd and Docker less
// NET_RAW and NET_ADMIN, so that nothing in an environment can forge
// packets or touch its own interfaces, routes or nftables rules.
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// process is what runs in the container: the init, and the command it
// runs as the image's user.
type process struct {
	Args   []string // the command, empty for the init alone
	Env    []string
	Cwd    string
	UID    uint32
	GID    uint32
	Groups []uint32
	// Field is the spec field that named the program, blamed when it is
	// missing or exits at once.
	Field string
}

// withProcess makes the init PID 1, running as the container's root with
// the default capabilities and no new privileges, and tells it the
// command, its user, its restart policy and its exec socket.
func withProcess(p process, restart string, logMaxBytes int64) specOpt {
	return func(s *specs.Spec) error {
		args := []string{initspec.Binary,
			initspec.FlagRestart, restart,
			initspec.FlagUID, strconv.FormatUint(uint64(p.UID), 10),
			initspec.FlagGID, strconv.FormatUint(uint64(p.GID), 10),
			initspec.FlagExecFD, strconv.Itoa(execFD),
		}
		if len(p.Groups) > 0 {
			groups := make([]string, len(p.Groups))
			for i, g := range p.Groups {
				groups[i] = strconv.FormatUint(uint64(g), 10)
			}
			args = append(args, initspec.FlagGroups, strings.Join(groups, ","))
		}
		if logMaxBytes > 0 {
			args = append(args, initspec.FlagLogMaxBytes, strconv.FormatInt(logMaxBytes, 10))
		}
		s.Process = &specs.Process{
			Args:            append(append(args, "--"), p.Args...),
			Env:             p.Env,
			Cwd:             p.Cwd,
			User:            specs.User{UID: 0, GID: 0},
			Capabilities:    capabilitiesOf(0),
			NoNewPrivileges: true,
			Rlimits:         rlimits(),
		}
		return nil
	}
}

// capabilitiesOf are what a process of the container running as uid
// holds: root the default set; any other user only the bounding set, as
// the init's setuid leaves the workload's command.
func capabilitiesOf(uid uint32) *specs.LinuxCapabilities {
	c := &specs.LinuxCapabilities{Bounding: defaultCapabilities}
	if uid == 0 {
		c.Effective, c.Permitted = defaultCapabilities, defaultCapabilities
	}
	return c
}

// rlimits are containerd's default: what a program expects, whatever
// limit isolationd itself runs with.
func rlimits() []specs.POSIXRlimit {
	return []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}
}

func withHostname(name string) specOpt {
	return func(s *specs.Spec) error {
		s.Hostname = name
		return nil
	}
}

// withNamespaces gives the container namespaces of its own but the
// network one, which is the environment's, made by the enforcement driver.
func withNamespaces(netnsPath string, userns bool) specOpt {
	return func(s *specs.Spec) error {
		s.Linux.Namespaces = []specs.LinuxNamespace{
			{Type: specs.PIDNamespace},
			{Type: specs.IPCNamespace},
			{Type: specs.UTSNamespace},
			{Type: specs.MountNamespace},
			{Type: specs.CgroupNamespace},
			{Type: specs.NetworkNamespace, Path: netnsPath},
		}
		if userns {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}
		return nil
	}
}

// withUserns maps the container's ids 0..65535 to the host's base.., the
// one mapping every environment shares (runc 1.1 cannot idmap mounts, and
// the image layers are unpacked once, shifted by base).
func withUserns(base uint32) specOpt {
	return func(s *specs.Spec) error {
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: usernsSize}}
		s.Linux.UIDMappings, s.Linux.GIDMappings = m, m
		return nil
	}
}

// binds are the host files and directories a container sees: nothing else
// of the host is mounted into it.
type binds struct {
	Home, Run, Init, ResolvConf, Hosts string
}

// withMounts mounts the kernel filesystems a program expects and the
// environment's own binds.
func withMounts(b binds, userns bool) specOpt {
	return func(s *specs.Spec) error {
		s.Mounts = []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		}
		// The kernel mounts sysfs only for the owner of the network
		// namespace: a container in a user namespace of its own joins one
		// the host's user namespace owns, so it goes without /sys.
		if !userns {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}})
		}
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/home", Type: "bind", Source: b.Home, Options: []string{"rbind", "rw", "nosuid", "nodev"}},
			specs.Mount{Destination: initspec.Dir, Type: "bind", Source: b.Run, Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}},
			specs.Mount{Destination: initspec.Binary, Type: "bind", Source: b.Init, Options: []string{"bind", "ro", "nosuid", "nodev"}},
			specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: b.ResolvConf, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}},
			specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: b.Hosts, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}},
		)
		return nil
	}
}

// withProcfsMasks hides and freezes the /proc and /sys paths containerd
// hides and freezes by default: kernel memory, keys, timers, firmware and
// the knobs that would reach the host.
func withProcfsMasks() specOpt {
	return func(s *specs.Spec) error {
		s.Linux.MaskedPaths = []string{
			"/proc/acpi",
			"/proc/asound",
			"/proc/interrupts",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/proc/scsi",
			"/sys/firmware",
			"/sys/devices/virtual/powercap",
		}
		s.Linux.ReadonlyPaths = []string{
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger",
		}
		return nil
	}
}

// withResources holds the container to its allowances in its own cgroup,
// and lets it use no device but the standard ones runc adds.
func withResources(r apiv1.Resources, cgroupsPath string, v2 bool) specOpt {
	return func(s *specs.Spec) error {
		s.Linux.CgroupsPath = cgroupsPath
		s.Linux.Resources = linuxResources(r, v2)
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
		return nil
	}
}

// cpuPeriod is the CFS period: cpu_millis of a core is a quota of
// cpu_millis*100 µs in every 100 ms.
const cpuPeriod = 100_000

// linuxResources are the cgroup limits of r, for create and for runc
// update: the CFS quota, the memory limit with no swap beyond it, and the
// pids limit.
func linuxResources(r apiv1.Resources, v2 bool) *specs.LinuxResources {
	quota, period := r.CPUMillis*cpuPeriod/1000, uint64(cpuPeriod)
	mem := r.MemoryMB << 20
	pids := r.MaxProcesses
	res := &specs.LinuxResources{
		CPU: &specs.LinuxCPU{Quota: &quota, Period: &period},
		// Swap is memory plus swap in the OCI spec: equal to the limit,
		// it leaves no swap.
		Memory: &specs.LinuxMemory{Limit: &mem, Swap: &mem},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
	if !v2 {
		// cgroup v2 has no per-cgroup swappiness; on v1 it keeps the
		// kernel from swapping the container's pages at all.
		var none uint64
		res.Memory.Swappiness = &none
	}
	return res
}

// withSeccomp applies Docker's default seccomp profile, whose syscall
// list depends on the capabilities, so it comes after withProcess.
func withSeccomp() specOpt {
	return func(s *specs.Spec) error {
		p, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return fmt.Errorf("the default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = p
		return nil
	}
}
