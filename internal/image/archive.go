package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// maxMetadataBytes bounds the JSON files of a layout or an archive
// (index.json, manifest.json, manifests, configs).
const maxMetadataBytes = 4 << 20

// maxIndexDepth bounds how deep indexes may nest in a layout.
const maxIndexDepth = 4

// Import reads an image archive from r and stores it as name: an OCI
// image layout in a tar (oci-layout, index.json, blobs/), or a docker
// archive (manifest.json, as docker save writes it); which one, the
// archive's own files say. r is read once, to its end, into files of the
// store's tmp/ (never into memory); every blob is checked against its
// digest as it is read.
func (s *Store) Import(ctx context.Context, name string, r io.Reader, opts ...Option) (Image, error) {
	if err := checkName(name); err != nil {
		return Image{}, err
	}
	st, err := s.stage(ctx, r)
	if st != nil {
		defer func() { _ = removeAll(st.dir) }()
	}
	if err != nil {
		return Image{}, err
	}
	var src source
	switch {
	case st.files["index.json"] != nil:
		src, err = fromLayout(layout.Path(st.dir), st.verified())
	case st.files["manifest.json"] != nil:
		src, err = st.fromDockerArchive()
	default:
		err = fmt.Errorf("%w: the archive is neither an OCI image layout (oci-layout, index.json, blobs/) nor a docker archive (manifest.json)", ErrInvalid)
	}
	if err != nil {
		return Image{}, err
	}
	src.origin = SourceImport
	return s.ingest(ctx, name, src, options(opts))
}

// ImportDir stores the OCI image layout in the directory dir as name.
// The layout's blobs are checked against their digests as they are read.
func (s *Store) ImportDir(ctx context.Context, name, dir string, opts ...Option) (Image, error) {
	if err := checkName(name); err != nil {
		return Image{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return Image{}, fmt.Errorf("%w: %s is not an OCI image layout: %v", ErrInvalid, dir, err)
	}
	src, err := fromLayout(layout.Path(dir), nil)
	if err != nil {
		return Image{}, err
	}
	src.origin = SourceImport
	return s.ingest(ctx, name, src, options(opts))
}

// checkName refuses a name a workload could not name.
func checkName(name string) error {
	if fe := apiv1.ValidateImageRef("name", name); fe != nil {
		return fmt.Errorf("image name %q %s", name, fe[0].Message)
	}
	return nil
}

// staging is an archive read into tmp/, its files under their own names
// (checked like a layer's: nothing leaves the directory; its symlinks
// are remembered, not made).
type staging struct {
	dir   string
	files map[string]*stagedFile // by cleaned name
	links map[string]string      // symlink name → target name, both cleaned
}

type stagedFile struct {
	path   string
	digest v1.Hash
	size   int64
}

func (s *Store) stage(ctx context.Context, r io.Reader) (*staging, error) {
	dir, err := os.MkdirTemp(s.path("tmp"), "import-*")
	if err != nil {
		return nil, err
	}
	st := &staging{dir: dir, files: map[string]*stagedFile{}, links: map[string]string{}}
	from := &sourceReader{r: &boundedReader{r: ctxReader{ctx, r}, left: s.opts.MaxArchiveBytes}}
	tr := tar.NewReader(from)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, from.blame(fmt.Errorf("%w: the archive is not a tar: %w", ErrInvalid, err), "reading the archive")
		}
		if n > MaxLayerEntries {
			return st, fmt.Errorf("%w: the archive has more than %d entries", ErrTooLarge, MaxLayerEntries)
		}
		name, err := cleanName(strings.TrimPrefix(hdr.Name, "./"))
		if err != nil {
			return st, err
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			if err := st.file(name, contentReader{tr, "archive entry " + strconv.Quote(name)}); err != nil {
				return st, from.blame(err, "reading the archive")
			}
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(name), target) //nolint:gosec // G305: cleanName below refuses what climbs out
			}
			if target, err = cleanName(strings.TrimPrefix(target, "/")); err != nil {
				return st, err
			}
			st.links[name] = target
		}
	}
	// The tar's own padding, to the end of the body.
	if _, err := io.Copy(io.Discard, from); err != nil {
		return st, from.blame(err, "reading the archive")
	}
	return st, nil
}

