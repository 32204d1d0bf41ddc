package runc

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the host mounts its cgroup hierarchies: one per
// controller (v1, with the systemd layout's names) or a single unified
// one (v2).
const cgroupRoot = "/sys/fs/cgroup"

// cgroups knows the host's cgroup layout. runc creates and removes a
// container's cgroups; the runtime reads a few of their files and removes
// what a crash left. The paths that differ between v1 and v2 are here.
type cgroups struct{ v2 bool }

func detectCgroups() (cgroups, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return cgroups{}, err
	}
	return cgroups{v2: st.Type == unix.CGROUP2_SUPER_MAGIC}, nil
}

// dir is the directory of cgroup path (as in the spec's cgroupsPath) in
// the hierarchy of controller (ignored on v2).
func (c cgroups) dir(controller, path string) string {
	if c.v2 {
		return filepath.Join(cgroupRoot, path)
	}
	return filepath.Join(cgroupRoot, controller, path)
}

// oomKills is how many processes of cgroup path the kernel's OOM killer
// has killed: oom_kill in v1's memory.oom_control and in v2's memory.events.
func (c cgroups) oomKills(path string) (int, error) {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	return readKeyed(filepath.Join(c.dir("memory", path), file), "oom_kill")
}

// readKeyed reads the value of key from a cgroup file of "key value" lines.
func readKeyed(file, key string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+" "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New(file + " has no " + key)
}

// remove removes the directories of cgroup path in every hierarchy,
// deepest first: what runc delete leaves when a container was killed
// half-way through its creation. A cgroup with processes stays (EBUSY).
func (c cgroups) remove(path string) error {
	// On v1 every hierarchy has the path (the unified one of a hybrid
	// layout and systemd's named one included); v2 has one.
	dirs := []string{filepath.Join(cgroupRoot, path)}
	if !c.v2 {
		var err error
		if dirs, err = filepath.Glob(filepath.Join(cgroupRoot, "*", path)); err != nil {
			return err
		}
	}
	var errs []error
	for _, d := range dirs {
		var sub []string
		err := filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, p)
			}
			if errors.Is(err, os.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		})
		if err != nil {
			errs = append(errs, err)
		}
		slices.Reverse(sub)
		for _, s := range sub {
			if err := unix.Rmdir(s); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, &os.PathError{Op: "rmdir", Path: s, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}
