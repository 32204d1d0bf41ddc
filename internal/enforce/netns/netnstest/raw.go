package netnstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Raw frames, for playing a workload that is root in its namespace and
// writes whatever it likes to its interface (packet sockets, raw IP
// sockets), and packet sockets that see every frame an interface
// receives, before any filter in its namespace.

// Broadcast is the Ethernet broadcast address.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Ethernet frames a payload of type etherType.
func Ethernet(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], etherType)
	return append(f, payload...)
}

// TCPSYN is an IPv4 packet carrying a TCP SYN with sequence number seq.
func TCPSYN(src, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	s, d := src.As4(), dst.As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, unix.IPPROTO_TCP, 0, byte(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], checksum(append(pseudo, tcp...)))
	return ip4Packet(src, dst, unix.IPPROTO_TCP, tcp)
}

func ip4Packet(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	return append(h, payload...)
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ARP is an Ethernet/IPv4 ARP message (op 1 request, 2 reply) from sender
// hardware and protocol address sha, spa to tha, tpa.
func ARP(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, 28)
	copy(b, []byte{0, 1, 8, 0, 6, 4})
	binary.BigEndian.PutUint16(b[6:], op)
	s, t := spa.As4(), tpa.As4()
	copy(b[8:], sha)
	copy(b[14:], s[:])
	copy(b[18:], tha)
	copy(b[24:], t[:])
	return b
}

// SYNOf reads an Ethernet frame as an IPv4 TCP SYN: its source and
// destination addresses and sequence number.
func SYNOf(frame []byte) (src, dst netip.Addr, seq uint32, ok bool) {
	if len(frame) < 14+40 || binary.BigEndian.Uint16(frame[12:]) != unix.ETH_P_IP {
		return src, dst, 0, false
	}
	ip := frame[14:]
	hl := int(ip[0]&0x0f) * 4
	if ip[9] != unix.IPPROTO_TCP || len(ip) < hl+20 || ip[hl+13]&0x02 == 0 {
		return src, dst, 0, false
	}
	src, _ = netip.AddrFromSlice(ip[12:16])
	dst, _ = netip.AddrFromSlice(ip[16:20])
	return src, dst, binary.BigEndian.Uint32(ip[hl+4:]), true
}

// SendFrames writes frames, whole, to interface ifname in the namespace,
// through a packet socket.
func SendFrames(namespace, ifname string, frames ...[]byte) error {
	return Do(namespace, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifi.Index}
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return fmt.Errorf("packet socket on %s: %w", ifname, err)
			}
		}
		return nil
	})
}

// SendRawIP writes IPv4 packets, headers included, through a raw IP
// socket in the namespace: the kernel routes them as they are.
func SendRawIP(namespace string, packets ...[]byte) error {
	return Do(namespace, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, p := range packets {
			to := &unix.SockaddrInet4{}
			copy(to.Addr[:], p[16:20])
			if err := unix.Sendto(fd, p, 0, to); err != nil && !errors.Is(err, unix.EPERM) {
				return fmt.Errorf("raw socket: %w", err)
			}
		}
		return nil
	})
}

// Capture is a packet socket on one interface of a namespace, keeping
// every frame the interface receives (up to a bound), until the test ends.
type Capture struct {
	mu     sync.Mutex
	frames [][]byte
	more   chan struct{} // closed and replaced on every frame
}

// maxCaptured bounds what a Capture keeps.
const maxCaptured = 100000

// NewCapture starts capturing what ifname in the namespace receives.
func NewCapture(t testing.TB, namespace, ifname string) *Capture {
	t.Helper()
	var f *os.File
	err := Do(namespace, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), "capture")
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s in %s: %v", ifname, namespace, err)
	}
	c := &Capture{more: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			c.mu.Lock()
			if len(c.frames) < maxCaptured {
				c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
			}
			close(c.more)
			c.more = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		f.Close()
		<-done
	})
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Count is how many captured frames match.
func (c *Capture) Count(match func([]byte) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range c.frames {
		if match(f) {
			n++
		}
	}
	return n
}

// WaitFor waits until at least n captured frames match, or timeout.
func (c *Capture) WaitFor(n int, match func([]byte) bool, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		more := c.more
		c.mu.Unlock()
		got := c.Count(match)
		if got >= n {
			return nil
		}
		select {
		case <-more:
		case <-deadline.C:
			return fmt.Errorf("%d of %d frames after %v", got, n, timeout)
		}
	}
}
