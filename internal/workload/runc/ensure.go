package runc

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	gorunc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
)

// record is what a container was made from, kept beside its bundle: the
// hash of everything that needs a restart to change, and what changes in
// place.
type record struct {
	EnvID       string          `json:"env_id"`
	Hash        string          `json:"hash"`
	ImageDigest string          `json:"image_digest"`
	Resources   apiv1.Resources `json:"resources"`
	// Failed is the spec error that stopped the container, which Status
	// reports until an Ensure makes it again.
	Failed string `json:"failed,omitempty"`
	// Process is what its processes start from, for Exec.
	Process processBase `json:"process"`
}

// specHash covers what a running container cannot change: its image, its
// process, its hostname, its namespaces.
func specHash(spec workload.Spec, usernsBase uint32) string {
	w := spec.Workload
	h := sha256.New()
	// Strings, slices and a map of strings: encoding them cannot fail.
	_ = json.NewEncoder(h).Encode(struct {
		V                   int
		Digest, User        string
		Command, Args       []string
		Env                 map[string]string
		WorkingDir, Restart string
		Hostname, Namespace string
		UsernsBase          uint32
	}{1, spec.Image.Digest, spec.Image.User, w.Command, w.Args, w.Env, w.WorkingDir, restartPolicy(w), spec.Hostname, spec.Namespace, usernsBase})
	return hex.EncodeToString(h.Sum(nil))
}

func restartPolicy(w apiv1.WorkloadSpec) string { return cmp.Or(w.Restart, apiv1.RestartPolicies[0]) }

// Ensure makes envID's container match spec (see workload.Runtime).
func (r *Runtime) Ensure(ctx context.Context, spec workload.Spec) (workload.Apply, error) {
	id := r.id(spec.EnvID)
	defer r.lock(id)()
	p := r.paths(id)
	want := record{EnvID: spec.EnvID, Hash: specHash(spec, r.opts.UsernsBase), ImageDigest: spec.Image.Digest, Resources: spec.Resources, Process: newProcessBase(spec)}
	old := readRecord(p.record)
	c, err := r.state(ctx, id)
	if err != nil {
		return workload.Apply{}, err
	}
	size := spec.Resources.DiskGB << 30
	if c != nil && c.Status == "running" && old != nil && old.Hash == want.Hash {
		if st, ok, err := r.adopt(ctx, id, p, c, *old, want, size, spec.Namespace); ok || err != nil {
			return workload.Apply{Status: st}, err
		}
	}

	// The disk is made, or checked to hold its data at a smaller size,
	// before anything is stopped.
	if err := p.vol.Create(ctx, size); err != nil {
		return workload.Apply{}, err
	}
	cur, err := p.vol.Size()
	if err != nil {
		return workload.Apply{}, err
	}
	if cur > size {
		if used, err := p.vol.Used(); err != nil {
			return workload.Apply{}, err
		} else if used >= size {
			return workload.Apply{}, diskTooSmall(fmt.Sprintf("the environment's disk holds %d MiB", used>>20), spec.Resources.DiskGB)
		}
	}
	if err := r.teardown(ctx, id, p); err != nil {
		return workload.Apply{}, err
	}
	if cur != size {
		if err := r.resize(ctx, p, cur, size, spec.Resources.DiskGB); err != nil {
			return workload.Apply{}, err
		}
	}
	if old == nil || old.Hash != want.Hash {
		// A new image or process starts from the image again; home stays.
		if err := resetWritable(p); err != nil {
			return workload.Apply{}, err
		}
	}
	field, pid, err := r.create(ctx, id, p, spec, want)
	if err == nil {
		var st workload.Status
		if st, err = r.waitStarted(ctx, id, pid, p, want, field); err == nil {
			return workload.Apply{Status: st, Restarted: old != nil || c != nil}, nil
		}
	}
	// Nothing half-made stays up: a later Ensure starts over; the disk,
	// with its home and logs, stays until Remove.
	if terr := r.teardown(context.WithoutCancel(ctx), id, p); terr != nil {
		r.log.Warn("runc runtime: tearing down a failed container", "container", id, "err", terr)
	}
	if se := (*workload.SpecError)(nil); errors.As(err, &se) {
		want.Failed = se.Error()
		if werr := writeJSON(p.record, want); werr != nil {
			r.log.Warn("runc runtime: recording a failed container", "container", id, "err", werr)
		}
	}
	return workload.Apply{}, err
}

