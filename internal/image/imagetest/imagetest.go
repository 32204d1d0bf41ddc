// Package imagetest builds OCI images for tests, locally and with
// go-containerregistry: Debian's static busybox (package busybox-static)
// with its applets and a passwd file, plus the files and binaries a test
// gives, under the config it gives. It writes them as an OCI layout
// tar, a docker archive tar or an OCI layout directory, the three forms
// the image store imports. No test fetches an image from a registry.
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
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gname "github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/isolationhq/terraform-provider-isolation/internal/image"
)

// BusyboxPath is where Debian's busybox-static puts its binary.
const BusyboxPath = "/bin/busybox"

// ModTime is the time of every entry imagetest writes, so that the same
// files make the same layer, byte for byte, in every test.
var ModTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// BusyboxAvailable says why busybox images cannot be built here, nil
// when they can.
func BusyboxAvailable() error {
	_, err := busybox()
	return err
}

// SkipWithoutBusybox skips t when busybox images cannot be built here.
func SkipWithoutBusybox(t testing.TB) {
	t.Helper()
	if err := BusyboxAvailable(); err != nil {
		t.Skipf("no busybox to build test images from (install Debian's busybox-static): %v", err)
	}
}

// File is one entry of a layer's tar, written as given: Path is relative
// to the image's root ("etc/motd"; an absolute or climbing one is written
// too, for tests of what the store refuses).
type File struct {
	Path string
	Data []byte
	// Mode is the permission bits (with setuid, setgid, sticky); 0 means
	// 0644, or 0755 for a directory.
	Mode int64
	// Type is the tar type flag: 0 is a regular file, else tar.TypeDir,
	// tar.TypeSymlink, tar.TypeLink...
	Type     byte
	Link     string // a symlink's or a hard link's target
	UID, GID int
	// Major and Minor are a device node's numbers.
	Major, Minor int64
}

// Dir is a directory entry.
func Dir(path string, mode int64) File { return File{Path: path, Type: tar.TypeDir, Mode: mode} }

// Symlink is a symbolic link entry.
func Symlink(path, target string) File {
	return File{Path: path, Type: tar.TypeSymlink, Link: target, Mode: 0o777}
}

// Options say what an image holds besides busybox, and its config.
type Options struct {
	// Files make one layer above busybox's (none when empty).
	Files []File
	// Binaries are copied into that layer, mode 0755: path in the image
	// ("/usr/local/bin/server") → path of a file on this machine (a
	// static Go binary the test built, say).
	Binaries map[string]string
	// Layers are more layers above it, lowest first.
	Layers [][]File

	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=value; PATH is set when absent
	WorkingDir string
	User       string
}

// Busybox builds an image of the busybox layer and what opts adds.
func Busybox(t testing.TB, opts Options) v1.Image {
	t.Helper()
	SkipWithoutBusybox(t)
	return build(t, []v1.Layer{BusyboxLayer(t)}, opts)
}

// Scratch builds an image of what opts adds alone (no busybox), for
// tests of the store that need no shell.
func Scratch(t testing.TB, opts Options) v1.Image {
	t.Helper()
	return build(t, nil, opts)
}

func build(t testing.TB, base []v1.Layer, opts Options) v1.Image {
	t.Helper()
	layers := base
	files := slices.Clone(opts.Files)
	for dst, src := range opts.Binaries {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("imagetest: binary %s: %v", src, err)
		}
		files = append(files, File{Path: strings.TrimPrefix(dst, "/"), Data: b, Mode: 0o755})
	}
	if len(files) > 0 {
		slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
		layers = append(layers, Layer(t, files...))
	}
	for _, l := range opts.Layers {
		layers = append(layers, Layer(t, l...))
	}
	env := slices.Clone(opts.Env)
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	cfg := &v1.ConfigFile{
		Architecture: runtime.GOARCH, OS: "linux", Created: v1.Time{Time: ModTime},
		Config: v1.Config{Entrypoint: opts.Entrypoint, Cmd: opts.Cmd, Env: env, WorkingDir: opts.WorkingDir, User: opts.User},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), cfg)
	if err != nil {
		t.Fatalf("imagetest: %v", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatalf("imagetest: %v", err)
	}
	return img
}

