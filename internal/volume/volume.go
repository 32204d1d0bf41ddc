// Package volume gives an environment a disk of its own: an ext4
// filesystem in a sparse file, attached to a loop device and mounted at a
// directory, so that a process writing past the disk's size gets ENOSPC
// and no neighbour notices. The loop device is attached with
// LO_FLAGS_AUTOCLEAR: the kernel releases it when the filesystem is
// unmounted (or when an attach fails half-way and its file descriptor
// closes), so no loop device outlives its mount, even after a crash.
//
// It imports only the standard library and golang.org/x/sys; it runs
// e2fsprogs (mkfs.ext4, e2fsck, resize2fs) and needs root (CAP_SYS_ADMIN).
// The workload runtime (internal/workload/runc) is its user.
package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Errors of resizing.
var (
	// ErrNoFit: the data on the volume does not fit the smaller size
	// Resize was given; the volume is left as it was.
	ErrNoFit = errors.New("the data on the volume does not fit the new size")
	// ErrOffline: the kernel refused Grow's online resize (it needs
	// CAP_SYS_RESOURCE); Resize grows the volume unmounted.
	ErrOffline = errors.New("the kernel refused to grow the mounted filesystem (it needs CAP_SYS_RESOURCE); it can grow unmounted")
)

// Volume is one disk: its image file, and the directory it is mounted at.
// Its methods are idempotent; callers serialize work on one volume.
type Volume struct {
	File string
	Dir  string
}

// mountFlags keep device nodes and set-user-id files written into a
// volume from meaning anything on the host, where the volume is mounted.
const mountFlags = unix.MS_NOSUID | unix.MS_NODEV

// mountData: the kernel would otherwise zero the inode tables that mkfs
// left uninitialised in the background, allocating host disk for blocks
// of a sparse file that already read as zeros.
const mountData = "noinit_itable"

// Create makes the volume with size bytes and mounts it. A volume already
// mounted is adopted as it is (Grow changes its size); an image file that
// exists is mounted without being formatted again.
func (v Volume) Create(ctx context.Context, size int64) error {
	if m, err := v.mount(); err != nil || m != nil {
		return err
	}
	if _, err := os.Stat(v.File); errors.Is(err, os.ErrNotExist) {
		if err := v.format(ctx, size); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	return v.Mount()
}

// format writes a new filesystem into a temporary file and renames it into
// place, so that a crash half-way leaves no image that looks complete.
func (v Volume) format(ctx context.Context, size int64) error {
	if err := os.MkdirAll(filepath.Dir(v.File), 0o700); err != nil {
		return err
	}
	tmp := v.File + ".new"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// -m 0: no blocks reserved for root, the whole size is the
		// environment's; lazy init: the sparse file's holes already read
		// as zeros. The journal stays, for crash safety.
		err = run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", tmp)
	}
	if err == nil {
		err = os.Rename(tmp, v.File)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("volume %s: format: %w", v.File, err)
	}
	return nil
}

// Mount attaches the image file to a free loop device and mounts it at
// Dir; a volume already mounted is left as it is.
func (v Volume) Mount() error {
	if m, err := v.mount(); err != nil || m != nil {
		return err
	}
	if err := os.MkdirAll(v.Dir, 0o700); err != nil {
		return err
	}
	dev, err := attach(v.File)
	if err != nil {
		return fmt.Errorf("volume %s: %w", v.File, err)
	}
	// Closing the device after the mount, or after a failed one, leaves
	// the mount as the device's only user: unmounting releases it.
	defer dev.Close()
	if err := unix.Mount(dev.Name(), v.Dir, "ext4", mountFlags, mountData); err != nil {
		return fmt.Errorf("volume %s: mount %s at %s: %w", v.File, dev.Name(), v.Dir, err)
	}
	return nil
}

// Mounted reports whether the volume is mounted at Dir.
func (v Volume) Mounted() (bool, error) {
	m, err := v.mount()
	return m != nil, err
}

