package replicatest

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds one attempt to reach a backend: on loopback a live
// one answers at once, and a dead one refuses at once.
const dialTimeout = 2 * time.Second

// FrontEnd is a round-robin TCP load balancer on loopback: each connection
// it accepts goes to the next backend, in turn, and a backend that refuses
// a connection is skipped from then on (a replica killed does not come
// back on the same port). It forwards bytes both ways and knows nothing of
// HTTP, so a client's keep-alive connection stays with one replica, as it
// would behind a real TCP balancer.
type FrontEnd struct {
	ln net.Listener

	mu       sync.Mutex
	backends []*backend
	next     int
	conns    map[net.Conn]struct{}
	closed   bool

	wg sync.WaitGroup
}

type backend struct {
	addr  string
	down  bool
	conns int // connections forwarded to it
}

// NewFrontEnd listens on a free loopback port and forwards to addrs
// (host:port), in this order.
func NewFrontEnd(addrs ...string) (*FrontEnd, error) {
	if len(addrs) == 0 {
		return nil, errors.New("front end: no backend")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &FrontEnd{ln: ln, conns: map[net.Conn]struct{}{}}
	for _, a := range addrs {
		f.backends = append(f.backends, &backend{addr: a})
	}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// URL is the front end's base URL, for clients of the API.
func (f *FrontEnd) URL() string { return "http://" + f.ln.Addr().String() }

// Backend is what the front end knows of one backend.
type Backend struct {
	Addr      string
	Down      bool // it refused a connection, and is skipped from then on
	Forwarded int  // connections given to it
}

// Backends are the backends, in the order of NewFrontEnd's addresses.
func (f *FrontEnd) Backends() []Backend {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Backend, len(f.backends))
	for i, b := range f.backends {
		out[i] = Backend{Addr: b.addr, Down: b.down, Forwarded: b.conns}
	}
	return out
}

// Close stops accepting, cuts every forwarded connection and waits for
// the goroutines to end.
func (f *FrontEnd) Close() error {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	err := f.ln.Close()
	f.wg.Wait()
	return err
}

func (f *FrontEnd) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.forward(c)
		}()
	}
}

// forward connects c to the next live backend and copies both ways until
// either side is done; with no backend left, c is closed unanswered.
func (f *FrontEnd) forward(c net.Conn) {
	defer c.Close()
	b := f.dial()
	if b == nil {
		return
	}
	if !f.track(b) {
		b.Close()
		return
	}
	defer f.untrack(b)
	defer b.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close, so that the other direction can finish its answer.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
}

// dial tries each backend once, starting with the one whose turn it is,
// and marks down those that refuse.
func (f *FrontEnd) dial() net.Conn {
	f.mu.Lock()
	n := len(f.backends)
	start := f.next
	f.next = (f.next + 1) % n
	f.mu.Unlock()
	for i := range n {
		f.mu.Lock()
		b := f.backends[(start+i)%n]
		down := b.down
		f.mu.Unlock()
		if down {
			continue
		}
		conn, err := net.DialTimeout("tcp", b.addr, dialTimeout)
		f.mu.Lock()
		if err != nil {
			b.down = true
		} else {
			b.conns++
		}
		f.mu.Unlock()
		if err == nil {
			return conn
		}
	}
	return nil
}

func (f *FrontEnd) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *FrontEnd) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}