func (st *staging) file(name string, r io.Reader) error {
	p := filepath.Join(st.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("%w: archive entry %q: %v", ErrInvalid, name, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("%w: archive entry %q: %v", ErrInvalid, name, err)
	}
	sum := sha256.New()
	buf := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(onlyWriter{io.MultiWriter(f, sum)}, r, *buf)
	copyBufs.Put(buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	st.files[name] = &stagedFile{path: p, size: n, digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum.Sum(nil))}}
	return nil
}

// lookup finds a staged file by name, through the archive's symlinks.
func (st *staging) lookup(name string) (*stagedFile, error) {
	name = path.Clean(strings.TrimPrefix(name, "./"))
	for range 8 {
		if f := st.files[name]; f != nil {
			return f, nil
		}
		target, ok := st.links[name]
		if !ok {
			break
		}
		name = target
	}
	return nil, fmt.Errorf("%w: the archive has no file %q", ErrInvalid, name)
}

// verified maps each blob of an OCI layout in the archive whose content
// matches its name to its staged file.
func (st *staging) verified() map[v1.Hash]string {
	out := map[v1.Hash]string{}
	for name, f := range st.files {
		if hexName, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && hexName == f.digest.Hex {
			out[f.digest] = f.path
		}
	}
	return out
}

// fromDockerArchive reads a docker archive: manifest.json names the
// config and the layers' files, and the store describes them with a
// manifest of its own (an OCI one), whose digest is the image's.
func (st *staging) fromDockerArchive() (source, error) {
	mf, _ := st.lookup("manifest.json")
	b, err := readSmall(mf.path)
	if err != nil {
		return source{}, err
	}
	var dm tarball.Manifest
	if err := json.Unmarshal(b, &dm); err != nil {
		return source{}, fmt.Errorf("%w: manifest.json does not parse: %v", ErrInvalid, err)
	}
	if len(dm) != 1 {
		return source{}, fmt.Errorf("%w: the docker archive holds %d images; import one at a time", ErrInvalid, len(dm))
	}
	cf, err := st.lookup(dm[0].Config)
	if err != nil {
		return source{}, err
	}
	config, err := readSmall(cf.path)
	if err != nil {
		return source{}, err
	}
	m := v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: cf.size, Digest: cf.digest},
	}
	files := map[v1.Hash]string{}
	for _, name := range dm[0].Layers {
		lf, err := st.lookup(name)
		if err != nil {
			return source{}, err
		}
		head, err := readHead(lf.path)
		if err != nil {
			return source{}, err
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: mediaTypeOf(head), Size: lf.size, Digest: lf.digest})
		files[lf.digest] = lf.path
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return source{}, err
	}
	sum := sha256.Sum256(mb)
	return source{
		digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, manifest: mb, config: config,
		blob: stagedBlobs(files, nil),
	}, nil
}

// stagedBlobs opens layer blobs: staged files (already checked) by
// digest, else from the layout l (checked as they are read).
func stagedBlobs(staged map[v1.Hash]string, l *layout.Path) func(context.Context, v1.Descriptor) (blobReader, error) {
	return func(_ context.Context, d v1.Descriptor) (blobReader, error) {
		if p, ok := staged[d.Digest]; ok {
			f, err := os.Open(p)
			if err != nil {
				return blobReader{}, err
			}
			return blobReader{ReadCloser: f, staged: p}, nil
		}
		if l == nil {
			return blobReader{}, fmt.Errorf("%w: the archive has no blob %s", ErrInvalid, d.Digest)
		}
		rc, err := l.Blob(d.Digest)
		if err != nil {
			return blobReader{}, fmt.Errorf("%w: the layout has no blob %s: %v", ErrInvalid, d.Digest, err)
		}
		return blobReader{ReadCloser: rc}, nil
	}
}

