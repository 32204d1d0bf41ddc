// Package runc is isolationd's real workload runtime: every environment's
// workload runs in an OCI container under runc, driven through
// github.com/containerd/go-runc with specs built from runtime-spec types.
//
// A container joins the environment's network namespace (made by the
// netns enforcement driver, /run/netns/<namespace>) and gets pid, ipc,
// uts, mount and cgroup namespaces of its own, and a user namespace when
// the caller asks for one. Its root is an overlay the runtime mounts on
// the host: the image's unpacked layers (read-only, shared by every
// environment) under a writable layer on the environment's own disk
// (internal/volume), which also holds its home, mounted at /home, and the
// init's directory with its status and logs (initspec.Dir). PID 1 is the
// init (cmd/isolation-init), which runs the command as the image's user
// with the restart policy. Resources become cgroup limits (v1 or v2),
// changed in place with runc update.
//
// Containers outlive isolationd: runc create leaves them to the host's init, and
// nothing but files ties them to the process that made them. What runs is
// found again by looking at what exists (runc's state, the bundle and
// volume directories, the mounts), never at what the runtime remembers.
//
// Layout, for a container id <ctr> (netns.NamespaceName(prefix, envID)):
//
//	<Root>/bundles/<ctr>/       the OCI bundle: config.json, rootfs/ (the overlay's mount point),
//	                            hosts, resolv.conf, record.json (what made it), init.log, init.pid,
//	                            exec.sock (the init's exec socket: see exec.go)
//	<Root>/volumes/<ctr>.img    the environment's disk, mounted at
//	<Root>/volumes/<ctr>/       upper/ and work/ (the writable layer), home/, run/ (initspec.Dir)
//	<StateRoot>/<ctr>/          runc's own state
//	/sys/fs/cgroup/.../isolationd/<prefix>/<ctr>  its cgroups
//
// It imports the workload seam, the image seam, internal/volume and the
// netns driver's naming; the server assembles it.
package runc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	gorunc "github.com/containerd/go-runc"
	"golang.org/x/mod/semver"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
)

// Options configure a Runtime.
type Options struct {
	// Root holds the bundles and the volumes (<data-dir>/runtime).
	Root string
	// StateRoot is runc's --root (/run/isolationd/<prefix>/runc): on a
	// tmpfs, so that it survives isolationd, not a reboot, like the
	// containers it describes.
	StateRoot string
	// Prefix is the enforcement driver's: container ids are the
	// environments' namespace names, so that orphans are recognisable.
	Prefix string
	// InitBinary is the static cmd/isolation-init, bind-mounted read-only
	// at initspec.Binary in every container.
	InitBinary string
	// RuncBinary is runc's path or name on PATH; default "runc".
	RuncBinary string
	// UsernsBase, when not 0, gives every container a user namespace
	// mapping its ids 0..65535 to UsernsBase..+65535 (see UsernsSupported);
	// the image store must unpack layers shifted by the same base.
	UsernsBase uint32
	// Logger receives lifecycle events; default slog.Default().
	Logger *slog.Logger
	// StopGrace is how long a stopping workload has between SIGTERM and
	// SIGKILL; default 10 s.
	StopGrace time.Duration
	// PollInterval is how often Changes looks at the status files and the
	// inits; default 1 s.
	PollInterval time.Duration
	// StartWindow is how long Ensure watches a new command: one that
	// exits within it is a spec error ("exits at once"); default 1 s,
	// negative for none (Ensure returns once the command has started).
	StartWindow time.Duration
	// StartTimeout bounds the wait for the init to report the command
	// started; default 30 s.
	StartTimeout time.Duration
	// ResolvConf is the host file each environment's /etc/resolv.conf is
	// derived from; default /etc/resolv.conf.
	ResolvConf string
	// LogMaxBytes is the init's log rotation size (0: the init's default).
	LogMaxBytes int64
}

// Runtime runs workloads under runc. It is safe for concurrent use; work on
// one environment is serialized.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	runc    *gorunc.Runc // nil without runc, for Cleanup alone
	runcErr error
	cg      cgroups

	mu      sync.Mutex
	locks   map[string]*idLock
	watched map[string]*watch // by container id

	changes   chan string
	polling   bool // New started poll; newRuntime alone (Cleanup) does not
	stop      chan struct{}
	done      chan struct{} // closed when poll returns
	closeOnce sync.Once
}

var _ workload.Runtime = (*Runtime)(nil)

