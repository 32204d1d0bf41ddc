package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Default bounds of Options.
const (
	DefaultMaxArchiveBytes = 4 << 30  // an imported archive
	DefaultMaxImageBytes   = 16 << 30 // an image's layers, uncompressed, together
	// MaxLayers bounds the layers of one image (Docker's own limit is 127,
	// overlayfs's lowerdir a few hundred).
	MaxLayers = 128
	// MaxLayerEntries bounds the entries of one layer's tar.
	MaxLayerEntries = 1 << 20
	// MappedIDs is how many uids and gids the user namespace maps from the
	// shift on (container 0..65535): with a shift, a layer's files must be
	// owned by ids below it.
	MappedIDs = 65536
)

// Options configure a Store.
type Options struct {
	// UIDShift and GIDShift are added to the owner of every unpacked
	// file, so that a container whose user namespace maps its root to the
	// shift sees the image's owners. Every environment shares them (one
	// mapping for all); 0 without user namespaces. Layers unpacked for
	// another shift are removed at Open (the runtime recreates containers
	// whose mapping changed) and unpacked again from the blobs on demand.
	UIDShift, GIDShift uint32
	// MaxArchiveBytes bounds an imported archive (0: DefaultMaxArchiveBytes).
	MaxArchiveBytes int64
	// MaxImageBytes bounds an image's layers, uncompressed, together (0:
	// DefaultMaxImageBytes): a small gzip bomb stops there.
	MaxImageBytes int64
	Logger        *slog.Logger
	// Clock stamps the records' created_at; nil is the real clock.
	Clock clockwork.Clock
}

