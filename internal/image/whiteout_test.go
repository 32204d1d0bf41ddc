package image_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
)

// A layer's whiteouts hide, through overlayfs, what the layers below it
// hold: a .wh.NAME entry becomes a whiteout device (0/0), and a
// .wh..wh..opq entry makes its directory opaque.
func TestImport_WhiteoutsHideLowerFilesInAnOverlay(t *testing.T) {
	s, _ := openStore(t, image.Options{})
	img := imagetest.Scratch(t, imagetest.Options{Layers: [][]imagetest.File{
		{
			imagetest.Dir("etc", 0), {Path: "etc/removed", Data: []byte("gone")}, {Path: "etc/kept", Data: []byte("kept")},
			imagetest.Dir("var", 0), imagetest.Dir("var/cache", 0), {Path: "var/cache/old", Data: []byte("old")},
		},
		{
			{Path: "etc/.wh.removed"},
			imagetest.Dir("var/cache", 0), {Path: "var/cache/.wh..wh..opq"}, {Path: "var/cache/new", Data: []byte("new")},
			{Path: ".wh..wh.plnk"}, // AUFS bookkeeping: ignored
		},
	}})
	must[image.Image](t)(importFile(t, s, "whiteouts", imagetest.WriteOCITar(t, img)))
	res := must[image.Resolved](t)(s.Resolve(context.Background(), "whiteouts"))
	upper := res.Layers[1]

	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "etc/removed"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/removed in the upper layer: mode %o rdev %d (%v), want a 0/0 character device", st.Mode, st.Rdev, err)
	}
	for _, p := range []string{"etc/.wh.removed", "var/cache/.wh..wh..opq", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(upper, p)); err == nil {
			t.Errorf("%s was unpacked as a file", p)
		}
	}
	attr := opaqueAttr(t)
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(upper, "var/cache"), attr, buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("var/cache's %s: %q %v, want y", attr, buf[:n], err)
	}

	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay needs root")
	}
	mnt := t.TempDir()
	// Lower layers alone make a read-only overlay; the top one comes first.
	opts := "lowerdir=" + res.Layers[1] + ":" + res.Layers[0]
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	if _, err := os.Lstat(filepath.Join(mnt, "etc/removed")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("etc/removed through the overlay: %v, want it hidden", err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "etc/kept")); err != nil || string(b) != "kept" {
		t.Errorf("etc/kept through the overlay: %q %v", b, err)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "var/cache"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"new"}) {
		t.Errorf("var/cache through the overlay holds %v, want only the upper layer's new", names)
	}
}

// opaqueAttr is the xattr the store marks opaque directories with: the
// trusted one as root, the user one an unprivileged overlay reads.
func opaqueAttr(t *testing.T) string {
	if os.Geteuid() == 0 {
		return "trusted.overlay.opaque"
	}
	return "user.overlay.opaque"
}