// New checks that runc and the init are there and starts watching.
func New(opts Options) (*Runtime, error) {
	if opts.InitBinary == "" {
		return nil, errors.New("runc runtime: no init binary (cmd/isolation-init, built by make build into bin/)")
	}
	st, err := os.Stat(opts.InitBinary)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("runc runtime: the init %s is not an executable file (build it with make build): %v", opts.InitBinary, err)
	}
	r, err := newRuntime(opts)
	if err != nil {
		return nil, err
	}
	if r.runc == nil {
		return nil, r.runcErr
	}
	if r.opts.UsernsBase != 0 {
		if err := execsIntoUserns(r.runc.Command); err != nil {
			return nil, err
		}
		// A container's root maps to an unprivileged host user, which
		// must reach the init and the directories it mounts from.
		if st.Mode().Perm()&0o005 != 0o005 {
			return nil, fmt.Errorf("runc runtime: with a user namespace, the init %s must be readable and executable by everyone", opts.InitBinary)
		}
		if err := searchable(r.opts.Root); err != nil {
			return nil, fmt.Errorf("runc runtime: with a user namespace, %w", err)
		}
	}
	for _, d := range []string{r.opts.Root, filepath.Join(r.opts.Root, "bundles"), filepath.Join(r.opts.Root, "volumes")} {
		if err := os.MkdirAll(d, 0o711); err != nil { //nolint:gosec // G301: traversable, not readable, by a container's root mapped to another host user
			return nil, fmt.Errorf("runc runtime: %w", err)
		}
	}
	if err := os.MkdirAll(r.opts.StateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	r.polling = true
	go r.poll()
	return r, nil
}

// prefixRE: container ids are file names and runc ids.
var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// newRuntime is a Runtime without the init, for New and Cleanup, which
// goes on without runc (runcErr says why it is nil); it does not watch
// until poll runs.
func newRuntime(opts Options) (*Runtime, error) {
	if opts.Root == "" || opts.StateRoot == "" {
		return nil, errors.New("runc runtime: Root and StateRoot are required")
	}
	if !prefixRE.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("runc runtime: prefix %q must be a lowercase letter, then lowercase letters or digits", opts.Prefix)
	}
	opts.RuncBinary = cmp.Or(opts.RuncBinary, "runc")
	opts.Logger = cmp.Or(opts.Logger, slog.Default())
	opts.StopGrace = cmp.Or(opts.StopGrace, 10*time.Second)
	opts.PollInterval = cmp.Or(opts.PollInterval, time.Second)
	opts.StartWindow = cmp.Or(opts.StartWindow, time.Second)
	opts.StartTimeout = cmp.Or(opts.StartTimeout, 30*time.Second)
	opts.ResolvConf = cmp.Or(opts.ResolvConf, "/etc/resolv.conf")
	cg, err := detectCgroups()
	if err != nil {
		return nil, fmt.Errorf("runc runtime: cgroups: %w", err)
	}
	r := &Runtime{
		opts:    opts,
		log:     opts.Logger,
		cg:      cg,
		locks:   map[string]*idLock{},
		watched: map[string]*watch{},
		changes: make(chan string, 64),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	path, err := exec.LookPath(opts.RuncBinary)
	if err != nil {
		r.runcErr = fmt.Errorf("runc runtime: %s is not installed (make runtime-deps builds runc 1.2 or later into bin/, beside isolationd; or give its path): %w", opts.RuncBinary, err)
		return r, nil
	}
	// Setpgid: a signal to isolationd's process group (a ^C in its
	// terminal) does not reach the containers it started.
	r.runc = &gorunc.Runc{Command: path, Root: opts.StateRoot, Setpgid: true}
	return r, nil
}

// minRuncUserns is the first runc that joins a network namespace made
// outside a container's user namespace before it joins that user
// namespace (opencontainers/runc#4492): older ones cannot exec into
// such a container, and every container with a user namespace is one.
const minRuncUserns = "1.2.0"

// runcVersionRE finds the version in the first line of runc --version.
var runcVersionRE = regexp.MustCompile(`^runc version (\d+)\.(\d+)\.(\d+)`)

// execsIntoUserns checks that the runc at path is minRuncUserns or later.
func execsIntoUserns(path string) error {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return fmt.Errorf("runc runtime: %s --version: %w", path, err)
	}
	m := runcVersionRE.FindStringSubmatch(string(out))
	if m == nil {
		return fmt.Errorf("runc runtime: %s --version printed no version: %q", path, firstLine(out))
	}
	if semver.Compare("v"+m[1]+"."+m[2]+"."+m[3], "v"+minRuncUserns) < 0 {
		return fmt.Errorf("runc runtime: %s is runc %s.%s.%s, which cannot exec into a container with a user namespace "+
			"(opencontainers/runc#4390, fixed in %s): make runtime-deps builds the runc tools/runc/go.mod pins into bin/, "+
			"beside isolationd; or give --runc a runc %s or later, or --userns off", path, m[1], m[2], m[3], minRuncUserns, minRuncUserns)
	}
	return nil
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// searchable checks that everyone may traverse dir and its parents.
func searchable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil && st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s must be searchable by everyone (chmod o+x %s)", d, d)
		}
		if d == "/" {
			return nil
		}
	}
}

