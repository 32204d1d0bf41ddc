package volume_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/volume"
)

const mib = 1 << 20

// requireLoop skips a test that needs root, loop devices and e2fsprogs,
// saying which is missing.
func requireLoop(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("volumes need root (loop devices and mounts); run the tests as root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices here: %v", err)
	}
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "resize2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (Debian: apt-get install e2fsprogs)", tool)
		}
	}
}

// newVolume creates a 32 MiB volume under root, removed when the test
// ends, after which nothing of it may be left: no mount and no loop device.
func newVolume(t *testing.T, root, name string) volume.Volume {
	t.Helper()
	requireLoop(t)
	v := volume.Volume{File: filepath.Join(root, name+".img"), Dir: filepath.Join(root, name)}
	t.Cleanup(func() {
		if err := v.Remove(); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
		assertNothingLeft(t, v.Dir, v.File)
	})
	if err := v.Create(context.Background(), 32*mib); err != nil {
		t.Fatal(err)
	}
	return v
}

// assertNothingLeft checks that no mount is left at or under dir and no
// loop device is backed by a file at or under file.
func assertNothingLeft(t *testing.T, dir, file string) {
	t.Helper()
	if ms, err := volume.Mounts(dir); err != nil || len(ms) > 0 {
		t.Errorf("mounts left under %s: %v %v", dir, ms, err)
	}
	if ls, err := volume.LoopDevices(file); err != nil || len(ls) > 0 {
		t.Errorf("loop devices left backed by %s: %v %v", file, ls, err)
	}
}

// fill writes to path until the disk is full and returns how much it
// wrote and the error that stopped it.
func fill(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xa5}, mib)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			return n, err
		}
	}
}

func TestVolume_WritingPastItsSizeGetsENOSPCAndANeighbourWritesOn(t *testing.T) {
	root := t.TempDir()
	a, b := newVolume(t, root, "a"), newVolume(t, root, "b")
	n, err := fill(filepath.Join(a.Dir, "big"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing %d bytes into a 32 MiB volume stopped with %v, want ENOSPC", n, err)
	}
	if n > 32*mib {
		t.Errorf("wrote %d MiB into a 32 MiB volume", n/mib)
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "small"), bytes.Repeat([]byte{1}, 4*mib), 0o600); err != nil {
		t.Fatalf("the neighbour could not write: %v", err)
	}
}

func TestVolume_CreateAdoptsAMountedVolumeAndRemountsAnUnmountedOne(t *testing.T) {
	ctx := context.Background()
	v := newVolume(t, t.TempDir(), "v")
	if err := os.WriteFile(filepath.Join(v.Dir, "kept"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Create(ctx, 32*mib); err != nil {
		t.Fatalf("create again: %v", err)
	}
	if ms, _ := volume.Mounts(v.Dir); len(ms) != 1 {
		t.Fatalf("mounts at %s after a second create: %v, want one", v.Dir, ms)
	}
	if err := v.Unmount(); err != nil {
		t.Fatal(err)
	}
	if ls, _ := volume.LoopDevices(filepath.Dir(v.File)); len(ls) != 0 {
		t.Fatalf("unmounting left loop devices attached: %v", ls)
	}
	if err := v.Create(ctx, 32*mib); err != nil {
		t.Fatalf("create over the unmounted image: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(v.Dir, "kept")); err != nil || string(b) != "data" {
		t.Fatalf("the remounted volume holds %q, %v; want the data written before", b, err)
	}
}

// assertTakes fills the volume and checks that it took more than least
// bytes and at most its size before ENOSPC, then empties it again.
func assertTakes(t *testing.T, v volume.Volume, least, size int64) {
	t.Helper()
	path := filepath.Join(v.Dir, "big")
	n, err := fill(path)
	if !errors.Is(err, syscall.ENOSPC) || n <= least || n > size {
		t.Fatalf("the volume took %d MiB before %v; want more than %d MiB, at most %d, then ENOSPC", n/mib, err, least/mib, size/mib)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func TestVolume_GrowsOnline(t *testing.T) {
	ctx := context.Background()
	v := newVolume(t, t.TempDir(), "v")
	// An open file on the volume proves the grow needed no unmount.
	f, err := os.Create(filepath.Join(v.Dir, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = v.Grow(ctx, 64*mib)
	if errors.Is(err, volume.ErrOffline) {
		t.Skipf("the kernel refuses online resizing here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if size, err := v.Size(); err != nil || size != 64*mib {
		t.Fatalf("size after growing to 64 MiB: %d, %v", size, err)
	}
	assertTakes(t, v, 32*mib, 64*mib)
	if err := v.Grow(ctx, 64*mib); err != nil {
		t.Fatalf("growing to the same size again: %v", err)
	}
}

func TestVolume_ResizesOfflineGrowingAndShrinkingWhenTheDataFits(t *testing.T) {
	ctx := context.Background()
	v := newVolume(t, t.TempDir(), "v")
	if err := os.WriteFile(filepath.Join(v.Dir, "kept"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Resize(ctx, 64*mib); err != nil {
		t.Fatal(err)
	}
	if size, err := v.Size(); err != nil || size != 64*mib {
		t.Fatalf("size after growing to 64 MiB: %d, %v", size, err)
	}
	assertTakes(t, v, 32*mib, 64*mib)

	// Holding 40 MiB, it cannot shrink to 32; holding less, it can.
	big := filepath.Join(v.Dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte{1}, 40*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Resize(ctx, 32*mib); !errors.Is(err, volume.ErrNoFit) {
		t.Fatalf("shrinking a volume holding 40 MiB to 32 MiB: %v, want ErrNoFit", err)
	}
	if mounted, err := v.Mounted(); err != nil || !mounted {
		t.Fatalf("a refused shrink left the volume unmounted (%v)", err)
	}
	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	if err := v.Resize(ctx, 32*mib); err != nil {
		t.Fatal(err)
	}
	if size, err := v.Size(); err != nil || size != 32*mib {
		t.Fatalf("size after shrinking to 32 MiB: %d, %v", size, err)
	}
	if st, err := os.Stat(v.File); err != nil || st.Size() != 32*mib {
		t.Fatalf("the image file after shrinking: %v, %v", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(v.Dir, "kept")); err != nil || string(b) != "data" {
		t.Fatalf("the resized volume holds %q, %v; want the data written before", b, err)
	}
	assertTakes(t, v, 16*mib, 32*mib)
}

func TestVolume_RemoveLeavesNoMountNoLoopDeviceAndNoFile(t *testing.T) {
	requireLoop(t)
	ctx := context.Background()
	root := t.TempDir()
	v := volume.Volume{File: filepath.Join(root, "v.img"), Dir: filepath.Join(root, "v")}
	if err := v.Create(ctx, 32*mib); err != nil {
		t.Fatal(err)
	}
	if ls, _ := volume.LoopDevices(root); len(ls) != 1 || ls[0].File != v.File {
		t.Fatalf("loop devices after create: %v, want one backed by %s", ls, v.File)
	}
	if err := v.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := v.Remove(); err != nil {
		t.Fatalf("removing a removed volume: %v", err)
	}
	assertNothingLeft(t, root, root)
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("files left under %s: %v", root, entries)
	}
}
