package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Whiteouts, as the OCI image spec writes them in a layer's tar.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."     // AUFS bookkeeping: skipped
	whiteoutOpaque = ".wh..wh..opq" // the directory hides what lower layers hold in it
)

// Overlayfs's markers: a whiteout is a character device 0/0, an opaque
// directory has this xattr set to "y". Without root, trusted.* cannot be
// set, and the user.* form is the one an unprivileged (userxattr) overlay
// mount reads.
const (
	opaqueXattr     = "trusted.overlay.opaque"
	opaqueUserXattr = "user.overlay.opaque"
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// unpacker extracts one layer's tar into an empty directory, the way
// overlayfs wants to see it as a lower layer: whiteouts become whiteout
// devices, opaque markers become the opaque xattr, owners are shifted.
// It refuses what could reach outside the directory (absolute names, ..,
// paths through a symlink, hard links to outside) and device nodes.
type unpacker struct {
	root     string
	uidShift uint32
	gidShift uint32
	chown    bool // running as root: owners are set
	// budget is what is left of the image's uncompressed size bound; it
	// is shared by the image's layers (unpacking concurrently).
	budget *budget
	// dirs are the directories of this layer known to be real ones (made
	// by the unpacker or found so): a parent not among them is looked at
	// before anything is created below it.
	dirs    map[string]bool
	dirMeta []dirMeta
	metaOf  map[string]int // index in dirMeta by path: the last entry wins
	entries int
}

// dirMeta is a directory's mode and time, set once its entries are in
// (creating them changes its mtime; a read-only mode would refuse them).
type dirMeta struct {
	path  string
	mode  uint32
	mtime time.Time
}

func newUnpacker(root string, uidShift, gidShift uint32, chown bool, b *budget) *unpacker {
	return &unpacker{root: root, uidShift: uidShift, gidShift: gidShift, chown: chown, budget: b, dirs: map[string]bool{".": true}, metaOf: map[string]int{}}
}

// budget is a byte allowance shared by goroutines.
type budget struct {
	mu   sync.Mutex
	left int64
}

func (b *budget) take(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.left {
		return fmt.Errorf("%w: the image's layers are larger than the store's bound when unpacked", ErrTooLarge)
	}
	b.left -= n
	return nil
}

// unpack reads the tar r to its end marker.
func (u *unpacker) unpack(r io.Reader) error {
	// The layer's root is a root filesystem's unless the tar says
	// otherwise (a "./" entry): not the 0700 of a new temporary directory.
	if err := u.dir(".", &tar.Header{Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, ErrInvalid) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: the tar: %w", ErrInvalid, err)
		}
		if u.entries++; u.entries > MaxLayerEntries {
			return fmt.Errorf("%w: a layer has more than %d entries", ErrTooLarge, MaxLayerEntries)
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
	// Deepest first does not matter for times (a directory's entries
	// changing does not touch its parent), but modes must come after
	// every entry, and go in reverse so a parent is made read-only last.
	for i := len(u.dirMeta) - 1; i >= 0; i-- {
		d := u.dirMeta[i]
		if d.path == "" {
			continue // replaced by a later entry
		}
		if err := unix.Chmod(d.path, d.mode); err != nil {
			return err
		}
		if err := setTimes(d.path, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

// cleanName checks a name the tar gives and returns it relative to the
// layer's root ("." for the root itself).
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: layer entry %q is an absolute path", ErrInvalid, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: layer entry %q climbs out of the layer (a .. component)", ErrInvalid, name)
		}
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: layer entry %q holds a NUL byte", ErrInvalid, name)
	}
	return path.Clean(name), nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(name, dir, base)
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the layer's root entry is not a directory", ErrInvalid)
		}
		if err := u.checkOwner(hdr); err != nil {
			return err
		}
		return u.dir(".", hdr)
	}
	if err := u.checkOwner(hdr); err != nil {
		return err
	}
	if err := u.parents(dir); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.dir(name, hdr)
	case tar.TypeReg, tar.TypeGNUSparse: // the reader reads TypeRegA as TypeReg
		return u.file(name, hdr, r)
	case tar.TypeSymlink:
		return u.replace(name, func(p string) error { return os.Symlink(hdr.Linkname, p) }, hdr, false)
	case tar.TypeLink:
		return u.hardlink(name, hdr)
	case tar.TypeFifo:
		return u.replace(name, func(p string) error { return unix.Mkfifo(p, 0o600) }, hdr, true)
	case tar.TypeChar:
		if hdr.Devmajor == 0 && hdr.Devminor == 0 {
			// Already an overlayfs whiteout: it hides what a .wh. would.
			return u.replace(name, mknodWhiteout, hdr, false)
		}
		return fmt.Errorf("%w: layer entry %q is a device node (%d:%d); images may not carry device nodes", ErrInvalid, hdr.Name, hdr.Devmajor, hdr.Devminor)
	case tar.TypeBlock:
		return fmt.Errorf("%w: layer entry %q is a device node (%d:%d); images may not carry device nodes", ErrInvalid, hdr.Name, hdr.Devmajor, hdr.Devminor)
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("%w: layer entry %q has tar type %q, which a layer may not hold", ErrInvalid, hdr.Name, hdr.Typeflag)
}