// Layer is a gzip layer of files, in the order given.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	l, err := layerOf(files)
	if err != nil {
		t.Fatalf("imagetest: layer: %v", err)
	}
	return l
}

// TarOf is the uncompressed tar of files, as Layer writes it (for tests
// that write a layer by hand, or extract one with another tool).
func TarOf(t testing.TB, files ...File) []byte {
	t.Helper()
	b, err := tarOf(files)
	if err != nil {
		t.Fatalf("imagetest: tar: %v", err)
	}
	return b
}

func layerOf(files []File) (v1.Layer, error) {
	raw, err := tarOf(files)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

func tarOf(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{
			Name: f.Path, Typeflag: f.Type, Mode: f.Mode, Linkname: f.Link,
			Uid: f.UID, Gid: f.GID, Devmajor: f.Major, Devminor: f.Minor, ModTime: ModTime, Format: tar.FormatPAX,
		}
		switch f.Type {
		case 0:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
		case tar.TypeReg:
			hdr.Size = int64(len(f.Data))
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if f.Type == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Size > 0 {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Passwd and Group are the busybox layer's /etc/passwd and /etc/group:
// root, an unprivileged user app (1000:1000) and nobody.
const (
	Passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	Group  = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"
)

var (
	bbOnce  sync.Once
	bbFiles []File
	bbErr   error
	bbLayer v1.Layer
)

// busybox is the busybox layer's files: the binary, a symlink in /bin
// for each of its applets, the directories a root filesystem has, and
// passwd and group files.
func busybox() ([]File, error) {
	bbOnce.Do(func() {
		bin, err := os.ReadFile(BusyboxPath)
		if err != nil {
			bbErr = err
			return
		}
		out, err := exec.Command(BusyboxPath, "--list").Output()
		if err != nil {
			bbErr = err
			return
		}
		files := []File{
			Dir("bin", 0), Dir("dev", 0), Dir("etc", 0), Dir("home", 0),
			{Path: "home/app", Type: tar.TypeDir, Mode: 0o755, UID: 1000, GID: 1000}, Dir("proc", 0),
			Dir("root", 0o700), Dir("sys", 0), Dir("tmp", 0o1777), Dir("usr", 0), Dir("usr/bin", 0), Dir("var", 0),
			{Path: "bin/busybox", Data: bin, Mode: 0o755},
			{Path: "etc/passwd", Data: []byte(Passwd)},
			{Path: "etc/group", Data: []byte(Group)},
			Symlink("usr/bin/env", "/bin/busybox"),
		}
		applets := strings.Fields(string(out))
		slices.Sort(applets)
		for _, a := range applets {
			if a != "busybox" && !strings.Contains(a, "/") {
				files = append(files, Symlink("bin/"+a, "busybox"))
			}
		}
		bbFiles = files
		bbLayer, bbErr = layerOf(files)
	})
	return bbFiles, bbErr
}

// BusyboxLayer is the busybox layer: the same bytes every time, so
// images built on it share it.
func BusyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	SkipWithoutBusybox(t)
	return bbLayer
}

// WriteLayout writes img as an OCI image layout directory and returns
// its path.
func WriteLayout(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatalf("imagetest: layout: %v", err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})); err != nil {
		t.Fatalf("imagetest: layout: %v", err)
	}
	return dir
}

// WriteOCITar writes img as an OCI image layout in a tar file and
// returns its path.
func WriteOCITar(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := WriteLayout(t, img)
	p := filepath.Join(t.TempDir(), "oci.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := image.WriteLayoutTar(f, dir); err != nil {
		t.Fatalf("imagetest: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
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
