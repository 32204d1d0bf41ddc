package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// attachAttempts bounds the retries of a race for a free loop device with
// another process (losetup, another volume) that took the same one.
const attachAttempts = 16

// attach binds file to a free loop device with LO_FLAGS_AUTOCLEAR and
// returns the open device: the kernel detaches it once the last user (the
// returned file, then the mount) lets go.
func attach(file string) (*os.File, error) {
	backing, err := os.OpenFile(file, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the loop device control: %w", err)
	}
	defer ctl.Close()
	for range attachAttempts {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())} //nolint:gosec // G115: a file descriptor fits a uint32
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], file)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("LOOP_CONFIGURE %s on %s: %w", file, dev.Name(), err)
		}
	}
	return nil, fmt.Errorf("no free loop device after %d attempts", attachAttempts)
}

// Loop is an attached loop device and the file behind it.
type Loop struct {
	Device string // /dev/loopN
	File   string
}

// LoopDevices lists the loop devices backed by a file at or under dir:
// for cleanup, and for tests proving that none is left behind.
func LoopDevices(dir string) ([]Loop, error) {
	paths, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, err
	}
	var out []Loop
	for _, p := range paths {
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p)))
		file, err := LoopBackingFile(dev)
		if err != nil {
			continue // detached since the glob
		}
		if within(file, dir) {
			out = append(out, Loop{Device: dev, File: file})
		}
	}
	return out, nil
}

// LoopBackingFile is the file behind the loop device dev (/dev/loopN).
func LoopBackingFile(dev string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return "", fmt.Errorf("%s is not an attached loop device: %w", dev, err)
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)"), nil
}

// Detach detaches a loop device that nothing has mounted, such as one
// attached without LO_FLAGS_AUTOCLEAR by another tool; a mounted device is
// detached by the kernel once unmounted.
func Detach(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("LOOP_CLR_FD %s: %w", dev, err)
	}
	return nil
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	dir = filepath.Clean(dir)
	// The root's children start with "/" alone, not "//".
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}
