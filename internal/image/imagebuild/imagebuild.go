// Package imagebuild builds OCI images locally with go-containerregistry:
// Debian's static busybox (package busybox-static) with its applets and a
// passwd file, plus the files and binaries a caller gives, under the
// config it gives, written as an OCI image layout (a directory or a tar,
// the forms the image store imports). `make demo` builds its image with
// it, and the tests through internal/image/imagetest, so that nothing
// fetches an image from a registry.
//
//	img, err := imagebuild.Busybox(imagebuild.Options{
//		Files: []imagebuild.File{{Path: "www/index.html", Data: page}},
//	})
//	err = imagebuild.WriteOCITar(path, img) // then POST /v1/images?name=...
//
// It stands below the image store: it imports internal/image (for the
// layout's tar form), never the other way round.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

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

// ModTime is the time of every entry imagebuild writes, so that the same
// files make the same layer, byte for byte, every time.
var ModTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

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

// Options say what an image holds besides its base, and its config.
type Options struct {
	// Files make one layer above the base's (none when empty).
	Files []File
	// Binaries are copied into that layer, mode 0755: path in the image
	// ("/usr/local/bin/server") → path of a file on this machine (a
	// static Go binary, say).
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
func Busybox(opts Options) (v1.Image, error) {
	bb, err := BusyboxLayer()
	if err != nil {
		return nil, err
	}
	return Build([]v1.Layer{bb}, opts)
}

// Build builds an image of the base layers, lowest first, and what opts
// adds above them (no base: what opts adds alone).
func Build(base []v1.Layer, opts Options) (v1.Image, error) {
	layers := slices.Clone(base)
	files := slices.Clone(opts.Files)
	for dst, src := range opts.Binaries {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: binary %s: %w", src, err)
		}
		files = append(files, File{Path: strings.TrimPrefix(dst, "/"), Data: b, Mode: 0o755})
	}
	if len(files) > 0 {
		slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
		l, err := Layer(files...)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	for _, fs := range opts.Layers {
		l, err := Layer(fs...)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
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
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	return img, nil
}

// Layer is a gzip layer of files, in the order given.
func Layer(files ...File) (v1.Layer, error) {
	raw, err := TarOf(files...)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("imagebuild: layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("imagebuild: layer: %w", err)
	}
	compressed := gz.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("imagebuild: layer: %w", err)
	}
	return l, nil
}

// TarOf is the uncompressed tar of files, as Layer writes it.
func TarOf(files ...File) ([]byte, error) {
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
			return nil, fmt.Errorf("imagebuild: tar: %w", err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("imagebuild: tar: %w", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("imagebuild: tar: %w", err)
	}
	return buf.Bytes(), nil
}

// Passwd and Group are the busybox layer's /etc/passwd and /etc/group:
// root, an unprivileged user app (1000:1000) and nobody.
const (
	Passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" //nolint:gosec // G101: a passwd file's lines; "x" says the password is elsewhere, and there is none
	Group  = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"
)

// The busybox layer is built once per process: every image built on it
// shares the same bytes, and so the same layer in the store.
var (
	bbOnce  sync.Once
	bbLayer v1.Layer
	bbErr   error
)

// BusyboxLayer is the busybox layer: the binary, a symlink in /bin for
// each of its applets, the directories a root filesystem has, and passwd
// and group files. It fails, saying why, where there is no busybox to
// build it from.
func BusyboxLayer() (v1.Layer, error) {
	bbOnce.Do(func() {
		bbLayer, bbErr = busyboxLayer()
		if bbErr != nil {
			bbErr = fmt.Errorf("imagebuild: no busybox to build images from (install Debian's busybox-static): %w", bbErr)
		}
	})
	return bbLayer, bbErr
}

func busyboxLayer() (v1.Layer, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", BusyboxPath, err)
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
	return Layer(files...)
}

// WriteLayout writes img as an OCI image layout in dir, which must not
// hold one yet.
func WriteLayout(dir string, img v1.Image) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("imagebuild: layout: %w", err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})); err != nil {
		return fmt.Errorf("imagebuild: layout: %w", err)
	}
	return nil
}

// WriteOCITar writes img to path as an OCI image layout in a tar file,
// the form POST /v1/images takes. The layout is written beside path on
// the way, and removed.
func WriteOCITar(path string, img v1.Image) (err error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), "layout-")
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(dir); err == nil && rmErr != nil {
			err = fmt.Errorf("imagebuild: %w", rmErr)
		}
	}()
	if err := WriteLayout(dir, img); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	defer f.Close()
	if err := image.WriteLayoutTar(f, dir); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	return nil
}
