package netnstest

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Sockets lists, sorted, the sockets of the named namespace bound to
// port (TCP listening, UDP bound) as "tcp 198.18.0.1:53", from the
// kernel's tables of that namespace.
func Sockets(namespace string, port uint16) ([]string, error) {
	var out []string
	suffix := fmt.Sprintf(":%04X", port)
	err := Do(namespace, func() error {
		for _, f := range []string{"tcp", "tcp6", "udp", "udp6"} {
			// thread-self: the tables of the namespace this thread is in.
			data, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(data), "\n")[1:] {
				fields := strings.Fields(line)
				if len(fields) < 4 || !strings.HasSuffix(fields[1], suffix) || (strings.HasPrefix(f, "tcp") && fields[3] != "0A") { // 0A: LISTEN
					continue
				}
				out = append(out, strings.TrimSuffix(f, "6")+" "+procAddr(fields[1]))
			}
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// procAddr reads /proc/net's "hex address:hex port" (the address in
// host-order 32-bit words).
func procAddr(s string) string {
	hexAddr, hexPort, _ := strings.Cut(s, ":")
	b, _ := hex.DecodeString(hexAddr)
	for i := 0; i+4 <= len(b); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(b[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	port, _ := strconv.ParseUint(hexPort, 16, 16)
	return netip.AddrPortFrom(a, uint16(port)).String()
}
