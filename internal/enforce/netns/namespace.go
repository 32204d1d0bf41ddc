package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Named network namespaces, made the way iproute2 makes them, so that
// `ip netns list` and `ip netns exec` see ours: a file under /run/netns
// with the namespace bind-mounted on it.

const runDir = "/run/netns"

var (
	runDirOnce sync.Once
	runDirErr  error
)

// prepareRunDir makes /run/netns a shared mount point, as `ip netns add`
// does, so namespace mounts propagate into mount namespaces made later
// (`ip netns exec`, containers).
func prepareRunDir() error {
	runDirOnce.Do(func() {
		if err := os.MkdirAll(runDir, 0o755); err != nil { //nolint:gosec // G301: the mode ip netns gives /run/netns, which other tools list
			runDirErr = err
			return
		}
		err := unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if errors.Is(err, unix.EINVAL) { // not a mount point yet
			if err = unix.Mount(runDir, runDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
				err = unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
			}
		}
		if err != nil {
			runDirErr = fmt.Errorf("make %s a shared mount: %w", runDir, err)
		}
	})
	return runDirErr
}

// createNamed makes a new network namespace called name.
func createNamed(name string) error {
	if err := prepareRunDir(); err != nil {
		return err
	}
	path := filepath.Join(runDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	f.Close()
	err = OnLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		return unix.Mount(self, path, "none", unix.MS_BIND, "")
	})
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// OnLockedThread runs fn on an OS thread of its own and puts the thread
// back in its original network namespace afterwards. fn may change the
// thread's namespace; other goroutines never run on it meanwhile. If the
// thread cannot go back, it is left locked, and Go ends it with the
// goroutine rather than reuse it. It is exported so that netnstest
// enters namespaces the same way the driver does.
func OnLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// inNamespace runs fn with the calling thread in namespace h.
func inNamespace(h netns.NsHandle, fn func() error) error {
	return OnLockedThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter namespace: %w", err)
		}
		return fn()
	})
}

// openNamed opens the namespace called name. A file that is not a
// namespace (left by a crash between creating and mounting it) reads as
// missing.
func openNamed(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		return h, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(h), &st); err != nil {
		h.Close()
		return netns.None(), err
	}
	if st.Type != unix.NSFS_MAGIC {
		h.Close()
		return netns.None(), fmt.Errorf("%s/%s is not a namespace: %w", runDir, name, os.ErrNotExist)
	}
	return h, nil
}

// deleteNamed unmounts and removes the namespace called name; the kernel
// frees it once nothing else holds it. A missing one is not an error.
func deleteNamed(name string) error {
	path := filepath.Join(runDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace %s: %w", name, err)
	}
	return nil
}

// NamespacesWithPrefix lists the named network namespaces (under
// /run/netns) whose names start with prefix.
func NamespacesWithPrefix(prefix string) ([]string, error) {
	return listNamed(func(name string) bool { return strings.HasPrefix(name, prefix) })
}

// listNamed returns the names under /run/netns that match.
func listNamed(match func(string) bool) ([]string, error) {
	entries, err := os.ReadDir(runDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if match(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// writeSysctl sets a /proc/sys/net value inside namespace h: the files
// under /proc/sys/net belong to the namespace of the thread that opens them.
func writeSysctl(h netns.NsHandle, key, value string) error {
	return inNamespace(h, func() error {
		path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		// The file exists: a mode would apply only to a file created.
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("sysctl %s: %w", key, err)
		}
		return nil
	})
}
