package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
)

// Remove stops envID's workload and removes its container, cgroups,
// mounts, disk and bundle.
func (r *Runtime) Remove(ctx context.Context, envID string) error {
	return r.remove(ctx, r.id(envID))
}

func (r *Runtime) remove(ctx context.Context, id string) error {
	defer r.lock(id)()
	p := r.paths(id)
	if err := r.teardown(ctx, id, p); err != nil {
		return err
	}
	if err := p.vol.Remove(); err != nil {
		return err
	}
	// RemoveAll must never walk into a mount.
	if ms, err := volume.Mounts(p.bundle); err != nil || len(ms) > 0 {
		return fmt.Errorf("container %s: mounts left under %s: %v %v", id, p.bundle, ms, err)
	}
	if err := os.RemoveAll(p.bundle); err != nil {
		return err
	}
	r.log.Info("runc runtime: container removed", "container", id)
	return nil
}

// Sync adopts the running containers of the environments in keep and
// removes every container, mount, disk and bundle of the prefix that
// belongs to none. The container of a kept environment that no longer
// runs is deleted, its disk kept for Ensure.
func (r *Runtime) Sync(ctx context.Context, keep map[string]bool) error {
	want := map[string]string{} // container id → environment id
	for envID, ok := range keep {
		if ok {
			want[r.id(envID)] = envID
		}
	}
	errs := []error{r.syncContainers(ctx, want)}
	names, err := r.ownedFiles()
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range names {
		if _, ok := want[id]; !ok {
			errs = append(errs, r.remove(ctx, id))
		}
	}
	return errors.Join(errs...)
}

func (r *Runtime) syncContainers(ctx context.Context, want map[string]string) error {
	if _, err := os.Stat(r.opts.StateRoot); errors.Is(err, os.ErrNotExist) {
		// No state root, no container (runc 1.2 and later refuse to list
		// one that does not exist).
		return nil
	}
	cs, err := r.runc.List(ctx)
	if err != nil {
		return fmt.Errorf("runc list: %w", err)
	}
	var errs []error
	for _, c := range cs {
		if !r.owns(c.ID) {
			continue
		}
		envID, kept := want[c.ID]
		switch {
		case kept && c.Status == "running":
			r.watch(c.ID, envID, c.Pid)
			r.log.Info("runc runtime: container adopted", "container", c.ID, "env", envID, "pid", c.Pid)
		case kept:
			unlock := r.lock(c.ID)
			errs = append(errs, r.teardown(ctx, c.ID, r.paths(c.ID)))
			unlock()
		default:
			r.log.Info("runc runtime: removing an orphan container", "container", c.ID)
			errs = append(errs, r.remove(ctx, c.ID))
		}
	}
	return errors.Join(errs...)
}

// ownedFiles lists the container ids that have a bundle or a disk.
func (r *Runtime) ownedFiles() ([]string, error) {
	var ids []string
	for _, dir := range []string{"bundles", "volumes"} {
		entries, err := os.ReadDir(filepath.Join(r.opts.Root, dir))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		for _, e := range entries {
			id, _, _ := strings.Cut(e.Name(), ".")
			if r.owns(id) && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// Cleanup removes everything a runc runtime with opts' prefix made: its
// containers, mounts, disks, loop devices, cgroups and state, for
// isolationd cleanup (uninstalling, or a lost data dir). Without runc,
// there can be no container to remove, and the rest goes.
func Cleanup(ctx context.Context, opts Options) error {
	r, err := newRuntime(opts)
	if err != nil {
		return err
	}
	defer r.Close()
	var errs []error
	if r.runc != nil {
		errs = append(errs, r.syncContainers(ctx, nil))
	}
	ids, err := r.ownedFiles()
	errs = append(errs, err)
	for _, id := range ids {
		errs = append(errs, r.remove(ctx, id))
	}
	// What no container id accounts for: a mount or a loop device under
	// Root made by a crashed or older isolationd.
	ms, err := volume.Mounts(r.opts.Root)
	errs = append(errs, err)
	for _, m := range slices.Backward(ms) {
		if err := unix.Unmount(m.Point, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m.Point, err))
		}
	}
	loops, err := volume.LoopDevices(r.opts.Root)
	errs = append(errs, err)
	for _, l := range loops {
		errs = append(errs, volume.Detach(l.Device))
	}
	errs = append(errs, r.cg.remove("/isolationd/"+r.opts.Prefix))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if ms, err := volume.Mounts(r.opts.Root); err != nil || len(ms) > 0 {
		return fmt.Errorf("runc runtime: mounts left under %s: %v %v", r.opts.Root, ms, err)
	}
	return errors.Join(os.RemoveAll(r.opts.Root), os.RemoveAll(r.opts.StateRoot))
}
