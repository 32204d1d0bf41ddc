package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
	enforcens "github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
)

// With the netns driver and the runc runtime, the environments are kernel
// objects (namespaces, containers, mounts, loop devices): the demo checks
// that destroying them leaves none, and removes what isolationd keeps for
// its next start with `isolationd cleanup` once it has stopped, then its
// own internet (internet.go).

// checkNothingLeft fails when an environment's namespace, or a mount or
// loop device of their disks, is still there after the environments were
// destroyed.
func (d *demo) checkNothingLeft() error {
	var left []string
	for _, ns := range d.namespaces {
		if _, err := os.Stat(filepath.Join(runDir, ns)); err == nil {
			left = append(left, ns)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("after destroy the environments' namespaces %s are still in %s", strings.Join(left, ", "), runDir)
	}
	if len(d.namespaces) == 0 {
		return nil
	}
	fmt.Fprintf(d.out, "the environments' namespaces %s are gone\n", strings.Join(d.namespaces, " and "))
	if err := d.checkNoMounts(); err != nil {
		return fmt.Errorf("after destroy: %w", err)
	}
	fmt.Fprintf(d.out, "no mount or loop device is left under the data directory: the containers' root filesystems and disks are gone\n")
	return nil
}

// checkNoMounts fails when a mount or a loop device is left under the
// demo's data directory.
func (d *demo) checkNoMounts() error {
	mounts, err := volume.Mounts(d.dataDir)
	if err != nil {
		return err
	}
	loops, err := volume.LoopDevices(d.dataDir)
	if err != nil {
		return err
	}
	if len(mounts)+len(loops) > 0 {
		return fmt.Errorf("mounts %v and loop devices %v are left under %s", mounts, loops, d.dataDir)
	}
	return nil
}

// cleanup runs `isolationd cleanup` for the demo's prefix once isolationd
// has stopped: it removes what isolationd keeps for its next start (the
// router namespace and its uplink), and after a failure whatever the
// environments left (containers, mounts, disks, namespaces). Then it
// deletes the demo's internet, and fails if any namespace with the
// prefix, or any mount under the data directory, remains.
func (d *demo) cleanup(ctx context.Context) error {
	removed, err := d.isolationdCleanup(ctx)
	// The internet goes even when isolationd cleanup failed: nothing else
	// would delete it.
	if d.inet != nil {
		if cErr := d.inet.close(); cErr != nil {
			err = errors.Join(err, cErr)
		} else {
			fmt.Fprintf(d.out, "deleted the demo's internet, namespace %s\n", d.inet.namespace)
		}
	}
	if err != nil {
		return err
	}
	remaining, err := enforcens.NamespacesWithPrefix(d.netnsPrefix)
	if err != nil {
		return err
	}
	if len(remaining) > 0 {
		return fmt.Errorf("namespaces with the demo's prefix %q are left in %s after isolationd cleanup: %s", d.netnsPrefix, runDir, strings.Join(remaining, ", "))
	}
	if d.dataDir == "" {
		return nil
	}
	if err := d.checkNoMounts(); err != nil {
		return fmt.Errorf("after isolationd cleanup: %w", err)
	}
	what := "isolationd had left none"
	if len(removed) > 0 {
		what = "isolationd cleanup removed " + strings.Join(removed, ", ")
	}
	fmt.Fprintf(d.out, "no namespace named %s* is left in %s, nor a mount under the data directory (%s)\n", d.netnsPrefix, runDir, what)
	return nil
}

// isolationdCleanup runs `isolationd cleanup` for the demo's prefix, when
// isolationd started, and returns the namespaces it removed.
func (d *demo) isolationdCleanup(ctx context.Context) ([]string, error) {
	if d.dataDir == "" {
		return nil, nil // isolationd never started: it made nothing
	}
	before, err := enforcens.NamespacesWithPrefix(d.netnsPrefix)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(d.binDir, devrun.ServerBinary), "cleanup", "--data-dir", d.dataDir, "--netns-prefix", d.netnsPrefix)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	fmt.Fprintf(d.out, "$ isolationd cleanup --data-dir %s --netns-prefix %s\n", d.dataDir, d.netnsPrefix)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("isolationd cleanup: %w", err)
	}
	var removed []string
	for _, ns := range before {
		if d.inet == nil || ns != d.inet.namespace {
			removed = append(removed, ns)
		}
	}
	return removed, nil
}
