package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
)

func openStore(t *testing.T, opts image.Options) (*image.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "images")
	s, err := image.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func importFile(t *testing.T, s *image.Store, name, path string) (image.Image, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return s.Import(context.Background(), name, f)
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// entries lists what a directory of the store holds.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// appImage is busybox with a file, a config and a second layer.
func appImage(t *testing.T, motd string) v1.Image {
	return imagetest.Busybox(t, imagetest.Options{
		Files:      []imagetest.File{{Path: "etc/motd", Data: []byte(motd)}, {Path: "usr/local/bin/hello", Data: []byte("#!/bin/sh\necho hello\n"), Mode: 0o755}},
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hi"},
		Env: []string{"GREETING=hi"}, WorkingDir: "/home/app", User: "app",
	})
}

func TestImport_EachFormatGivesTheSameRunnableImage(t *testing.T) {
	img := appImage(t, "welcome\n")
	digest := must[v1.Hash](t)(img.Digest()).String()
	formats := []struct {
		name string
		do   func(s *image.Store) (image.Image, error)
		// digest is the image's digest when the store keeps the
		// manifest as it came ("" for docker archives, whose manifest
		// the store writes).
		digest string
	}{
		{"oci tar", func(s *image.Store) (image.Image, error) {
			return importFile(t, s, "team/app:1", imagetest.WriteOCITar(t, img))
		}, digest},
		{"docker tar", func(s *image.Store) (image.Image, error) {
			return importFile(t, s, "team/app:1", imagetest.WriteDockerTar(t, img))
		}, ""},
		{"layout dir", func(s *image.Store) (image.Image, error) {
			return s.ImportDir(context.Background(), "team/app:1", imagetest.WriteLayout(t, img))
		}, digest},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			s, dir := openStore(t, image.Options{})
			rec, err := f.do(s)
			if err != nil {
				t.Fatal(err)
			}
			if f.digest != "" && rec.Digest != f.digest {
				t.Errorf("digest %s, want the image's %s", rec.Digest, f.digest)
			}
			if len(rec.Layers) != 2 || rec.Source != image.SourceImport || rec.Name != "team/app:1" {
				t.Errorf("record %+v", rec)
			}
			if got := must[image.Image](t)(s.Get("team/app:1")); got.Digest != rec.Digest {
				t.Errorf("Get %+v, want %+v", got, rec)
			}
			if l := s.List(); len(l) != 1 || l[0].Name != "team/app:1" {
				t.Errorf("List %+v", l)
			}
			res := must[image.Resolved](t)(s.Resolve(context.Background(), "team/app:1"))
			if res.Digest != rec.Digest || res.User != "app" || res.WorkingDir != "/home/app" ||
				!slices.Equal(res.Entrypoint, []string{"/bin/sh", "-c"}) || !slices.Equal(res.Cmd, []string{"echo hi"}) || !slices.Contains(res.Env, "GREETING=hi") {
				t.Errorf("resolved %+v", res)
			}
			if len(res.Layers) != 2 {
				t.Fatalf("layers %v", res.Layers)
			}
			if b, err := os.ReadFile(filepath.Join(res.Layers[1], "etc/motd")); err != nil || string(b) != "welcome\n" {
				t.Errorf("etc/motd in the top layer: %q %v", b, err)
			}
			st, err := os.Stat(filepath.Join(res.Layers[0], "bin/busybox"))
			if err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("bin/busybox in the bottom layer: %v %v", st, err)
			}
			if target, err := os.Readlink(filepath.Join(res.Layers[0], "bin/sh")); err != nil || target != "busybox" {
				t.Errorf("bin/sh -> %q %v", target, err)
			}
			if st, err := os.Stat(filepath.Join(res.Layers[0], "tmp")); err != nil || st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
				t.Errorf("tmp: %v %v, want 1777", st.Mode(), err)
			}
			if st, err := os.Stat(res.Layers[1]); err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("the top layer's root: %v %v, want 0755 (as / is)", st.Mode(), err)
			}
			if left := entries(t, filepath.Join(dir, "tmp")); len(left) != 0 {
				t.Errorf("tmp/ holds %v after the import", left)
			}
			// A restart finds the image by its record.
			again := must[*image.Store](t)(image.Open(dir, image.Options{}))
			if got := must[image.Resolved](t)(again.Resolve(context.Background(), "team/app:1")); !slices.Equal(got.Layers, res.Layers) {
				t.Errorf("after reopening: %v, want %v", got.Layers, res.Layers)
			}
		})
	}
}

func TestImport_OwnersAreShiftedForTheUserNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking with shifted owners needs root (chown)")
	}
	const shift = 200000
	s, _ := openStore(t, image.Options{UIDShift: shift, GIDShift: shift})
	img := imagetest.Busybox(t, imagetest.Options{Files: []imagetest.File{{Path: "srv/data", Data: []byte("x"), UID: 1000, GID: 1000, Mode: 0o4755}}})
	res := imagetest.Import(t, s, "shifted", img)
	for _, c := range []struct {
		path     string
		uid, gid uint32
	}{
		{filepath.Join(res.Layers[0], "bin/busybox"), shift, shift},
		{filepath.Join(res.Layers[0], "home/app"), shift + 1000, shift + 1000},
		{filepath.Join(res.Layers[1], "srv/data"), shift + 1000, shift + 1000},
		{filepath.Join(res.Layers[1], "srv"), shift, shift}, // made for the entry below it
	} {
		var st unix.Stat_t
		if err := unix.Lstat(c.path, &st); err != nil || st.Uid != c.uid || st.Gid != c.gid {
			t.Errorf("%s owned by %d:%d (%v), want %d:%d", c.path, st.Uid, st.Gid, err, c.uid, c.gid)
		}
	}
	// setuid survives the chown.
	if st, err := os.Stat(filepath.Join(res.Layers[1], "srv/data")); err != nil || st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("srv/data mode %v %v, want setuid", st.Mode(), err)
	}

	bad := imagetest.Busybox(t, imagetest.Options{Files: []imagetest.File{{Path: "x", UID: image.MappedIDs}}})
	if _, err := importFile(t, s, "unmapped", imagetest.WriteOCITar(t, bad)); !errors.Is(err, image.ErrInvalid) || !strings.Contains(err.Error(), "65536") {
		t.Errorf("a file owned by an id the namespace cannot map: %v, want ErrInvalid", err)
	}
}

