package volume

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mount is a mount of the calling process's mount namespace.
type Mount struct {
	Point  string // where it is mounted
	FSType string
	Source string // the device, or the filesystem's own name (overlay, tmpfs)
}

// Mounts lists the mounts at or under dir, in the order they were
// mounted (so a caller unmounts them in reverse), from /proc/self/mountinfo.
func Mounts(dir string) ([]Mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []Mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			return nil, fmt.Errorf("/proc/self/mountinfo: unexpected line %q", sc.Text())
		}
		m := Mount{Point: unescape(f[4]), FSType: g[0], Source: unescape(g[1])}
		if within(m.Point, dir) {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