// adopt keeps the running container of an unchanged spec: cpu, memory and
// pids change in place, the disk grows online. It reports false when the
// disk must change size offline, which needs a restart.
func (r *Runtime) adopt(ctx context.Context, id string, p paths, c *gorunc.Container, old, want record, size int64, namespace string) (workload.Status, bool, error) {
	if namespace != "" && !inNetns(c.Pid, netnsPath(namespace)) {
		// The namespace was made again (a drift repair, or a restart
		// that found it gone): the container is in the old one, which
		// nothing connects any more.
		r.log.Info("runc runtime: the environment's network namespace is new: restarting the container", "container", id, "namespace", namespace)
		return workload.Status{}, false, nil
	}
	cur, err := p.vol.Size()
	if err != nil {
		return workload.Status{}, false, err
	}
	if cur > size {
		return workload.Status{}, false, nil
	}
	if cur < size {
		if err := p.vol.Grow(ctx, size); errors.Is(err, volume.ErrOffline) {
			r.log.Info("runc runtime: the disk grows offline: restarting the container", "container", id, "err", err)
			return workload.Status{}, false, nil
		} else if err != nil {
			return workload.Status{}, false, err
		}
	}
	inPlace := func(r apiv1.Resources) apiv1.Resources { r.DiskGB = 0; return r }
	if inPlace(old.Resources) != inPlace(want.Resources) {
		if err := r.runc.Update(ctx, id, linuxResources(want.Resources, r.cg.v2)); err != nil {
			return workload.Status{}, false, fmt.Errorf("runc update %s: %w", id, err)
		}
	}
	// A record read back compares equal to the one it was written from
	// (JSON keeps a nil slice nil); one written before it held the
	// process is rewritten.
	if !reflect.DeepEqual(old, want) {
		if err := writeJSON(p.record, want); err != nil {
			return workload.Status{}, false, err
		}
	}
	r.watch(id, want.EnvID, c.Pid)
	return r.status(id, p, c, &want), true, nil
}

// resize changes the stopped container's disk from cur to size bytes.
func (r *Runtime) resize(ctx context.Context, p paths, cur, size, diskGB int64) error {
	if size > cur {
		err := p.vol.Grow(ctx, size)
		if !errors.Is(err, volume.ErrOffline) {
			return err
		}
	}
	err := p.vol.Resize(ctx, size)
	if errors.Is(err, volume.ErrNoFit) {
		return diskTooSmall(err.Error(), diskGB)
	}
	return err
}

func diskTooSmall(why string, diskGB int64) error {
	return &workload.SpecError{Field: "resources.disk_gb", Message: fmt.Sprintf("%s, which does not fit %d GiB: free space in the environment first", why, diskGB)}
}

// resetWritable empties the overlay's writable layer.
func resetWritable(p paths) error {
	for _, d := range []string{p.upper, p.work} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	return nil
}

// teardown stops and deletes id's container, if any, and unmounts its
// root; the disk stays.
func (r *Runtime) teardown(ctx context.Context, id string, p paths) error {
	c, err := r.state(ctx, id)
	if err != nil {
		return err
	}
	if c != nil {
		if err := r.kill(ctx, id, c); err != nil {
			return err
		}
		if err := r.runc.Delete(ctx, id, &gorunc.DeleteOpts{Force: true}); err != nil {
			if c, serr := r.state(ctx, id); serr != nil || c != nil {
				return fmt.Errorf("runc delete %s: %w", id, err)
			}
		}
	}
	r.unwatch(id)
	if err := os.Remove(p.execSock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ms, err := volume.Mounts(p.bundle)
	if err != nil {
		return err
	}
	for _, m := range slices.Backward(ms) {
		if err := unix.Unmount(m.Point, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m.Point, err)
		}
	}
	// runc delete removes the container's cgroups; a container killed
	// half-way through its creation can leave them.
	if err := r.cg.remove(r.cgroupsPath(id)); err != nil {
		r.log.Warn("runc runtime: removing cgroups", "container", id, "err", err)
	}
	return nil
}

