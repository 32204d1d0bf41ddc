package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/runc"
	wsimulate "github.com/isolationhq/terraform-provider-isolation/internal/workload/simulate"
)

// Where the runc runtime keeps its files.
const (
	// RuntimeDir, in the data directory, holds the bundles and volumes.
	RuntimeDir = "runtime"
	// InitBinaryName is the init looked for beside isolationd's executable.
	InitBinaryName = "isolation-init"
	// RuncBinaryName is runc, looked for beside isolationd's executable
	// first.
	RuncBinaryName = "runc"
	// UsernsBase is the host uid and gid a container's root maps to when
	// containers get a user namespace: every environment shares the
	// mapping 0..65535 → UsernsBase..+65535, since their image layers are
	// shared and runc 1.1 cannot map a mount per container.
	UsernsBase = 2000000000
)

// runtimeName is the workload runtime a configuration asks for: what
// --runtime says, else runc with the netns driver and simulate with the
// simulate driver, which runs nothing.
func (cfg Config) runtimeName() (string, error) {
	if cfg.WorkloadRuntime != nil {
		return cfg.WorkloadRuntime.Name(), nil
	}
	name := cfg.Runtime
	if cfg.Driver != netns.DriverName || cfg.EnforceDriver != nil {
		if name != "" && name != apiv1.RuntimeSimulate {
			return "", fmt.Errorf("server: --runtime %s needs the netns driver (--driver netns); the simulate driver runs no workloads", name)
		}
		return apiv1.RuntimeSimulate, nil
	}
	switch name {
	case "":
		return apiv1.RuntimeRunc, nil
	case apiv1.RuntimeRunc, apiv1.RuntimeNone:
		return name, nil
	}
	return "", fmt.Errorf("server: --runtime %q: must be runc or none with the netns driver", name)
}

// usernsBase is the base of the containers' user namespace mapping, 0 for
// none: with --userns auto, a mapping when the kernel allows one and the
// runtime's directory can be reached by the mapped root.
func (cfg Config) usernsBase(name string) (uint32, error) {
	if name != apiv1.RuntimeRunc {
		return 0, nil
	}
	switch cfg.Userns {
	case "off":
		return 0, nil
	case "", "auto":
	default:
		return 0, fmt.Errorf("server: --userns %q: must be auto or off", cfg.Userns)
	}
	if err := runc.UsernsSupported(UsernsBase); err != nil {
		cfg.Logger.Warn("containers run without a user namespace: the kernel refuses one", "error", err.Error())
		return 0, nil
	}
	// The mapped root reaches its root filesystem through the data
	// directory: give up the user namespace when a parent is not
	// traversable, else make the data directory so (not readable: every
	// file in it stays 0600).
	for d := filepath.Dir(filepath.Clean(cfg.DataDir)); d != "/"; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
			cfg.Logger.Warn("containers run without a user namespace: a container's mapped root could not reach its root filesystem",
				"directory", d, "fix", "chmod o+x "+d)
			return 0, nil
		}
	}
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil { //nolint:gosec // G302: traversable, not readable, by a container's mapped root
		return 0, fmt.Errorf("server: data directory: %w", err)
	}
	return UsernsBase, nil
}

// initBinary finds the init: --init-binary, else isolation-init beside
// this executable, else on PATH.
func (cfg Config) initBinary() (string, error) {
	if p, ok := besideOrOnPath(cfg.InitBinary, InitBinaryName); ok {
		return p, nil
	}
	return "", errors.New("server: the runc runtime needs " + InitBinaryName + " (built by make build into bin/, beside isolationd): " +
		"put it beside isolationd or on PATH, or give --init-binary")
}

// runcBinary is runc: --runc, else runc beside this executable (where
// make runtime-deps builds it), else on PATH; the runtime says what is
// wrong with what it finds.
func (cfg Config) runcBinary() string {
	p, _ := besideOrOnPath(cfg.RuncBinary, RuncBinaryName)
	return cmp.Or(p, RuncBinaryName)
}

// besideOrOnPath is the program a flag names, else name beside this
// executable, else name on PATH.
func besideOrOnPath(flag, name string) (string, bool) {
	if flag != "" {
		return flag, true
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	p, err := exec.LookPath(name)
	return p, err == nil
}

// runtimeOptions are the runc runtime's options for cfg: its files in the
// data directory, runc's state on /run (which outlives isolationd, as the
// containers do), container ids from the netns driver's prefix.
func (cfg Config) runtimeOptions(prefix string, userns uint32) runc.Options {
	return runc.Options{
		Root:      filepath.Join(cfg.DataDir, RuntimeDir),
		StateRoot: filepath.Join("/run/isolationd", prefix, "runc"),
		Prefix:    prefix, UsernsBase: userns, Logger: cfg.Logger,
		RuncBinary: cfg.runcBinary(),
	}
}

// newRuntime opens the workload runtime; nil for --runtime none.
func newRuntime(cfg Config, name, prefix string, userns uint32) (workload.Runtime, error) {
	if cfg.WorkloadRuntime != nil {
		return cfg.WorkloadRuntime, nil
	}
	switch name {
	case apiv1.RuntimeSimulate:
		return wsimulate.New(), nil
	case apiv1.RuntimeNone:
		return nil, nil
	}
	init, err := cfg.initBinary()
	if err != nil {
		return nil, err
	}
	opts := cfg.runtimeOptions(prefix, userns)
	opts.InitBinary = init
	rt, err := runc.New(opts)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return rt, nil
}

// Cleanup removes everything isolationd's drivers made under cfg's prefix:
// every container, mount and volume of the runc runtime, then every
// namespace, link and nftables table of the netns driver, the router
// namespace included. It is for uninstalling, and for a host whose data
// directory's database was lost: it reads none. A stopped isolationd leaves
// all of them in place for its next start.
func Cleanup(ctx context.Context, cfg Config) error {
	prefix := cfg.NetnsPrefix
	d, err := netns.New(netns.Config{Prefix: prefix, Logger: cfg.Logger})
	if err != nil {
		return fmt.Errorf("server: cleanup: %w", err)
	}
	if cfg.DataDir == "" {
		return errors.New("server: cleanup: the data directory is required: the runtime's disks and mounts are under it")
	}
	opts := cfg.runtimeOptions(d.Prefix(), 0)
	var errs []error
	if err := runc.Cleanup(ctx, opts); err != nil {
		errs = append(errs, fmt.Errorf("runtime: %w", err))
	}
	if err := d.Purge(ctx); err != nil {
		errs = append(errs, fmt.Errorf("netns: %w", err))
	}
	if len(errs) == 0 {
		// runc's state directory went with the runtime; its parent is ours.
		if err := os.Remove(filepath.Dir(opts.StateRoot)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
