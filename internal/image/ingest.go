package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// source is an image on its way into the store, wherever it comes from:
// its manifest, its config and a way to read its layers' blobs.
type source struct {
	origin   string  // Image.Source
	digest   v1.Hash // the manifest's, already checked against its bytes
	manifest []byte
	config   []byte
	blob     func(ctx context.Context, d v1.Descriptor) (blobReader, error)
}

// blobReader reads a layer's blob as it came.
type blobReader struct {
	io.ReadCloser
	// staged is a file holding the blob whose digest was checked as it
	// was staged: the store moves it into blobs/ instead of copying it.
	staged string
	// verified: the reader checks the digest itself (remote does).
	verified bool
}

// maxParallelLayers bounds the layers of one image fetched and unpacked
// at once.
const maxParallelLayers = 4

// ingest verifies src and brings its blobs and layers into the store
// (each layer unpacked once), then commits the record of name.
func (s *Store) ingest(ctx context.Context, name string, src source, c call) (Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(src.manifest))
	if err != nil {
		return Image{}, fmt.Errorf("%w: the manifest does not parse: %v", ErrInvalid, err)
	}
	if m.MediaType != "" && !m.MediaType.IsImage() {
		return Image{}, fmt.Errorf("%w: the manifest's media type is %s, not an image manifest's", ErrInvalid, m.MediaType)
	}
	if err := checkDigest("config", m.Config.Digest, src.config); err != nil {
		return Image{}, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(src.config))
	if err != nil {
		return Image{}, fmt.Errorf("%w: the config does not parse: %v", ErrInvalid, err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return Image{}, fmt.Errorf("%w: the image is for %s, not linux", ErrInvalid, cfg.OS)
	}
	if len(m.Layers) > MaxLayers {
		return Image{}, fmt.Errorf("%w: the image has %d layers, more than %d", ErrTooLarge, len(m.Layers), MaxLayers)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return Image{}, fmt.Errorf("%w: the manifest has %d layers and the config %d diff_ids", ErrInvalid, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	img := Image{
		Name: name, Digest: src.digest.String(), Config: m.Config.Digest.String(), Source: src.origin,
		CreatedAt:  s.opts.Clock.Now().UTC(),
		Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd, Env: cfg.Config.Env,
		WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User,
	}
	keys := []string{img.Digest, img.Config}
	var todo []layerJob
	diffOf := map[v1.Hash]v1.Hash{}
	for i, d := range m.Layers {
		diffID := cfg.RootFS.DiffIDs[i]
		if !d.MediaType.IsLayer() || !d.MediaType.IsDistributable() {
			return Image{}, fmt.Errorf("%w: layer %s has media type %q, not a layer this store takes (foreign and non-distributable layers are not)", ErrInvalid, d.Digest, d.MediaType)
		}
		if d.Digest.Algorithm != "sha256" || diffID.Algorithm != "sha256" {
			return Image{}, fmt.Errorf("%w: layer %s: only sha256 digests are supported", ErrInvalid, d.Digest)
		}
		img.Layers = append(img.Layers, Layer{Digest: d.Digest.String(), DiffID: diffID.String(), Size: d.Size, MediaType: string(d.MediaType)})
		keys = append(keys, d.Digest.String(), layerKey(diffID.String()))
		// An image may list the same layer twice (empty layers often
		// are): it is fetched and unpacked once.
		if prev, ok := diffOf[d.Digest]; ok {
			if prev != diffID {
				return Image{}, fmt.Errorf("%w: layer %s is listed with two diff_ids, %s and %s", ErrInvalid, d.Digest, prev, diffID)
			}
			continue
		}
		diffOf[d.Digest] = diffID
		todo = append(todo, layerJob{desc: d, diffID: diffID.String()})
	}
	// Held until the record names them: a delete's collection in between
	// would take them for garbage.
	release := s.hold(keys...)
	err = s.ingestBlobs(ctx, src, m.Config.Digest, todo)
	if err == nil {
		err = s.commit(img, c)
	}
	release()
	if err != nil {
		// What this import brought in and no image uses goes now.
		s.collect()
		return Image{}, err
	}
	s.log.Info("image stored", "name", name, "digest", img.Digest, "layers", len(img.Layers), "source", img.Source)
	return img, nil
}

// checkDigest refuses data whose sha256 is not want.
func checkDigest(what string, want v1.Hash, data []byte) error {
	sum := sha256.Sum256(data)
	if want.Algorithm != "sha256" || fmt.Sprintf("%x", sum) != want.Hex {
		return fmt.Errorf("%w: the %s's digest is sha256:%x, not %s as its descriptor says", ErrInvalid, what, sum, want)
	}
	return nil
}

type layerJob struct {
	desc   v1.Descriptor
	diffID string
}

// ingestBlobs writes the manifest and config blobs and brings in every
// layer, several at once.
func (s *Store) ingestBlobs(ctx context.Context, src source, config v1.Hash, todo []layerJob) error {
	var placed []placement
	for _, b := range []struct {
		digest string
		data   []byte
	}{{src.digest.String(), src.manifest}, {config.String(), src.config}} {
		p, err := s.writeBlob(b.digest, b.data)
		placed = append(placed, p)
		if err != nil {
			discard(placed)
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := &budget{left: s.opts.MaxImageBytes}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, min(maxParallelLayers, runtime.GOMAXPROCS(0)+1))
	for _, job := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p, err := s.ensureLayer(ctx, src.blob, job.desc, job.diffID, b)
			mu.Lock()
			defer mu.Unlock()
			placed = append(placed, p)
			if err != nil && first == nil {
				first = err
				cancel()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		discard(placed)
		return first
	}
	return s.place(placed)
}

// placement is what ensureLayer brought into tmp/ and place names: a
// blob and a layer directory, each "" when it was there already.
type placement struct {
	blob, blobTo   string
	layer, layerTo string
}

// place flushes what the placements hold to disk, then names them: a
// power cut must not leave a blob or a layer whose name promises what its
// files do not hold. One flush of the file system for them all, where an
// fsync of each file would cost a disk round trip per file.
func (s *Store) place(placed []placement) error {
	if !slices.ContainsFunc(placed, func(p placement) bool { return p.blob != "" || p.layer != "" }) {
		return nil
	}
	if err := s.syncFS(); err != nil {
		discard(placed)
		return err
	}
	for i, p := range placed {
		if p.blob != "" {
			if err := os.Rename(p.blob, p.blobTo); err != nil {
				discard(placed[i:])
				return err
			}
		}
		if p.layer != "" {
			// Failing because the layer is there: another import
			// unpacked it first, and this copy goes.
			if err := os.Rename(p.layer, p.layerTo); err != nil && !exists(p.layerTo) {
				discard(placed[i:])
				return err
			}
		}
	}
	discard(placed)
	return nil
}

// discard removes what placements left in tmp/ (a staged blob goes with
// its staging directory).
func discard(placed []placement) {
	for _, p := range placed {
		if p.layer != "" {
			_ = removeAll(p.layer)
		}
		if p.blob != "" {
			_ = os.Remove(p.blob)
		}
	}
}

// writeBlob writes a small blob already checked against its digest into
// tmp/, for place to name, unless the store holds it.
func (s *Store) writeBlob(digest string, data []byte) (placement, error) {
	p := s.blobPath(digest)
	if exists(p) {
		return placement{}, nil
	}
	f, err := os.CreateTemp(s.path("tmp"), "blob-*")
	if err != nil {
		return placement{}, err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return placement{}, err
	}
	return placement{blob: f.Name(), blobTo: p}, nil
}

// syncFS flushes the store's file system (see place).
func (s *Store) syncFS() error {
	fd, err := unix.Open(s.path("tmp"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// ensureLayer brings the blob of d and its layer into tmp/, for place
// to name, unless they are in the store already. It reads the blob once
// whatever is missing: its bytes are hashed (the blob's digest), written,
// decompressed, hashed again (the diff_id) and unpacked as they stream
// by. On an error it leaves nothing.
func (s *Store) ensureLayer(ctx context.Context, open func(context.Context, v1.Descriptor) (blobReader, error), d v1.Descriptor, diffID string, b *budget) (p placement, err error) {
	p = placement{blobTo: s.blobPath(d.Digest.String()), layerTo: s.layerPath(diffID)}
	haveBlob, haveLayer := exists(p.blobTo), exists(p.layerTo)
	if haveBlob && haveLayer {
		return placement{}, nil
	}
	defer func() {
		if err != nil {
			discard([]placement{p})
			p = placement{}
		}
	}()
	var br blobReader
	if haveBlob {
		f, err := os.Open(p.blobTo)
		if err != nil {
			return p, err
		}
		br = blobReader{ReadCloser: f, verified: true}
	} else {
		if br, err = open(ctx, d); err != nil {
			return p, err
		}
	}
	defer br.Close()

	var sum hash.Hash
	count := &counter{}
	writers := []io.Writer{count}
	switch {
	case haveBlob:
	case br.staged != "":
		p.blob = br.staged
	default:
		f, err := os.CreateTemp(s.path("tmp"), "blob-*")
		if err != nil {
			return p, err
		}
		defer f.Close()
		p.blob = f.Name()
		writers = append(writers, f)
	}
	if !br.verified && br.staged == "" {
		sum = sha256.New()
		writers = append(writers, sum)
	}
	from := &sourceReader{r: ctxReader{ctx, br}}
	r := io.TeeReader(from, io.MultiWriter(writers...))
	if !haveLayer {
		p.layer, err = s.unpackLayer(r, d.Digest.String(), diffID, b)
		if err != nil {
			return p, from.blame(err, "reading layer "+d.Digest.String())
		}
	}
	// The rest of the blob (what follows the compressed stream) is part
	// of its digest too.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return p, from.blame(err, "reading layer "+d.Digest.String())
	}
	if count.n != d.Size {
		return p, fmt.Errorf("%w: layer %s is %d bytes, not %d as the manifest says", ErrInvalid, d.Digest, count.n, d.Size)
	}
	if sum != nil {
		if got := fmt.Sprintf("%x", sum.Sum(nil)); got != d.Digest.Hex {
			return p, fmt.Errorf("%w: layer %s's digest is sha256:%s", ErrInvalid, d.Digest, got)
		}
	}
	return p, nil
}

// maxTrailer bounds what a layer's tar may have after its end marker
// (tar writers pad to a record, 10 KiB by default).
const maxTrailer = 1 << 20

// unpackLayer decompresses the blob r and unpacks it into a new
// directory in tmp/, checking the uncompressed stream against diffID.
func (s *Store) unpackLayer(r io.Reader, digest, diffID string, b *budget) (string, error) {
	dir, err := os.MkdirTemp(s.path("tmp"), "layer-*")
	if err != nil {
		return "", err
	}
	zr, err := decompress(r)
	if err != nil {
		return dir, fmt.Errorf("%w: layer %s: %v", ErrInvalid, digest, err)
	}
	defer zr.Close()
	sum := sha256.New()
	tr := io.TeeReader(contentReader{zr, "reading the tar"}, sum)
	u := newUnpacker(dir, s.opts.UIDShift, s.opts.GIDShift, s.root, b)
	if err := u.unpack(tr); err != nil {
		return dir, fmt.Errorf("layer %s: %w", digest, err)
	}
	// What follows the tar's end marker (its padding) is in the diff_id;
	// bounded, as a few compressed bytes may stand for gigabytes of it.
	n, err := io.Copy(io.Discard, io.LimitReader(tr, maxTrailer+1))
	if err != nil {
		return dir, fmt.Errorf("layer %s: %w", digest, err)
	}
	if n > maxTrailer {
		return dir, fmt.Errorf("%w: layer %s has more than %d bytes after its tar's end", ErrInvalid, digest, maxTrailer)
	}
	if got := fmt.Sprintf("sha256:%x", sum.Sum(nil)); got != diffID {
		return dir, fmt.Errorf("%w: layer %s uncompressed is %s, not the diff_id %s the config lists", ErrInvalid, digest, got, diffID)
	}
	return dir, nil
}

// decompress reads r as gzip, zstd or a plain tar, whichever its first
// bytes say (media types are not always honest about it).
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// sourceReader remembers the error its source gave, so that a failure
// further down (a tar that ends early, a gzip stream cut short) is blamed
// on the source when the source failed (a registry's connection dropped,
// a client gone: worth another try) and on the content otherwise
// (ErrInvalid: another try reads the same bytes).
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// blame is the error of a read of what that failed with err.
func (s *sourceReader) blame(err error, what string) error {
	if s.err != nil {
		return fmt.Errorf("%s: %w", what, s.err)
	}
	return err
}

// contentReader reads a stream whose failures are its content's fault (a
// tar entry cut short, a gzip stream that does not decode): they wrap
// ErrInvalid, unlike the errors of the files it is copied to.
type contentReader struct {
	r    io.Reader
	what string
}

func (c contentReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %s: %w", ErrInvalid, c.what, err)
	}
	return n, err
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// ctxReader stops reading once ctx is done, so that a cancelled import
// stops in the middle of a layer.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// mediaTypeOf guesses the media type of a layer blob from its first
// bytes, for docker archives, whose manifest.json names files, not types.
func mediaTypeOf(head []byte) types.MediaType {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return types.OCILayer
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return types.OCILayerZStd
	}
	return types.OCIUncompressedLayer
}

// notStaged refuses to open a blob the store does not hold, for
// resolving an image whose layer directory went missing.
func notStaged(_ context.Context, d v1.Descriptor) (blobReader, error) {
	return blobReader{}, fmt.Errorf("the blob of layer %s is missing from the store: import the image again", d.Digest)
}
