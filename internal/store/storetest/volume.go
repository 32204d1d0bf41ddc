package storetest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// SmallVolume mounts a tmpfs of size bytes on a fresh directory and
// unmounts it when the test ends: a data volume a test can fill. It needs
// root (CAP_SYS_ADMIN), as the suite runs.
func SmallVolume(t testing.TB, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "volume")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+strconv.FormatInt(size, 10)+",mode=0700"); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s (the test needs root): %v", size, dir, err)
	}
	t.Cleanup(func() {
		// Lazily: a server the test failed to stop must not leave the mount behind.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes zeros to a file in dir until the volume is full, and returns
// the file's path: removing it frees the space.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for len(buf) > 0 {
		// Bounded: each write either fills the volume a little more or
		// fails; a smaller buffer takes the last bytes.
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			buf = buf[:len(buf)/2]
		}
	}
	return path
}

// Free is how many bytes the volume at dir has left.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