// killTimeout bounds the wait for a SIGKILLed init to be gone.
const killTimeout = 10 * time.Second

// kill stops the container's processes: SIGTERM to the init, which passes
// it on to the command, then SIGKILL to all of them after StopGrace.
func (r *Runtime) kill(ctx context.Context, id string, c *gorunc.Container) error {
	if c.Pid <= 0 || c.Status == "stopped" {
		return nil
	}
	fd, err := unix.PidfdOpen(c.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	} else if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", c.Pid, err)
	}
	defer unix.Close(fd)
	if c.Status == "running" {
		if err := r.runc.Kill(ctx, id, int(unix.SIGTERM), nil); err == nil {
			if exited, err := waitExit(ctx, fd, r.opts.StopGrace); exited || err != nil {
				return err
			}
		}
	}
	if err := r.runc.Kill(ctx, id, int(unix.SIGKILL), &gorunc.KillOpts{All: true}); err != nil {
		r.log.Debug("runc runtime: kill", "container", id, "err", err)
	}
	exited, err := waitExit(ctx, fd, killTimeout)
	if err == nil && !exited {
		err = fmt.Errorf("container %s: its init %d outlived SIGKILL by %s", id, c.Pid, killTimeout)
	}
	return err
}

// create makes the container and starts it; it returns the spec field
// that named the command's program, and the init's host pid.
func (r *Runtime) create(ctx context.Context, id string, p paths, spec workload.Spec, rec record) (field string, pid int, err error) {
	newHome, err := r.prepareVolume(p)
	if err != nil {
		return "", 0, err
	}
	if err := r.writeBundleFiles(p, spec.Hostname, spec.Nameservers); err != nil {
		return "", 0, err
	}
	if err := mountOverlay(spec.Image.Layers, p, r.opts.UsernsBase); err != nil {
		return "", 0, err
	}
	root, err := openRootfs(p.rootfs)
	if err != nil {
		return "", 0, err
	}
	proc, err := resolveProcess(root, spec)
	root.Close()
	if err != nil {
		return "", 0, err
	}
	if newHome {
		if err := populateHome(ctx, p); err != nil {
			return "", 0, err
		}
	}
	userns := r.opts.UsernsBase != 0
	opts := []specOpt{
		withProcess(proc, restartPolicy(spec.Workload), r.opts.LogMaxBytes),
		withHostname(spec.Hostname),
		withNamespaces(netnsPath(spec.Namespace), userns),
		withMounts(binds{Home: p.home, Run: p.run, Init: r.opts.InitBinary, ResolvConf: p.resolvConf, Hosts: p.hosts}, userns),
		withProcfsMasks(),
		withResources(spec.Resources, r.cgroupsPath(id), r.cg.v2),
		withSeccomp(),
	}
	if userns {
		opts = append(opts, withUserns(r.opts.UsernsBase))
	}
	s, err := newSpec(opts...)
	if err != nil {
		return "", 0, err
	}
	if err := writeJSON(p.config, s); err != nil {
		return "", 0, err
	}
	if err := writeJSON(p.record, rec); err != nil {
		return "", 0, err
	}
	// The init's status of an earlier container must not pass for this one's.
	if err := os.Remove(filepath.Join(p.run, initspec.StatusFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", 0, err
	}
	stdio, err := newFileIO(p.initLog)
	if err != nil {
		return "", 0, err
	}
	// The init holds the exec socket's only listening descriptor; the
	// file at its path stays for the runtime to connect to, after a
	// restart too.
	sock, err := listenExec(p.execSock)
	if err != nil {
		stdio.Close()
		return "", 0, err
	}
	// runc run --detach creates and starts the container in one runc
	// process: runc start in a second one made a start a sixth slower
	// (make bench-runtime). It runs to its end, whatever happens to the
	// caller: killed half-way, runc can leave a state directory that it
	// can neither show nor delete.
	runcCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.StartTimeout)
	defer cancel()
	_, err = r.runc.Run(runcCtx, id, p.bundle, &gorunc.CreateOpts{IO: stdio, PidFile: p.pidFile, Detach: true, ExtraFiles: []*os.File{sock}})
	stdio.Close()
	sock.Close()
	if err != nil {
		return "", 0, fmt.Errorf("runc run %s: %w: %s", id, err, tailFile(p.initLog))
	}
	b, err := os.ReadFile(p.pidFile)
	if err != nil {
		return "", 0, err
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return "", 0, fmt.Errorf("runc's pid file %s: %w", p.pidFile, err)
	}
	r.watch(id, spec.EnvID, pid)
	r.log.Info("runc runtime: container started", "container", id, "env", spec.EnvID, "pid", pid)
	return proc.Field, pid, nil
}