// parents makes sure every directory from the root to dir is a real
// directory of this layer, making the missing ones (tars may omit them):
// a symlink among them would let the next entry land outside the layer.
func (u *unpacker) parents(dir string) error {
	if u.dirs[dir] {
		return nil
	}
	if parent := path.Dir(dir); parent != dir {
		if err := u.parents(parent); err != nil {
			return err
		}
	}
	p := filepath.Join(u.root, dir)
	var st unix.Stat_t
	switch err := unix.Lstat(p, &st); {
	case errors.Is(err, unix.ENOENT):
		if err := os.Mkdir(p, 0o755); err != nil { //nolint:gosec // G301: a directory of the image, made as containerd makes missing ones
			return err
		}
		if err := u.own(p, 0, 0); err != nil {
			return err
		}
	case err != nil:
		return err
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%w: layer entries below %q, which is not a directory (a symlink?) in the layer", ErrInvalid, dir)
	}
	u.dirs[dir] = true
	return nil
}

// forget drops what the unpacker knew of name and below, once it has
// replaced it.
func (u *unpacker) forget(name string) {
	prefix := name + "/"
	for d := range u.dirs {
		if d == name || strings.HasPrefix(d, prefix) {
			delete(u.dirs, d)
		}
	}
	for d, i := range u.metaOf {
		if d == name || strings.HasPrefix(d, prefix) {
			u.dirMeta[i].path = ""
			delete(u.metaOf, d)
		}
	}
}

