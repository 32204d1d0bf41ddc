package netnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// ShortConntrackTimeouts makes conntrack in namespace forget closed,
// unanswered and idle flows within a second or two: flow records of
// allowed flows are written when the kernel forgets them, and the
// defaults (two minutes of TIME_WAIT, half a minute for UDP and ICMP)
// are longer than a test wants to wait.
func ShortConntrackTimeouts(t testing.TB, namespace string) {
	t.Helper()
	err := Do(namespace, func() error {
		for _, key := range []string{
			"nf_conntrack_tcp_timeout_time_wait", "nf_conntrack_tcp_timeout_close", "nf_conntrack_tcp_timeout_close_wait",
			"nf_conntrack_tcp_timeout_fin_wait", "nf_conntrack_tcp_timeout_last_ack", "nf_conntrack_tcp_timeout_syn_sent",
			"nf_conntrack_tcp_timeout_syn_recv", "nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream", "nf_conntrack_icmp_timeout",
			"nf_conntrack_icmpv6_timeout",
		} {
			if err := os.WriteFile("/proc/sys/net/netfilter/"+key, []byte("1"), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("conntrack timeouts in %s: %v", namespace, err)
	}
}

// SendUDP sends n datagrams from from to port of to, without waiting for
// answers: an unconnected socket, which errors the rules send back (ICMP)
// do not interrupt.
func SendUDP(t testing.TB, from, to Endpoint, port, n int) {
	t.Helper()
	var c net.PacketConn
	err := Do(from.Namespace, func() error {
		var err error
		c, err = net.ListenPacket("udp", netip.AddrPortFrom(from.Addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("udp socket in %s: %v", from.Namespace, err)
	}
	defer c.Close()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr, uint16(port))) //nolint:gosec // G115: a port
	msg := []byte(strings.Repeat("x", 16))
	for i := 0; i < n; i++ {
		if _, err := c.WriteTo(msg, dst); err != nil {
			t.Fatalf("udp to %s: %v", dst, err)
		}
	}
}

// NetlinkSockets counts this process's netlink sockets of protocol
// (unix.NETLINK_*) in namespace: the kernel lists a namespace's netlink
// sockets by inode, and the process's descriptors name theirs.
func NetlinkSockets(t testing.TB, namespace string, protocol int) int {
	t.Helper()
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var table []byte
	err = Do(namespace, func() error {
		var err error
		table, err = os.ReadFile("/proc/thread-self/net/netlink")
		return err
	})
	if err != nil {
		t.Fatalf("netlink sockets of %s: %v", namespace, err)
	}
	// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
	n := 0
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == strconv.Itoa(protocol) && mine[f[9]] {
			n++
		}
	}
	return n
}

// Goroutines counts the goroutines whose stack mentions any of frames
// (a function's qualified name, or part of it).
func Goroutines(frames ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if slices.ContainsFunc(frames, func(f string) bool { return strings.Contains(g, f) }) {
			count++
		}
	}
	return count
}

// FlowKey is what a probe's flow record must say, on one line: whose,
// which way, the verdict, the protocol, the addresses and destination
// port, and the policy and rule that allowed it ("-" for none).
func FlowKey(f apiv1.Flow) string {
	rule := "-"
	if f.Rule != nil {
		rule = fmt.Sprint(*f.Rule)
	}
	return fmt.Sprintf("%s %s %s %s %s -> %s:%d %s#%s", f.EnvironmentID, f.Direction, f.Verdict, f.Protocol, f.SrcAddress, f.DstAddress, f.DstPort, f.PolicyID, rule)
}