// usernsSize is the number of ids every container's user namespace maps.
const usernsSize = 65536

// prepareVolume makes the disk's directories, owned by the container's
// root; it reports whether home was made now (and is to be filled from
// the image).
func (r *Runtime) prepareVolume(p paths) (newHome bool, err error) {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{p.upper, 0o755}, {p.work, 0o700}, {p.home, 0o755}, {p.run, 0o700}} {
		err := os.Mkdir(d.path, d.mode)
		if d.path == p.home {
			newHome = err == nil
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return false, err
		}
		// The overlay's root takes the upper layer's owner and mode.
		if err := os.Chown(d.path, int(r.opts.UsernsBase), int(r.opts.UsernsBase)); err != nil {
			return false, err
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return false, err
		}
	}
	return newHome, nil
}

// populateHome fills a new home volume with the image's /home, as Docker
// fills a new volume with what the image holds at its mount point.
func populateHome(ctx context.Context, p paths) error {
	src := filepath.Join(p.rootfs, "home")
	// Lstat: an image whose /home is a symlink has no home to copy.
	if st, err := os.Lstat(src); err != nil || !st.IsDir() {
		return nil
	}
	// -a copies symlinks as they are, never what they point to.
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--", src+"/.", p.home+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("fill the home volume from the image: %w: %s", err, out)
	}
	return nil
}

// mountOverlay mounts the container's root: the image's layers, highest
// first, under the writable layer on its disk.
func mountOverlay(layers []string, p paths, usernsBase uint32) error {
	if err := os.MkdirAll(p.rootfs, 0o755); err != nil { //nolint:gosec // G301: the container's root directory, which its root, mapped to another host user, must see
		return err
	}
	lower := slices.Clone(layers)
	slices.Reverse(lower)
	if len(lower) == 0 {
		// overlayfs needs a lower layer: an image of no layers has an empty one.
		empty := filepath.Join(p.bundle, "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil { //nolint:gosec // G301: as the root directory above
			return err
		}
		if err := os.Chown(empty, int(usernsBase), int(usernsBase)); err != nil {
			return err
		}
		lower = []string{empty}
	}
	for _, d := range append(slices.Clone(lower), p.upper, p.work) {
		if strings.ContainsAny(d, ":,\\") {
			return fmt.Errorf("overlay: the path %q holds a character overlayfs options cannot carry", d)
		}
	}
	data := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + p.upper + ",workdir=" + p.work
	if len(data) >= os.Getpagesize() {
		return fmt.Errorf("overlay: %d layers make options longer than the kernel takes (%d bytes)", len(layers), os.Getpagesize())
	}
	if err := unix.Mount("overlay", p.rootfs, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount the overlay at %s: %w", p.rootfs, err)
	}
	return nil
}

