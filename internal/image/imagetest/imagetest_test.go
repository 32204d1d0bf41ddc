package imagetest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
)

// A busybox image, imported and mounted as overlayfs lower layers, runs
// its shell and the caller's files, as a runtime would run them.
func TestBusybox_RunsFromItsUnpackedLayers(t *testing.T) {
	imagetest.SkipWithoutBusybox(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay and chroot need root")
	}
	s, err := image.Open(filepath.Join(t.TempDir(), "images"), image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	img := imagetest.Busybox(t, imagetest.Options{
		Files: []imagetest.File{{Path: "usr/local/bin/greet", Data: []byte("#!/bin/sh\necho \"hello from $(id -un)\"\n"), Mode: 0o755}},
		Cmd:   []string{"greet"}, User: "app",
	})
	res := imagetest.Import(t, s, "busybox-test", img)
	if res.User != "app" || len(res.Cmd) != 1 {
		t.Fatalf("resolved %+v", res)
	}
	mnt := t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+res.Layers[1]+":"+res.Layers[0]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	out, err := exec.Command("chroot", "--userspec=1000:1000", mnt, "/bin/sh", "-c", "PATH=/usr/local/bin:/bin greet").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from app" {
		t.Fatalf("greet in the image: %q %v", out, err)
	}
}