// fromLayout reads the OCI image layout l: the one image of index.json
// (through nested indexes), or the one for linux on this machine's
// architecture. staged are the blobs already checked.
func fromLayout(l layout.Path, staged map[v1.Hash]string) (source, error) {
	ii, err := l.ImageIndex()
	if err != nil {
		return source{}, fmt.Errorf("%w: index.json: %v", ErrInvalid, err)
	}
	raw, err := ii.RawManifest()
	if err != nil {
		return source{}, fmt.Errorf("%w: index.json: %v", ErrInvalid, err)
	}
	desc, err := pickImage(l, raw, 0)
	if err != nil {
		return source{}, err
	}
	manifest, err := layoutBlob(l, "manifest", desc.Digest)
	if err != nil {
		return source{}, err
	}
	m, err := v1.ParseManifest(strings.NewReader(string(manifest)))
	if err != nil {
		return source{}, fmt.Errorf("%w: manifest %s does not parse: %v", ErrInvalid, desc.Digest, err)
	}
	config, err := layoutBlob(l, "config", m.Config.Digest)
	if err != nil {
		return source{}, err
	}
	return source{digest: desc.Digest, manifest: manifest, config: config, blob: stagedBlobs(staged, &l)}, nil
}

// pickImage chooses the image an index describes.
func pickImage(l layout.Path, rawIndex []byte, depth int) (v1.Descriptor, error) {
	im, err := v1.ParseIndexManifest(strings.NewReader(string(rawIndex)))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%w: an index does not parse: %v", ErrInvalid, err)
	}
	var images, exact, indexes []v1.Descriptor
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsImage() && (d.Platform == nil || runsHere(*d.Platform)):
			images = append(images, d)
			if d.Platform != nil {
				exact = append(exact, d)
			}
		case d.MediaType.IsIndex():
			indexes = append(indexes, d)
		}
	}
	switch {
	case len(images) == 1:
		return images[0], nil
	case len(exact) == 1:
		return exact[0], nil
	case len(images) > 1:
		return v1.Descriptor{}, fmt.Errorf("%w: the layout holds %d images for linux/%s; import one at a time", ErrInvalid, len(images), runtime.GOARCH)
	case len(indexes) == 1 && depth < maxIndexDepth:
		raw, err := layoutBlob(l, "index", indexes[0].Digest)
		if err != nil {
			return v1.Descriptor{}, err
		}
		return pickImage(l, raw, depth+1)
	case len(indexes) > 1:
		return v1.Descriptor{}, fmt.Errorf("%w: the layout holds %d indexes; import one image at a time", ErrInvalid, len(indexes))
	}
	return v1.Descriptor{}, fmt.Errorf("%w: the layout holds no image for linux/%s", ErrInvalid, runtime.GOARCH)
}

// runsHere reports whether an image of platform p runs on this machine.
func runsHere(p v1.Platform) bool {
	return p.OS == "linux" && p.Architecture == runtime.GOARCH
}

// layoutBlob reads a small blob of l and checks it against its digest.
func layoutBlob(l layout.Path, what string, h v1.Hash) ([]byte, error) {
	if h.Algorithm != "sha256" {
		return nil, fmt.Errorf("%w: the %s %s: only sha256 digests are supported", ErrInvalid, what, h)
	}
	b, err := readSmall(filepath.Join(string(l), "blobs", h.Algorithm, h.Hex))
	if err != nil {
		return nil, fmt.Errorf("the %s %s: %w", what, h, err)
	}
	if err := checkDigest(what, h, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readSmall reads a metadata file, refusing one past maxMetadataBytes.
func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadataBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetadataBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, filepath.Base(p), maxMetadataBytes)
	}
	return b, nil
}

// readHead reads the first bytes of a file, for its magic number.
func readHead(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 4)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return head[:n], nil
}

// boundedReader reads at most left bytes, and says ErrTooLarge past them.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	// One byte past the bound tells a body that ends there from a larger one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return 0, fmt.Errorf("%w: the archive is larger than the store's bound", ErrTooLarge)
	}
	return n, err
}