func TestImport_DigestMismatchIsRefused(t *testing.T) {
	img := appImage(t, "x")
	layers := must[[]v1.Layer](t)(img.Layers())
	top := must[v1.Hash](t)(layers[1].Digest())

	t.Run("layer blob", func(t *testing.T) {
		s, dir := openStore(t, image.Options{})
		layout := imagetest.WriteLayout(t, img)
		blob := filepath.Join(layout, "blobs", "sha256", top.Hex)
		b := must[[]byte](t)(os.ReadFile(blob))
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(blob, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := s.ImportDir(context.Background(), "bad", layout)
		if !errors.Is(err, image.ErrInvalid) {
			t.Fatalf("import of a layout with a corrupted layer: %v, want ErrInvalid", err)
		}
		assertEmpty(t, s, dir)
	})
	t.Run("layer blob in a tar", func(t *testing.T) {
		s, dir := openStore(t, image.Options{})
		layout := imagetest.WriteLayout(t, img)
		blob := filepath.Join(layout, "blobs", "sha256", top.Hex)
		b := must[[]byte](t)(os.ReadFile(blob))
		if err := os.WriteFile(blob, append(b, 0), 0o644); err != nil { // one byte more
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := image.WriteLayoutTar(&buf, layout); err != nil {
			t.Fatal(err)
		}
		_, err := s.Import(context.Background(), "bad", &buf)
		if !errors.Is(err, image.ErrInvalid) {
			t.Fatalf("import of a tar with a corrupted layer: %v, want ErrInvalid", err)
		}
		assertEmpty(t, s, dir)
	})
	t.Run("diff_id", func(t *testing.T) {
		s, dir := openStore(t, image.Options{})
		cf := must[*v1.ConfigFile](t)(img.ConfigFile())
		cf = cf.DeepCopy()
		cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
		lying := must[v1.Image](t)(mutate.ConfigFile(img, cf))
		_, err := importFile(t, s, "bad", imagetest.WriteOCITar(t, lying))
		if !errors.Is(err, image.ErrInvalid) || !strings.Contains(err.Error(), "diff_id") {
			t.Fatalf("import of an image whose config lies about a layer: %v, want ErrInvalid naming the diff_id", err)
		}
		assertEmpty(t, s, dir)
	})
	t.Run("manifest", func(t *testing.T) {
		s, dir := openStore(t, image.Options{})
		layout := imagetest.WriteLayout(t, img)
		m := filepath.Join(layout, "blobs", "sha256", must[v1.Hash](t)(img.Digest()).Hex)
		b := must[[]byte](t)(os.ReadFile(m))
		if err := os.WriteFile(m, bytes.Replace(b, []byte(`"schemaVersion":2`), []byte(`"schemaVersion": 2`), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ImportDir(context.Background(), "bad", layout); !errors.Is(err, image.ErrInvalid) {
			t.Fatalf("import of a layout whose manifest changed: %v, want ErrInvalid", err)
		}
		assertEmpty(t, s, dir)
	})
}

// assertEmpty checks that the store holds nothing: no record, blob,
// layer or leftover.
func assertEmpty(t *testing.T, s *image.Store, dir string) {
	t.Helper()
	if l := s.List(); len(l) != 0 {
		t.Errorf("the store lists %v", l)
	}
	for _, d := range []string{"blobs/sha256", "layers/0", "refs", "tmp"} {
		if left := entries(t, filepath.Join(dir, d)); len(left) != 0 {
			t.Errorf("%s/ holds %v", d, left)
		}
	}
}

func TestImport_RefusesLayersThatReachOutsideOrHoldDevices(t *testing.T) {
	cases := map[string][]imagetest.File{
		"dot-dot":                    {{Path: "../escaped", Data: []byte("x")}},
		"dot-dot inside":             {imagetest.Dir("a", 0), {Path: "a/../../escaped", Data: []byte("x")}},
		"absolute":                   {{Path: "/etc/escaped", Data: []byte("x")}},
		"through a symlink":          {imagetest.Symlink("link", "/tmp"), {Path: "link/escaped", Data: []byte("x")}},
		"through a relative symlink": {imagetest.Symlink("up", ".."), {Path: "up/escaped", Data: []byte("x")}},
		"hard link out":              {{Path: "escaped", Type: tar.TypeLink, Link: "../../../etc/passwd"}},
		"hard link absolute":         {{Path: "escaped", Type: tar.TypeLink, Link: "/etc/passwd"}},
		"hard link via symlink":      {imagetest.Symlink("etc", "/etc"), {Path: "escaped", Type: tar.TypeLink, Link: "etc/passwd"}},
		"whiteout of ..":             {imagetest.Dir("a", 0), {Path: "a/.wh..."}},
		"char device":                {{Path: "dev/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3}},
		"block device":               {{Path: "dev/sda", Type: tar.TypeBlock, Mode: 0o660, Major: 8}},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			s, dir := openStore(t, image.Options{})
			img := imagetest.Scratch(t, imagetest.Options{Layers: [][]imagetest.File{files}})
			_, err := importFile(t, s, "evil", imagetest.WriteOCITar(t, img))
			if !errors.Is(err, image.ErrInvalid) {
				t.Fatalf("import: %v, want ErrInvalid", err)
			}
			for _, p := range []string{filepath.Join(dir, "..", "escaped"), filepath.Join(dir, "escaped"), "/etc/escaped", "/tmp/escaped", filepath.Join(dir, "layers", "escaped")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s exists", p)
				}
			}
			assertEmpty(t, s, dir)
		})
	}
}

func TestImport_SharedLayersAreUnpackedOnce(t *testing.T) {
	s, dir := openStore(t, image.Options{})
	a := must[image.Image](t)(importFile(t, s, "a", imagetest.WriteOCITar(t, appImage(t, "a"))))
	first := must[image.Resolved](t)(s.Resolve(context.Background(), "a"))
	marker := filepath.Join(first.Layers[0], ".unpacked-once")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b := must[image.Image](t)(importFile(t, s, "b", imagetest.WriteDockerTar(t, appImage(t, "b"))))
	second := must[image.Resolved](t)(s.Resolve(context.Background(), "b"))
	if a.Layers[0].DiffID != b.Layers[0].DiffID || first.Layers[0] != second.Layers[0] {
		t.Fatalf("the busybox layer: %s and %s, at %s and %s", a.Layers[0].DiffID, b.Layers[0].DiffID, first.Layers[0], second.Layers[0])
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the shared layer was unpacked again: %v", err)
	}
	if got := entries(t, filepath.Join(dir, "layers", "0")); len(got) != 3 {
		t.Errorf("layers/0 holds %v, want 3 layers (busybox, a's, b's)", got)
	}
}

func TestDelete_CollectsWhatNoOtherImageUses(t *testing.T) {
	s, dir := openStore(t, image.Options{})
	a := must[image.Image](t)(importFile(t, s, "a", imagetest.WriteOCITar(t, appImage(t, "a"))))
	b := must[image.Image](t)(importFile(t, s, "b", imagetest.WriteOCITar(t, appImage(t, "b"))))
	layers := filepath.Join(dir, "layers", "0")
	if err := s.Delete(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("a"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	want := []string{strings.TrimPrefix(b.Layers[0].DiffID, "sha256:"), strings.TrimPrefix(b.Layers[1].DiffID, "sha256:")}
	slices.Sort(want)
	if got := entries(t, layers); !slices.Equal(got, want) {
		t.Errorf("layers after deleting a: %v, want b's %v", got, want)
	}
	for _, digest := range []string{a.Digest, a.Config, a.Layers[1].Digest} {
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))); err == nil {
			t.Errorf("blob %s of a is still there", digest)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(b.Layers[0].Digest, "sha256:"))); err != nil {
		t.Errorf("the shared layer's blob went with a: %v", err)
	}
	must[image.Resolved](t)(s.Resolve(context.Background(), "b"))
	if err := s.Delete(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s, dir)
	if err := s.Delete(context.Background(), "b"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("deleting it again: %v, want ErrNotFound", err)
	}
}

func TestHook_ErrorUndoesTheChange(t *testing.T) {
	s, dir := openStore(t, image.Options{})
	first := must[image.Image](t)(importFile(t, s, "app", imagetest.WriteOCITar(t, appImage(t, "one"))))
	refused := errors.New("refused")
	var before, after *image.Image
	hook := image.WithHook(func(b, a *image.Image) error { before, after = b, a; return refused })
	f := must[*os.File](t)(os.Open(imagetest.WriteOCITar(t, appImage(t, "two"))))
	defer f.Close()
	if _, err := s.Import(context.Background(), "app", f, hook); !errors.Is(err, refused) {
		t.Fatalf("import with a refusing hook: %v", err)
	}
	if before == nil || before.Digest != first.Digest || after == nil || after.Digest == first.Digest {
		t.Errorf("the hook saw %+v -> %+v", before, after)
	}
	if got := must[image.Image](t)(s.Get("app")); got.Digest != first.Digest {
		t.Errorf("after the refused import: %s, want the first %s", got.Digest, first.Digest)
	}
	if err := s.Delete(context.Background(), "app", hook); !errors.Is(err, refused) {
		t.Fatalf("delete with a refusing hook: %v", err)
	}
	reopened := must[*image.Store](t)(image.Open(dir, image.Options{}))
	if got := must[image.Image](t)(reopened.Get("app")); got.Digest != first.Digest {
		t.Errorf("after a refused import and delete, the record on disk is %s, want %s", got.Digest, first.Digest)
	}
	if got := entries(t, filepath.Join(dir, "layers", "0")); len(got) != 2 {
		t.Errorf("layers/0 holds %v, want the first image's 2", got)
	}
}

func TestImport_ArchivesAndImagesPastTheBoundsAreRefused(t *testing.T) {
	img := appImage(t, "x")
	tarPath := imagetest.WriteOCITar(t, img)
	st := must[os.FileInfo](t)(os.Stat(tarPath))

	s, dir := openStore(t, image.Options{MaxArchiveBytes: st.Size() - 1})
	if _, err := importFile(t, s, "big", tarPath); !errors.Is(err, image.ErrTooLarge) {
		t.Errorf("an archive one byte past the bound: %v, want ErrTooLarge", err)
	}
	assertEmpty(t, s, dir)
	s, _ = openStore(t, image.Options{MaxArchiveBytes: st.Size()})
	must[image.Image](t)(importFile(t, s, "fits", tarPath))

	s, dir = openStore(t, image.Options{MaxImageBytes: 1 << 20}) // busybox alone is 2 MB
	if _, err := importFile(t, s, "big", tarPath); !errors.Is(err, image.ErrTooLarge) {
		t.Errorf("an image whose layers unpack past the bound: %v, want ErrTooLarge", err)
	}
	assertEmpty(t, s, dir)
}

func TestImport_RefusesWhatIsNotAnImage(t *testing.T) {
	s, dir := openStore(t, image.Options{})
	whole := must[[]byte](t)(os.ReadFile(imagetest.WriteOCITar(t, appImage(t, "x"))))
	for name, body := range map[string][]byte{
		"cut short":     whole[:len(whole)/2],
		"not a tar":     []byte("hello"),
		"empty tar":     imagetest.TarOf(t),
		"tar of a file": imagetest.TarOf(t, imagetest.File{Path: "README", Data: []byte("hi")}),
	} {
		if _, err := s.Import(context.Background(), "x", bytes.NewReader(body)); !errors.Is(err, image.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Import(context.Background(), "Not/A/Name", bytes.NewReader(nil)); err == nil || !strings.Contains(err.Error(), "image reference") {
		t.Errorf("a bad name: %v", err)
	}
	assertEmpty(t, s, dir)
}

func TestResolve_UnknownNameWithoutRegistry(t *testing.T) {
	s, _ := openStore(t, image.Options{})
	_, err := s.Resolve(context.Background(), "team/dev:1.4")
	if !errors.Is(err, image.ErrUnknown) || !strings.Contains(err.Error(), "team/dev:1.4") || !strings.Contains(err.Error(), "isolationd image import") {
		t.Fatalf("resolving a name the store does not hold: %v, want ErrUnknown naming it and what to do", err)
	}
}

func TestResolve_UnpacksAgainALayerThatWentMissing(t *testing.T) {
	s, _ := openStore(t, image.Options{})
	must[image.Image](t)(importFile(t, s, "app", imagetest.WriteOCITar(t, appImage(t, "x"))))
	res := must[image.Resolved](t)(s.Resolve(context.Background(), "app"))
	if err := os.RemoveAll(res.Layers[1]); err != nil {
		t.Fatal(err)
	}
	again := must[image.Resolved](t)(s.Resolve(context.Background(), "app"))
	if b, err := os.ReadFile(filepath.Join(again.Layers[1], "etc/motd")); err != nil || string(b) != "x" {
		t.Errorf("etc/motd after resolving again: %q %v", b, err)
	}
}

// A few compressed bytes can stand for gigabytes after a layer's tar end
// marker: what is there is bounded.
func TestImport_ALayerWithMuchAfterItsTarIsRefused(t *testing.T) {
	raw := append(imagetest.TarOf(t, imagetest.File{Path: "a", Data: []byte("a")}), make([]byte, 2<<20)...)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	layer := must[v1.Layer](t)(tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz.Bytes())), nil }))
	img := must[v1.Image](t)(mutate.AppendLayers(imagetest.Scratch(t, imagetest.Options{}), layer))
	s, dir := openStore(t, image.Options{})
	if _, err := importFile(t, s, "padded", imagetest.WriteOCITar(t, img)); !errors.Is(err, image.ErrInvalid) || !strings.Contains(err.Error(), "after its tar") {
		t.Fatalf("import: %v, want ErrInvalid saying what follows the tar", err)
	}
	assertEmpty(t, s, dir)
}