// Image is the store's record of an image.
type Image struct {
	Name      string    `json:"name"`
	Digest    string    `json:"digest"` // the manifest's digest
	Config    string    `json:"config"` // the config's digest
	Layers    []Layer   `json:"layers"` // lowest first
	Source    string    `json:"source"` // SourceImport, or the reference it was pulled from
	CreatedAt time.Time `json:"created_at"`
	// What a runtime needs of the config, kept here so that resolving an
	// image reads no blob.
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Layer is one layer of an image.
type Layer struct {
	Digest    string `json:"digest"`  // of the blob, compressed as it came
	DiffID    string `json:"diff_id"` // of the uncompressed tar, as the config lists it
	Size      int64  `json:"size"`    // of the blob
	MediaType string `json:"media_type"`
}

// SourceImport is the Source of an image imported from an archive or a
// layout directory.
const SourceImport = "import"

// API is the image as the API shows it (InUse is the caller's to count).
func (img Image) API() apiv1.Image {
	var size int64
	for _, l := range img.Layers {
		size += l.Size
	}
	return apiv1.Image{Name: img.Name, Digest: img.Digest, Size: size, Layers: len(img.Layers), Source: img.Source, CreatedAt: img.CreatedAt}
}

// Hook runs when a change to a name is ready and not yet visible, with
// the record before it (nil for a new name) and after it (nil for a
// delete). Its error undoes the change, which is how the application
// layer commits the change and its audit event together.
type Hook func(before, after *Image) error

// Option qualifies one call of the store.
type Option func(*call)

type call struct{ hook Hook }

// WithHook runs h inside the call's commit (see Hook).
func WithHook(h Hook) Option { return func(c *call) { c.hook = h } }

func options(opts []Option) call {
	var c call
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Store is the image store. It is safe for concurrent use by one process:
// two processes must not share a directory.
type Store struct {
	dir   string
	opts  Options
	shift string // the layers/ subdirectory of this shift
	log   *slog.Logger
	root  bool // running as root: unpacked files are chowned

	mu     sync.Mutex
	images map[string]Image
	// held are the blobs ("sha256:...") and layers ("layer:<hex>") that
	// calls in progress rely on: the garbage collector leaves them be.
	held  map[string]int
	pulls map[string]*flight
}

// Open opens (creating it if need be) the store in dir, emptying what an
// interrupted import left in dir/tmp.
func Open(dir string, opts Options) (*Store, error) {
	if opts.MaxArchiveBytes <= 0 {
		opts.MaxArchiveBytes = DefaultMaxArchiveBytes
	}
	if opts.MaxImageBytes <= 0 {
		opts.MaxImageBytes = DefaultMaxImageBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	s := &Store{
		dir: dir, opts: opts, log: opts.Logger, root: os.Geteuid() == 0,
		shift:  shiftName(opts.UIDShift, opts.GIDShift),
		images: map[string]Image{}, held: map[string]int{}, pulls: map[string]*flight{},
	}
	if err := removeAll(s.path("tmp")); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	for _, d := range []string{"blobs/sha256", "layers/" + s.shift, "refs", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	ents, err := os.ReadDir(s.path("refs"))
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(s.path("refs", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
		var img Image
		if err := json.Unmarshal(b, &img); err != nil || img.Name == "" || refFile(img.Name) != e.Name() {
			return nil, fmt.Errorf("image store: %s is not an image record", s.path("refs", e.Name()))
		}
		s.images[img.Name] = img
	}
	// What an import or a delete interrupted by a crash left unnamed.
	s.collect()
	return s, nil
}

// shiftName names the layers/ subdirectory of a shift: layers unpacked
// with other owners are other directories.
func shiftName(uid, gid uint32) string {
	if uid == gid {
		return strconv.FormatUint(uint64(uid), 10)
	}
	return fmt.Sprintf("%d-%d", uid, gid)
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// blobPath is where the blob of digest "sha256:<hex>" lives.
func (s *Store) blobPath(digest string) string {
	return s.path("blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// layerPath is where the layer of diffID lives, unpacked for this shift.
func (s *Store) layerPath(diffID string) string {
	return s.path("layers", s.shift, strings.TrimPrefix(diffID, "sha256:"))
}

// refFile names the record of an image: names hold '/' and ':' and may
// be as long as a file name can, so the file is named by their hash.
func refFile(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:]) + ".json"
}

// MaxArchiveBytes is the largest archive Import takes.
func (s *Store) MaxArchiveBytes() int64 { return s.opts.MaxArchiveBytes }

// List returns every image, by name.
func (s *Store) List() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get returns the image of name, or an error wrapping ErrNotFound.
func (s *Store) Get(name string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[name]
	if !ok {
		return Image{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return img, nil
}

// Delete removes the record of name; the blobs and layers no other image
// uses go with it. An error wrapping ErrNotFound says there was none.
func (s *Store) Delete(ctx context.Context, name string, opts ...Option) error {
	if err := s.deleteRecord(name, options(opts)); err != nil {
		return err
	}
	s.collect()
	return nil
}

func (s *Store) deleteRecord(name string, c call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	ref := s.path("refs", refFile(name))
	aside := s.path("tmp", "deleted-"+refFile(name))
	if err := os.Rename(ref, aside); err != nil {
		return err
	}
	if c.hook != nil {
		if err := c.hook(&img, nil); err != nil {
			if rerr := os.Rename(aside, ref); rerr != nil {
				return errors.Join(err, rerr)
			}
			return err
		}
	}
	delete(s.images, name)
	_ = os.Remove(aside)
	return nil
}

// commit makes img the record of its name: the record file is replaced
// atomically, the hook runs, and only then do readers see it. The hook's
// error puts the previous record back.
func (s *Store) commit(img Image, c call) error {
	replaced, err := s.commitRecord(img, c)
	if replaced {
		s.collect()
	}
	return err
}

func (s *Store) commitRecord(img Image, c call) (replaced bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var before *Image
	if prev, ok := s.images[img.Name]; ok {
		before = &prev
	}
	if err := s.writeRecord(img); err != nil {
		return false, err
	}
	if c.hook != nil {
		if err := c.hook(before, &img); err != nil {
			var rerr error
			if before != nil {
				rerr = s.writeRecord(*before)
			} else {
				rerr = os.Remove(s.path("refs", refFile(img.Name)))
			}
			return false, errors.Join(err, rerr)
		}
	}
	s.images[img.Name] = img
	return before != nil && before.Digest != img.Digest, nil
}

// writeRecord writes an image's record durably: the records are what a
// restart reads, while blobs and layers are found by them.
func (s *Store) writeRecord(img Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.path("tmp"), "ref-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), s.path("refs", refFile(img.Name))); err != nil {
		return err
	}
	return syncDir(s.path("refs"))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// hold keeps the garbage collector off keys (blob digests, layerKey)
// until the returned function releases them.
func (s *Store) hold(keys ...string) (release func()) {
	s.mu.Lock()
	for _, k := range keys {
		s.held[k]++
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		for _, k := range keys {
			if s.held[k]--; s.held[k] <= 0 {
				delete(s.held, k)
			}
		}
		s.mu.Unlock()
	}
}

func layerKey(diffID string) string { return "layer:" + strings.TrimPrefix(diffID, "sha256:") }

// collect removes the blobs and layers no record uses and no call holds,
// and layers unpacked for another shift (this store will not use them).
// It moves them aside under the lock and removes them after it.
func (s *Store) collect() {
	trash := s.moveGarbageAside()
	if trash == "" {
		return
	}
	if err := removeAll(trash); err != nil {
		s.log.Warn("image store: garbage collection", "path", trash, "error", err.Error())
	}
}

func (s *Store) moveGarbageAside() (trash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := map[string]bool{}
	for k := range s.held {
		live[k] = true
	}
	for _, img := range s.images {
		live[img.Digest], live[img.Config] = true, true
		for _, l := range img.Layers {
			live[l.Digest], live[layerKey(l.DiffID)] = true, true
		}
	}
	trash, err := os.MkdirTemp(s.path("tmp"), "gc-*")
	if err != nil {
		s.log.Warn("image store: garbage collection skipped", "error", err.Error())
		return ""
	}
	n := 0
	discard := func(p string) {
		if err := os.Rename(p, filepath.Join(trash, strconv.Itoa(n))); err != nil {
			s.log.Warn("image store: garbage collection", "path", p, "error", err.Error())
		}
		n++
	}
	blobs, _ := os.ReadDir(s.path("blobs", "sha256"))
	for _, e := range blobs {
		if !live["sha256:"+e.Name()] {
			discard(s.path("blobs", "sha256", e.Name()))
		}
	}
	shifts, _ := os.ReadDir(s.path("layers"))
	for _, sh := range shifts {
		if sh.Name() != s.shift {
			discard(s.path("layers", sh.Name()))
			continue
		}
		layers, _ := os.ReadDir(s.path("layers", s.shift))
		for _, e := range layers {
			if !live[layerKey(e.Name())] {
				discard(s.path("layers", s.shift, e.Name()))
			}
		}
	}
	return trash
}

// removeAll is os.RemoveAll that also removes what it may not write: a
// store run without root unpacks directories such as 0555 ones as they
// are, and then cannot remove their entries without adding write
// permission first.
func removeAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o700) //nolint:gosec // G302: a directory, its owner's only
		}
		return nil
	})
	return os.RemoveAll(p)
}
