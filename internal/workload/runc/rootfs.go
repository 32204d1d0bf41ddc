package runc

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// rootfs is a container's root filesystem as the host reads it before the
// container starts: every path resolves as if the directory were /, so an
// image's symlink (/etc/passwd -> /host/file, ../../..) never reaches a
// file of the host.
type rootfs struct{ dir *os.File }

func openRootfs(dir string) (rootfs, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	return rootfs{dir: f}, err
}

func (r rootfs) Close() error { return r.dir.Close() }

// open opens name (absolute, in the container) with flags.
func (r rootfs) open(name string, flags int) (*os.File, error) {
	fd, err := unix.Openat2(int(r.dir.Fd()), name, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC), //nolint:gosec // G115: open flags are positive
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// readFile reads at most limit bytes of name.
func (r rootfs) readFile(name string, limit int64) ([]byte, error) {
	f, err := r.open(name, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// executable reports whether name is a regular file someone may execute.
func (r rootfs) executable(name string) bool {
	f, err := r.open(name, unix.O_PATH)
	if err != nil {
		return false
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0
}

// lookPath checks that the program of a command exists in the image, as
// the init will find it: a name with a slash relative to the working
// directory, one without in PATH.
func (r rootfs) lookPath(prog, cwd, pathEnv string) error {
	if strings.Contains(prog, "/") {
		if !path.IsAbs(prog) {
			prog = path.Join(cwd, prog)
		}
		if r.executable(prog) {
			return nil
		}
		return fmt.Errorf("%q is not an executable file in the image", prog)
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = cwd
		}
		if r.executable(path.Join(dir, prog)) {
			return nil
		}
	}
	return fmt.Errorf("%q is not in the image's PATH (%s)", prog, pathEnv)
}

// maxIDFile bounds how much of /etc/passwd and /etc/group is read.
const maxIDFile = 4 << 20

// user is whom the command runs as.
type user struct {
	UID, GID uint32
	Groups   []uint32 // supplementary
	Home     string
}

// resolveUser turns an image config's User ("", "uid", "uid:gid", "name",
// "name:group") into ids from the image's /etc/passwd and /etc/group, as
// Docker does: numeric ids need neither file; a numeric user not in
// /etc/passwd gets group 0 and home /; a user found there gets its
// supplementary groups.
func (r rootfs) resolveUser(spec string) (user, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" {
		name = "0"
	}
	u := user{Home: "/"}
	passwd, _ := r.readFile("/etc/passwd", maxIDFile)
	entry, found := findEntry(passwd, name, 2)
	if uid, err := strconv.ParseUint(name, 10, 32); err == nil {
		u.UID = uint32(uid)
	} else if !found {
		return user{}, &workload.SpecError{Field: "workload.image", Message: fmt.Sprintf("the image's user %q is not in its /etc/passwd", name)}
	}
	userName := ""
	if found && len(entry) >= 6 {
		uid, err1 := strconv.ParseUint(entry[2], 10, 32)
		gid, err2 := strconv.ParseUint(entry[3], 10, 32)
		if err1 != nil || err2 != nil {
			return user{}, &workload.SpecError{Field: "workload.image", Message: fmt.Sprintf("the image's /etc/passwd has a malformed entry for %q", name)}
		}
		u.UID, u.GID, u.Home, userName = uint32(uid), uint32(gid), cmp.Or(entry[5], "/"), entry[0]
	}
	groups, _ := r.readFile("/etc/group", maxIDFile)
	if hasGroup {
		if gid, err := strconv.ParseUint(group, 10, 32); err == nil {
			u.GID = uint32(gid)
		} else if g, ok := findEntry(groups, group, 2); ok && len(g) >= 3 {
			gid, err := strconv.ParseUint(g[2], 10, 32)
			if err != nil {
				return user{}, &workload.SpecError{Field: "workload.image", Message: fmt.Sprintf("the image's /etc/group has a malformed entry for %q", group)}
			}
			u.GID = uint32(gid)
		} else {
			return user{}, &workload.SpecError{Field: "workload.image", Message: fmt.Sprintf("the image's group %q is not in its /etc/group", group)}
		}
	}
	if userName != "" {
		u.Groups = memberOf(groups, userName, u.GID)
	}
	return u, nil
}

// findEntry finds the line of a colon-separated id file whose first field
// is key, or whose field idField is key.
func findEntry(file []byte, key string, idField int) ([]string, bool) {
	var byID []string
	sc := bufio.NewScanner(bytes.NewReader(file))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if f[0] == key {
			return f, true
		}
		if byID == nil && len(f) > idField && f[idField] == key {
			byID = f
		}
	}
	return byID, byID != nil
}

// memberOf lists the groups of /etc/group that name user as a member,
// leaving out its primary group.
func memberOf(file []byte, userName string, primary uint32) []uint32 {
	var out []uint32
	sc := bufio.NewScanner(bytes.NewReader(file))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) < 4 {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(gid) == primary {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == userName {
				out = append(out, uint32(gid))
				break
			}
		}
	}
	return out
}