// writeBundleFiles writes the environment's /etc/hosts and
// /etc/resolv.conf, bound read-only into the container.
func (r *Runtime) writeBundleFiles(p paths, hostname string, nameservers []string) error {
	if err := os.MkdirAll(p.bundle, 0o711); err != nil { //nolint:gosec // G301: traversable, not readable, by a container's root mapped to another host user
		return err
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"
	if err := writeFile(p.hosts, []byte(hosts), 0o644); err != nil {
		return err
	}
	resolv, err := os.ReadFile(r.opts.ResolvConf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return writeFile(p.resolvConf, containerResolvConf(resolv, nameservers), 0o644)
}

// containerResolvConf is the host's resolv.conf without its loopback
// nameservers (a local stub resolver), which the environment's network
// namespace cannot reach, as Docker does. With nameservers (the
// environment's resolvers, which the driver runs) the host's go
// altogether and those come first; its search and options lines stay.
func containerResolvConf(host []byte, nameservers []string) []byte {
	var out []string
	for _, ns := range nameservers {
		out = append(out, "nameserver "+ns)
	}
	for _, line := range strings.Split(string(host), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" && (len(nameservers) > 0 || strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
			continue
		}
		out = append(out, line)
	}
	return []byte(strings.Join(out, "\n"))
}

// waitStarted waits for the init to report the command running (or the
// init alone, without a command) and watches it for StartWindow: a
// command that cannot start, or exits in that time, is the spec's fault.
func (r *Runtime) waitStarted(ctx context.Context, id string, pid int, p paths, rec record, field string) (workload.Status, error) {
	started := time.Now()
	timeout := time.NewTimer(r.opts.StartTimeout)
	defer timeout.Stop()
	// The init reports through a file; a short tick bounds the latency.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s, err := readStatus(p)
		if err == nil {
			if s.Error != "" {
				return workload.Status{}, &workload.SpecError{Field: field, Message: "the command could not start: " + s.Error}
			}
			ran := s.ExitCode != nil || s.RestartCount > 0
			if ran && (s.ExitedAt == nil || s.ExitedAt.Sub(started) < r.opts.StartWindow) {
				return workload.Status{}, &workload.SpecError{Field: field, Message: "the command exited at once: " + r.describeExit(id, p, s, rec.Resources.MemoryMB)}
			}
			idle := s.State == apiv1.WorkloadRunning && s.Pid == 0
			if ran || s.State == apiv1.WorkloadRunning && (idle || time.Since(started) >= r.opts.StartWindow) {
				// runc started the init with this pid, and it has not exited.
				return r.status(id, p, &gorunc.Container{ID: id, Pid: pid, Status: "running"}, &rec), nil
			}
		}
		if r.initExited(id) {
			return workload.Status{}, fmt.Errorf("container %s: its init exited: %s", id, tailFile(p.initLog))
		}
		select {
		case <-ctx.Done():
			return workload.Status{}, ctx.Err()
		case <-timeout.C:
			return workload.Status{}, fmt.Errorf("container %s: the init did not report the command started within %s: %s", id, r.opts.StartTimeout, tailFile(p.initLog))
		case <-tick.C:
		}
	}
}

func readRecord(path string) *record {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var rec record
	if json.Unmarshal(b, &rec) != nil {
		return nil
	}
	return &rec
}

func readStatus(p paths) (initspec.Status, error) {
	var s initspec.Status
	b, err := os.ReadFile(filepath.Join(p.run, initspec.StatusFile))
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	return s, err
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return err
	}
	return writeFile(path, b, 0o600)
}

// writeFile replaces path atomically, so a crash leaves the old file or
// the new one.
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fileIO gives runc run /dev/null as stdin and a file as output, which
// the container inherits: no pipe ties it to isolationd, which may die
// without taking it along.
type fileIO struct{ null, out *os.File }

func newFileIO(path string) (*fileIO, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		null.Close()
		return nil, err
	}
	return &fileIO{null: null, out: out}, nil
}

func (f *fileIO) Close() error {
	f.null.Close()
	return f.out.Close()
}

func (f *fileIO) Stdin() io.WriteCloser { return nil }
func (f *fileIO) Stdout() io.ReadCloser { return nil }
func (f *fileIO) Stderr() io.ReadCloser { return nil }
func (f *fileIO) Set(cmd *exec.Cmd)     { cmd.Stdin, cmd.Stdout, cmd.Stderr = f.null, f.out, f.out }

var _ gorunc.IO = (*fileIO)(nil)

// netnsPath is where a named network namespace is mounted.
func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// inNetns reports whether process pid is in the network namespace mounted
// at path; false when either is gone.
func inNetns(pid int, path string) bool {
	var proc, named unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &proc) != nil || unix.Stat(path, &named) != nil {
		return false
	}
	return proc.Dev == named.Dev && proc.Ino == named.Ino
}