// mount is the volume's mount at Dir, nil when there is none. Another
// filesystem mounted at Dir is an error: the volume is never mounted over it.
func (v Volume) mount() (*Mount, error) {
	ms, err := Mounts(v.Dir)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Point != v.Dir {
			continue
		}
		file, err := LoopBackingFile(m.Source)
		if err != nil || file != v.File {
			return nil, fmt.Errorf("volume %s: %s is mounted at %s, not this volume", v.File, m.Source, v.Dir)
		}
		return &m, nil
	}
	return nil, nil
}

// Size is the size of the volume's filesystem in bytes, as its superblock
// says: it lags the image file's size when a grow was interrupted.
func (v Volume) Size() (int64, error) {
	src := v.File
	if m, err := v.mount(); err != nil {
		return 0, err
	} else if m != nil {
		// The mounted filesystem's superblock lives in the device's page
		// cache, which the file's own cache does not see.
		src = m.Source
	}
	return superblockSize(src)
}

// Used is the number of bytes the volume's files take, for telling
// whether a smaller size could hold them; the volume must be mounted.
func (v Volume) Used() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(v.Dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil //nolint:gosec // G115: the blocks of a real file system are far below 2^63
}

// Grow makes the mounted volume size bytes large, online: the file grows
// (sparse), the loop device learns its new capacity and resize2fs grows
// the filesystem into it. A volume already as large is left alone; one
// whose previous grow was interrupted is finished.
func (v Volume) Grow(ctx context.Context, size int64) error {
	m, err := v.mount()
	if err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("volume %s: grow: not mounted at %s", v.File, v.Dir)
	}
	st, err := os.Stat(v.File)
	if err != nil {
		return err
	}
	if st.Size() < size {
		if err := os.Truncate(v.File, size); err != nil {
			return fmt.Errorf("volume %s: grow: %w", v.File, err)
		}
	}
	if fs, err := superblockSize(m.Source); err != nil || fs >= max(size, st.Size()) {
		return err
	}
	dev, err := os.OpenFile(m.Source, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("volume %s: grow: LOOP_SET_CAPACITY on %s: %w", v.File, m.Source, err)
	}
	if out, err := output(ctx, "resize2fs", m.Source); err != nil {
		// EXT4_IOC_RESIZE_FS needs CAP_SYS_RESOURCE, which some
		// sandboxes withhold even from root.
		if bytes.Contains(out, []byte("Permission denied to resize")) {
			return fmt.Errorf("volume %s: grow: %w: %w", v.File, ErrOffline, err)
		}
		return fmt.Errorf("volume %s: grow: %w", v.File, err)
	}
	return nil
}

// Resize makes the volume size bytes large, offline: it is unmounted,
// checked, resized and mounted again, so nothing may hold it open. It
// shrinks a volume (ErrNoFit when its data does not fit size), and grows
// one where the kernel refuses to grow it mounted (ErrOffline). The volume
// is mounted again whatever happens.
func (v Volume) Resize(ctx context.Context, size int64) (err error) {
	if err := v.Unmount(); err != nil {
		return err
	}
	defer func() {
		if merr := v.Mount(); err == nil {
			err = merr
		}
	}()
	// -p repairs what is safe to repair without asking; exit codes 1 and
	// 2 say it did, 4 and above that it could not.
	if err := run(ctx, "e2fsck", "-f", "-p", v.File); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() >= 4 {
			return fmt.Errorf("volume %s: resize: %w", v.File, err)
		}
	}
	least, err := minimumSize(ctx, v.File)
	if err != nil {
		return fmt.Errorf("volume %s: resize: %w", v.File, err)
	}
	if least > size {
		return fmt.Errorf("volume %s: %w: it needs at least %d MiB", v.File, ErrNoFit, (least+(1<<20)-1)>>20)
	}
	// The file is as large as the larger of the two sizes while
	// resize2fs runs.
	st, err := os.Stat(v.File)
	if err != nil {
		return err
	}
	if size > st.Size() {
		err = os.Truncate(v.File, size)
	}
	if err == nil {
		err = run(ctx, "resize2fs", v.File, strconv.FormatInt(size>>10, 10)+"K")
	}
	if err == nil && size < st.Size() {
		err = os.Truncate(v.File, size)
	}
	if err != nil {
		return fmt.Errorf("volume %s: resize: %w", v.File, err)
	}
	return nil
}

