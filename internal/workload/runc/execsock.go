package runc

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// execFD is the exec socket's descriptor in the init: the first that
// runc's --preserve-fds passes, after stdio.
const execFD = 3

// listenExec makes the container's exec socket at path, listening, for
// its init: the host's root alone may connect (mode 0600), and it is
// never mounted into the container.
func listenExec(path string) (*os.File, error) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	err = shortPath(path, func(addr string) error {
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
			return err
		}
		// Before listen, nobody can connect: the umask's mode does not matter.
		if err := os.Chmod(addr, 0o600); err != nil {
			return err
		}
		return unix.Listen(fd, 128)
	})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("the exec socket %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// shortPath calls fn with a path to the file at path short enough for a
// unix socket's address (107 bytes), which a data directory may not be:
// through the directory's descriptor.
func shortPath(path string, fn func(addr string) error) error {
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	defer unix.Close(dir)
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", dir, filepath.Base(path)))
}
