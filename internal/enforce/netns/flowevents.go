package netns

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ctEvents is a netlink socket on which the kernel queues conntrack's
// NEW and DESTROY events of one namespace. It stays out of Go's poller
// and is drained every flowRead: the kernel queues an event without
// waking anyone, so a storm of connections costs one read per event and
// one wake-up per flowRead. A reader woken for every event (as
// ti-mo/conntrack's Listen is) cost a quarter of the connection rate on
// two cores (BenchmarkFlowLogs_ConnectionRate).
type ctEvents struct {
	fd  int
	buf []byte
}

// ctEventQueue is the socket's receive queue: the kernel doubles it, and
// root may exceed net.core.rmem_max. At a few hundred bytes an event it
// holds far more than the events of one flowRead of a storm.
const ctEventQueue = 8 << 20

// maxDrain bounds the events one drain reads; the next goes on at once.
const maxDrain = 1 << 14

func openCtEvents(ns netns.NsHandle) (*ctEvents, error) {
	var fd int
	err := inNamespace(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("conntrack events: %w", err)
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ctEventQueue)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	}
	for _, g := range []int{unix.NFNLGRP_CONNTRACK_NEW, unix.NFNLGRP_CONNTRACK_DESTROY} {
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g)
		}
	}
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("conntrack events: %w", err)
	}
	return &ctEvents{fd: fd, buf: make([]byte, 64<<10)}, nil
}

// drain hands the queued events to fn, at most maxDrain of them. It says
// whether more may be queued, and whether the queue overflowed since the
// last drain (the kernel dropped events it had no room for).
func (c *ctEvents) drain(fn func(conntrack.Event)) (more, overflowed bool, err error) {
	for range maxDrain {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return false, overflowed, nil
		case errors.Is(err, unix.ENOBUFS):
			overflowed = true
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false, overflowed, fmt.Errorf("conntrack events: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:n])
		if err != nil {
			continue // a truncated datagram: not an event
		}
		for _, m := range msgs {
			var ev conntrack.Event
			h := netlink.Header{Length: m.Header.Len, Type: netlink.HeaderType(m.Header.Type), Flags: netlink.HeaderFlags(m.Header.Flags), Sequence: m.Header.Seq, PID: m.Header.Pid}
			if ev.Unmarshal(netlink.Message{Header: h, Data: m.Data}) == nil {
				fn(ev)
			}
		}
	}
	return true, overflowed, nil
}

func (c *ctEvents) close() { _ = unix.Close(c.fd) }
