// Package imagetest builds OCI images for tests, locally and with
// go-containerregistry, through internal/image/imagebuild: Debian's static
// busybox (package busybox-static) with its applets and a passwd file,
// plus the files and binaries a test gives, under the config it gives. It
// writes them as an OCI layout tar, a docker archive tar or an OCI layout
// directory, the three forms the image store imports, and fails the test
// on any error. No test fetches an image from a registry.
//
//	imagetest.SkipWithoutBusybox(t)
//	img := imagetest.Busybox(t, imagetest.Options{
//		Binaries: map[string]string{"/usr/local/bin/server": serverPath},
//		Cmd:      []string{"/usr/local/bin/server", "--port", "8080"},
//	})
//	tarPath := imagetest.WriteOCITar(t, img) // or WriteDockerTar, WriteLayout
//	res := imagetest.Import(t, store, "app", img) // or into an image.Store directly
package imagetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	gname "github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagebuild"
)

// What images are made of, as imagebuild defines it.
type (
	// File is one entry of a layer's tar (imagebuild.File).
	File = imagebuild.File
	// Options say what an image holds besides busybox, and its config
	// (imagebuild.Options).
	Options = imagebuild.Options
)

// BusyboxPath is where Debian's busybox-static puts its binary.
const BusyboxPath = imagebuild.BusyboxPath

// Passwd and Group are the busybox layer's /etc/passwd and /etc/group.
const (
	Passwd = imagebuild.Passwd
	Group  = imagebuild.Group
)

// ModTime is the time of every entry imagetest writes, so that the same
// files make the same layer, byte for byte, in every test.
var ModTime = imagebuild.ModTime

// Dir is a directory entry.
func Dir(path string, mode int64) File { return imagebuild.Dir(path, mode) }

// Symlink is a symbolic link entry.
func Symlink(path, target string) File { return imagebuild.Symlink(path, target) }

// BusyboxAvailable says why busybox images cannot be built here, nil
// when they can.
func BusyboxAvailable() error {
	_, err := imagebuild.BusyboxLayer()
	return err
}

// SkipWithoutBusybox skips t when busybox images cannot be built here.
func SkipWithoutBusybox(t testing.TB) {
	t.Helper()
	if err := BusyboxAvailable(); err != nil {
		t.Skip(err.Error())
	}
}

// Busybox builds an image of the busybox layer and what opts adds.
func Busybox(t testing.TB, opts Options) v1.Image {
	t.Helper()
	v, err := imagebuild.Build([]v1.Layer{BusyboxLayer(t)}, opts)
	check(t, err)
	return v
}

// Scratch builds an image of what opts adds alone (no busybox), for
// tests of the store that need no shell.
func Scratch(t testing.TB, opts Options) v1.Image {
	t.Helper()
	v, err := imagebuild.Build(nil, opts)
	check(t, err)
	return v
}

// Layer is a gzip layer of files, in the order given.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	v, err := imagebuild.Layer(files...)
	check(t, err)
	return v
}

// TarOf is the uncompressed tar of files, as Layer writes it (for tests
// that write a layer by hand, or extract one with another tool).
func TarOf(t testing.TB, files ...File) []byte {
	t.Helper()
	v, err := imagebuild.TarOf(files...)
	check(t, err)
	return v
}

// BusyboxLayer is the busybox layer: the same bytes every time, so
// images built on it share it.
func BusyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	SkipWithoutBusybox(t)
	v, err := imagebuild.BusyboxLayer()
	check(t, err)
	return v
}

// WriteLayout writes img as an OCI image layout directory and returns
// its path.
func WriteLayout(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	check(t, imagebuild.WriteLayout(dir, img))
	return dir
}

// WriteOCITar writes img as an OCI image layout in a tar file and
// returns its path.
func WriteOCITar(t testing.TB, img v1.Image) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "oci.tar")
	check(t, imagebuild.WriteOCITar(p, img))
	return p
}

// DockerTag is the tag a docker archive written by WriteDockerTar
// carries in its manifest.json.
const DockerTag = "imagetest.local/image:latest"

// WriteDockerTar writes img as a docker archive (as docker save does)
// and returns its path.
func WriteDockerTar(t testing.TB, img v1.Image) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "docker.tar")
	if err := tarball.WriteToFile(p, gname.MustParseReference(DockerTag), img); err != nil {
		t.Fatalf("imagetest: docker archive: %v", err)
	}
	return p
}

// Import stores img in s as name, through an OCI layout tar as an upload
// would bring it, and resolves it: the layers a runtime mounts.
func Import(t testing.TB, s *image.Store, name string, img v1.Image) image.Resolved {
	t.Helper()
	f, err := os.Open(WriteOCITar(t, img))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := s.Import(context.Background(), name, f); err != nil {
		t.Fatalf("imagetest: import %s: %v", name, err)
	}
	res, err := s.Resolve(context.Background(), name)
	if err != nil {
		t.Fatalf("imagetest: resolve %s: %v", name, err)
	}
	return res
}

// check fails t with err, if any.
func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("imagetest: %v", err)
	}
}
