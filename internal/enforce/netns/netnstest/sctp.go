package netnstest

import (
	"encoding/binary"
	"hash/crc32"
	"net"
	"net/netip"
	"time"
)

// SCTP probes are raw: the kernel need not speak SCTP (many build it as
// a module, or not at all) for its filters to match SCTP packets, nor
// for a raw socket to see them arrive.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SCTPInit is an SCTP packet holding one INIT chunk from sport to dport
// with initiate tag tag, its CRC32c checksummed as RFC 9260 asks.
func SCTPInit(sport, dport uint16, tag uint32) []byte {
	b := make([]byte, 12+20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	// Verification tag 0: an INIT's. The chunk: type 1, flags 0, length 20.
	b[12] = 1
	binary.BigEndian.PutUint16(b[14:], 20)
	binary.BigEndian.PutUint32(b[16:], tag)   // initiate tag
	binary.BigEndian.PutUint32(b[20:], 65535) // a_rwnd
	binary.BigEndian.PutUint16(b[24:], 1)     // outbound streams
	binary.BigEndian.PutUint16(b[26:], 1)     // inbound streams
	binary.BigEndian.PutUint32(b[28:], tag)   // initial TSN
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	return b
}

// sendSCTP sends an SCTP INIT to p's port and reports whether a raw
// socket at the receiver saw it arrive: one way, as the rules decide it.
func sendSCTP(p Probe, deadline time.Time) (bool, error) {
	network := "ip4:132"
	if p.To.Addr.Is6() {
		network = "ip6:132"
	}
	listen := func(ns string, a netip.Addr) (net.PacketConn, error) {
		var c net.PacketConn
		err := Do(ns, func() (err error) {
			c, err = net.ListenPacket(network, a.String())
			return err
		})
		return c, err
	}
	rx, err := listen(p.To.Namespace, p.To.Addr)
	if err != nil {
		return false, err
	}
	defer rx.Close()
	tx, err := listen(p.From.Namespace, p.From.Addr)
	if err != nil {
		return false, err
	}
	defer tx.Close()
	seq := probeSeq.Add(1)
	sport, tag := uint16(32768+seq%28000), seq|1<<31
	if _, err := tx.WriteTo(SCTPInit(sport, uint16(p.Port), tag), &net.IPAddr{IP: p.To.Addr.AsSlice()}); err != nil {
		return false, err
	}
	if err := rx.SetDeadline(deadline); err != nil {
		return false, err
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := rx.ReadFrom(buf) // IPv4's header is stripped
		if err != nil {
			return false, err
		}
		b := buf[:n]
		if n >= 20 && binary.BigEndian.Uint16(b[0:]) == sport && binary.BigEndian.Uint16(b[2:]) == uint16(p.Port) &&
			b[12] == 1 && binary.BigEndian.Uint32(b[16:]) == tag {
			return true, nil
		}
	}
}