// Name is apiv1.RuntimeRunc.
func (r *Runtime) Name() string { return apiv1.RuntimeRunc }

// Changes delivers the ids of environments whose status may have changed.
func (r *Runtime) Changes() <-chan string { return r.changes }

// Close stops watching and closes Changes; the containers keep running.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() {
		close(r.stop)
		if r.polling {
			<-r.done
		}
		r.mu.Lock()
		for id := range r.watched {
			r.unwatchLocked(id)
		}
		r.mu.Unlock()
		close(r.changes)
	})
	return nil
}

// LogDir is the host directory holding envID's output.
func (r *Runtime) LogDir(envID string) (string, error) {
	p := r.paths(r.id(envID))
	if _, err := os.Stat(p.record); err != nil {
		return "", workload.ErrUnknown
	}
	return filepath.Join(p.run, initspec.LogDir), nil
}

// id is envID's container id, the name of its network namespace.
func (r *Runtime) id(envID string) string { return netns.NamespaceName(r.opts.Prefix, envID) }

// owns reports whether a container id, bundle or volume name is shaped
// like one of this runtime's.
func (r *Runtime) owns(name string) bool {
	return strings.HasPrefix(name, r.opts.Prefix) && len(name) == len(r.id(""))
}

// cgroupsPath is the container's cgroup, below one per prefix, so that
// runtimes of different prefixes never share one.
func (r *Runtime) cgroupsPath(id string) string {
	return "/isolationd/" + r.opts.Prefix + "/" + id
}

// paths are where a container's things live on the host.
type paths struct {
	bundle, rootfs, config, record, initLog, pidFile, hosts, resolvConf, execSock string
	vol                                                                           volume.Volume
	upper, work, home, run                                                        string
}

func (r *Runtime) paths(id string) paths {
	b := filepath.Join(r.opts.Root, "bundles", id)
	v := volume.Volume{File: filepath.Join(r.opts.Root, "volumes", id+".img"), Dir: filepath.Join(r.opts.Root, "volumes", id)}
	return paths{
		bundle:     b,
		rootfs:     filepath.Join(b, "rootfs"),
		config:     filepath.Join(b, "config.json"),
		record:     filepath.Join(b, "record.json"),
		initLog:    filepath.Join(b, "init.log"),
		pidFile:    filepath.Join(b, "init.pid"),
		hosts:      filepath.Join(b, "hosts"),
		resolvConf: filepath.Join(b, "resolv.conf"),
		execSock:   filepath.Join(b, "exec.sock"),
		vol:        v,
		upper:      filepath.Join(v.Dir, "upper"),
		work:       filepath.Join(v.Dir, "work"),
		home:       filepath.Join(v.Dir, "home"),
		run:        filepath.Join(v.Dir, "run"),
	}
}

// idLock serializes the work on one container; it lives while someone
// holds or waits for it.
type idLock struct {
	sync.Mutex
	refs int
}

func (r *Runtime) lock(id string) (unlock func()) {
	r.mu.Lock()
	l := r.locks[id]
	if l == nil {
		l = &idLock{}
		r.locks[id] = l
	}
	l.refs++
	r.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		r.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(r.locks, id)
		}
		r.mu.Unlock()
	}
}

// state is runc's view of container id, nil when runc knows none.
func (r *Runtime) state(ctx context.Context, id string) (*gorunc.Container, error) {
	if r.runc == nil {
		return nil, nil // Cleanup without runc: no container can run
	}
	if _, err := os.Stat(filepath.Join(r.opts.StateRoot, id)); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	c, err := r.runc.State(ctx, id)
	if err != nil {
		if _, serr := os.Stat(filepath.Join(r.opts.StateRoot, id)); errors.Is(serr, os.ErrNotExist) {
			return nil, nil // deleted meanwhile
		}
		return nil, fmt.Errorf("runc state %s: %w", id, err)
	}
	return c, nil
}

// waitExit waits for the process behind pidfd to exit, for at most d;
// it reports whether it did.
func waitExit(ctx context.Context, pidfd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		// Slices of at most 100 ms, to notice ctx being cancelled.
		left := time.Until(deadline)
		ms := int(min(left, 100*time.Millisecond) / time.Millisecond)
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, max(ms, 0)) //nolint:gosec // G115: a file descriptor fits an int32
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false, err
		}
		if n > 0 {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if left <= 0 {
			return false, nil
		}
	}
}