// replace makes the entry name with mk, replacing what an earlier entry
// of the layer put there (tar semantics: the last one wins).
func (u *unpacker) replace(name string, mk func(p string) error, hdr *tar.Header, chmod bool) error {
	p := filepath.Join(u.root, name)
	err := mk(p)
	if errors.Is(err, os.ErrExist) {
		if err := removeAll(p); err != nil {
			return err
		}
		u.forget(name)
		err = mk(p)
	}
	if err != nil {
		return err
	}
	if err := u.own(p, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if chmod {
		if err := unix.Chmod(p, tarMode(hdr)); err != nil {
			return err
		}
	}
	if err := u.xattrs(p, hdr); err != nil {
		return err
	}
	return setTimes(p, hdr.ModTime)
}

func mknodWhiteout(p string) error { return unix.Mknod(p, unix.S_IFCHR, 0) }

func (u *unpacker) dir(name string, hdr *tar.Header) error {
	p := filepath.Join(u.root, name)
	if name != "." {
		err := os.Mkdir(p, 0o700)
		if errors.Is(err, os.ErrExist) {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err := os.Remove(p); err != nil {
					return err
				}
				u.forget(name)
				err = os.Mkdir(p, 0o700)
			}
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if err := u.own(p, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if err := u.xattrs(p, hdr); err != nil {
		return err
	}
	u.dirs[name] = true
	m := dirMeta{path: p, mode: tarMode(hdr), mtime: hdr.ModTime}
	if i, ok := u.metaOf[name]; ok {
		u.dirMeta[i] = m
	} else {
		u.metaOf[name] = len(u.dirMeta)
		u.dirMeta = append(u.dirMeta, m)
	}
	return nil
}

func (u *unpacker) file(name string, hdr *tar.Header, r io.Reader) error {
	if hdr.Size < 0 {
		return fmt.Errorf("%w: layer entry %q has a negative size", ErrInvalid, hdr.Name)
	}
	if err := u.budget.take(hdr.Size); err != nil {
		return err
	}
	p := filepath.Join(u.root, name)
	open := func() (*os.File, error) {
		return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	}
	f, err := open()
	if errors.Is(err, os.ErrExist) {
		if err := removeAll(p); err != nil {
			return err
		}
		u.forget(name)
		f, err = open()
	}
	if err != nil {
		return err
	}
	buf := copyBufs.Get().(*[]byte)
	_, err = io.CopyBuffer(onlyWriter{f}, io.LimitReader(r, hdr.Size), *buf)
	copyBufs.Put(buf)
	if err == nil && u.chown {
		err = f.Chown(int(hdr.Uid)+int(u.uidShift), int(hdr.Gid)+int(u.gidShift))
	}
	if err == nil {
		// After chown, which clears the setuid and setgid bits.
		err = unix.Fchmod(int(f.Fd()), tarMode(hdr))
	}
	if err == nil {
		err = u.xattrs(p, hdr)
	}
	if err == nil {
		err = setTimes(p, hdr.ModTime)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// onlyWriter hides os.File's ReadFrom, which would try copy_file_range
// and splice on a source that is neither, before falling back to the
// copy with a buffer of its own size.
type onlyWriter struct{ io.Writer }

func (u *unpacker) hardlink(name string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil || target == "." {
		return fmt.Errorf("%w: layer entry %q links to %q, outside the layer", ErrInvalid, hdr.Name, hdr.Linkname)
	}
	// The target's directories must be the layer's own, as for any entry,
	// and the target an entry of the layer already (a link cannot reach
	// a lower layer); it must not be a directory.
	if tdir := path.Dir(target); !u.dirs[tdir] {
		return fmt.Errorf("%w: layer entry %q links to %q, which is not in the layer", ErrInvalid, hdr.Name, hdr.Linkname)
	}
	tp := filepath.Join(u.root, target)
	var st unix.Stat_t
	if err := unix.Lstat(tp, &st); err != nil {
		return fmt.Errorf("%w: layer entry %q links to %q, which is not in the layer", ErrInvalid, hdr.Name, hdr.Linkname)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: layer entry %q is a hard link to the directory %q", ErrInvalid, hdr.Name, hdr.Linkname)
	}
	p := filepath.Join(u.root, name)
	link := func() error { return unix.Linkat(unix.AT_FDCWD, tp, unix.AT_FDCWD, p, 0) }
	err = link()
	if errors.Is(err, unix.EEXIST) {
		if target == name {
			return nil
		}
		if err := removeAll(p); err != nil {
			return err
		}
		u.forget(name)
		err = link()
	}
	return err
}

// whiteout turns the OCI whiteout entry name (base in dir) into what
// overlayfs reads.
func (u *unpacker) whiteout(name, dir, base string) error {
	if err := u.parents(dir); err != nil {
		return err
	}
	switch {
	case base == whiteoutOpaque:
		p := filepath.Join(u.root, dir)
		err := unix.Lsetxattr(p, opaqueXattr, []byte("y"), 0)
		if errors.Is(err, unix.EPERM) {
			err = unix.Lsetxattr(p, opaqueUserXattr, []byte("y"), 0)
		}
		return err
	case strings.HasPrefix(base, whiteoutMeta):
		return nil
	}
	hidden := strings.TrimPrefix(base, whiteoutPrefix)
	if hidden == "" || hidden == "." || hidden == ".." {
		return fmt.Errorf("%w: layer entry %q whites out nothing", ErrInvalid, name)
	}
	hdr := &tar.Header{Uid: 0, Gid: 0, ModTime: time.Unix(0, 0)}
	return u.replace(path.Join(dir, hidden), mknodWhiteout, hdr, false)
}

// own sets the owner of p (not following a symlink), shifted.
func (u *unpacker) own(p string, uid, gid int) error {
	if !u.chown {
		return nil
	}
	return os.Lchown(p, uid+int(u.uidShift), gid+int(u.gidShift))
}

// checkOwner refuses owners a shifted store cannot map.
func (u *unpacker) checkOwner(hdr *tar.Header) error {
	if hdr.Uid < 0 || hdr.Gid < 0 || (u.uidShift > 0 || u.gidShift > 0) && (hdr.Uid >= MappedIDs || hdr.Gid >= MappedIDs) {
		return fmt.Errorf("%w: layer entry %q is owned by %d:%d, outside the %d ids the user namespace maps", ErrInvalid, hdr.Name, hdr.Uid, hdr.Gid, MappedIDs)
	}
	return nil
}

// xattrs sets the entry's extended attributes but the trusted ones (a
// layer must not make its own overlayfs markers or redirects) and
// SELinux labels (the host's policy labels files).
func (u *unpacker) xattrs(p string, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || strings.HasPrefix(name, "trusted.") || name == "security.selinux" {
			continue
		}
		err := unix.Lsetxattr(p, name, []byte(v), 0)
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			continue
		}
		if err != nil {
			return fmt.Errorf("layer entry %q: xattr %s: %w", hdr.Name, name, err)
		}
	}
	return nil
}

// tarMode is the entry's permission bits with setuid, setgid and sticky.
func tarMode(hdr *tar.Header) uint32 { return uint32(hdr.Mode & 0o7777) } //nolint:gosec // G115: masked to 12 bits

// setTimes sets p's access and modification times to mtime, not following
// a symlink.
func setTimes(p string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