// Unmount unmounts the volume, which releases its loop device. A volume
// that is not mounted is not an error.
func (v Volume) Unmount() error {
	for {
		m, err := v.mount()
		if err != nil || m == nil {
			return err
		}
		if err := unix.Unmount(v.Dir, 0); err != nil {
			return fmt.Errorf("volume %s: unmount %s: %w", v.File, v.Dir, err)
		}
	}
}

// Remove unmounts the volume and deletes its image file and mount point.
func (v Volume) Remove() error {
	if err := v.Unmount(); err != nil {
		return err
	}
	if err := v.released(); err != nil {
		return err
	}
	for _, p := range []string{v.File, v.File + ".new"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// The mount point is empty once unmounted, unless something wrote
	// into it while it was not mounted.
	if err := os.Remove(v.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		if ms, merr := Mounts(v.Dir); merr != nil || len(ms) > 0 {
			return fmt.Errorf("volume %s: %s still holds mounts", v.File, v.Dir)
		}
		return os.RemoveAll(v.Dir)
	}
	return nil
}

// released waits until no loop device is backed by the volume's file:
// unmounting releases an autoclear device, but the kernel may finish
// that after umount returns. A device still bound once the mount is gone
// (one attached by a crashed isolationd) is detached.
func (v Volume) released() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		loops, err := LoopDevices(v.File)
		if err != nil || len(loops) == 0 {
			return err
		}
		var derr error
		for _, l := range loops {
			// A device the kernel is releasing refuses this (busy): the
			// next look finds it gone.
			derr = errors.Join(derr, Detach(l.Device))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("volume %s: loop devices %v still attached 5s after it was unmounted: %v", v.File, loops, derr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// superblockSize reads the filesystem's size in bytes from its superblock.
func superblockSize(path string) (int64, error) {
	blocks, blockSize, err := superblock(path)
	return blocks * blockSize, err
}

// superblock reads the filesystem's block count and block size from its
// ext4 superblock.
func superblock(path string) (blocks, blockSize int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	// The superblock sits 1024 bytes in; the fields are little endian.
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, fmt.Errorf("read the superblock of %s: %w", path, err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return 0, 0, fmt.Errorf("%s holds no ext4 filesystem", path)
	}
	count := uint64(binary.LittleEndian.Uint32(sb[0x4:]))
	const incompat64bit = 0x80
	if binary.LittleEndian.Uint32(sb[0x60:])&incompat64bit != 0 {
		count |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	return int64(count), 1024 << binary.LittleEndian.Uint32(sb[0x18:]), nil //nolint:gosec // G115: as Used
}

// minimumSize asks resize2fs for the smallest size in bytes the
// filesystem in file can take.
func minimumSize(ctx context.Context, file string) (int64, error) {
	out, err := output(ctx, "resize2fs", "-P", file)
	if err != nil {
		return 0, err
	}
	_, after, ok := strings.Cut(string(out), "Estimated minimum size of the filesystem:")
	blocks, perr := strconv.ParseInt(strings.TrimSpace(after), 10, 64)
	if !ok || perr != nil {
		return 0, fmt.Errorf("resize2fs -P printed %q", out)
	}
	_, blockSize, err := superblock(file)
	return blocks * blockSize, err
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

// output runs one of e2fsprogs' tools, with what it printed in its error.
func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s is needed for environment disks (Debian: apt-get install e2fsprogs): %w", name, err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}
