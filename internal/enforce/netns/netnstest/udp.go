package netnstest

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// UDP is an IPv4 packet carrying a UDP datagram (without a checksum,
// which IPv4 allows), for sending from any source address.
func UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload))) //nolint:gosec // G115: test payloads are small
	return ip4Packet(src, dst, unix.IPPROTO_UDP, append(udp, payload...))
}
