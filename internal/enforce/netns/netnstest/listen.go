package netnstest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Serve listens in the namespace on every port given, for TCP (accepting
// and closing) and UDP (echoing), on IPv4 and IPv6, until the test ends.
// ICMP echo needs no listener: the kernel answers it.
func Serve(t testing.TB, namespace string, ports []int) {
	t.Helper()
	var closers []func() error
	var wg sync.WaitGroup
	err := Do(namespace, func() error {
		for _, port := range ports {
			for _, network := range []string{"tcp4", "tcp6"} {
				l, err := net.Listen(network, fmt.Sprintf(":%d", port))
				if err != nil {
					return err
				}
				closers = append(closers, l.Close)
				wg.Go(func() { acceptLoop(l) })
			}
			for _, network := range []string{"udp4", "udp6"} {
				c, err := net.ListenPacket(network, fmt.Sprintf(":%d", port))
				if err != nil {
					return err
				}
				closers = append(closers, c.Close)
				echo, err := newEchoer(network, c)
				if err != nil {
					return err
				}
				wg.Go(echo)
			}
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range closers {
			if err := c(); err != nil {
				t.Errorf("close a listener in %s: %v", namespace, err)
			}
		}
		wg.Wait()
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", namespace, err)
	}
}

func acceptLoop(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// newEchoer returns a loop that sends every datagram back from the
// address it was sent to: a namespace answering on many addresses would
// otherwise reply from its primary one, and the prober's connected socket
// would never see the answer.
func newEchoer(network string, c net.PacketConn) (func(), error) {
	if network == "udp4" {
		pc := ipv4.NewPacketConn(c)
		if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
			return nil, err
		}
		return echoLoop(pc.ReadFrom, func(b []byte, cm *ipv4.ControlMessage, to net.Addr) {
			_, _ = pc.WriteTo(b, &ipv4.ControlMessage{Src: cm.Dst}, to)
		}), nil
	}
	pc := ipv6.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv6.FlagDst, true); err != nil {
		return nil, err
	}
	return echoLoop(pc.ReadFrom, func(b []byte, cm *ipv6.ControlMessage, to net.Addr) {
		_, _ = pc.WriteTo(b, &ipv6.ControlMessage{Src: cm.Dst}, to)
	}), nil
}

// echoLoop reads datagrams with their control messages (ipv4's or
// ipv6's) and hands each to reply, until the connection closes. A reply
// that fails is a datagram lost, which the probe that sent it reports.
func echoLoop[CM any](read func([]byte) (int, *CM, net.Addr, error), reply func([]byte, *CM, net.Addr)) func() {
	return func() {
		buf := make([]byte, 1500)
		for {
			n, cm, src, err := read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil && cm != nil {
				reply(buf[:n], cm, src)
			}
		}
	}
}
