package reconcile

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// ErrPoolExhausted is returned when every address of the pool is taken.
var ErrPoolExhausted = errors.New("address pool exhausted")

// IPAM hands out environment addresses from one pool. It lives in memory;
// the addresses themselves are stored with the environments and the
// reconciler rebuilds the IPAM from the store at start (Reserve).
type IPAM struct {
	mu     sync.Mutex
	pool   netip.Prefix
	first  netip.Addr // first usable address
	last   netip.Addr // last usable address
	next   netip.Addr // where the next search starts, so freed addresses are not reused at once
	owners map[netip.Addr]string
	byID   map[string]netip.Addr
}

// NewIPAM parses cidr. For IPv4 pools larger than /31 the network and
// broadcast addresses are never handed out; for IPv6 the subnet-router
// anycast address (the first) is not.
func NewIPAM(cidr string) (*IPAM, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("address pool %q: %w", cidr, err)
	}
	if p != p.Masked() {
		return nil, fmt.Errorf("address pool %q: host bits set (did you mean %s?)", cidr, p.Masked())
	}
	first := p.Addr()
	last := lastAddr(p)
	bits := p.Addr().BitLen()
	if bits-p.Bits() >= 2 {
		first = first.Next()
		if p.Addr().Is4() {
			last = last.Prev()
		}
	}
	return &IPAM{pool: p, first: first, last: last, next: first, owners: map[netip.Addr]string{}, byID: map[string]netip.Addr{}}, nil
}

// Pool is the pool's CIDR.
func (m *IPAM) Pool() netip.Prefix { return m.pool }

// Allocate returns a free address for id (its existing one, if it has one).
func (m *IPAM) Allocate(id string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.byID[id]; ok {
		return a.String(), nil
	}
	a := m.next
	for {
		if _, taken := m.owners[a]; !taken {
			m.owners[a] = id
			m.byID[id] = a
			m.next = m.step(a)
			return a.String(), nil
		}
		a = m.step(a)
		if a == m.next {
			return "", fmt.Errorf("%w: every address of %s is in use", ErrPoolExhausted, m.pool)
		}
	}
}

// Reserve records that id holds addr (from the store, at start). An address
// outside the pool is ignored: it was allocated under another pool setting
// and is kept by its environment.
func (m *IPAM) Reserve(id, addr string) {
	a, err := netip.ParseAddr(addr)
	if err != nil || !m.pool.Contains(a) {
		return
	}
	m.mu.Lock()
	m.owners[a] = id
	m.byID[id] = a
	m.mu.Unlock()
}

// Release frees addr if id holds it.
func (m *IPAM) Release(id, addr string) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return
	}
	m.mu.Lock()
	if m.owners[a] == id {
		delete(m.owners, a)
		delete(m.byID, id)
	}
	m.mu.Unlock()
}

// step is the address after a, wrapping from last to first.
func (m *IPAM) step(a netip.Addr) netip.Addr {
	if a == m.last {
		return m.first
	}
	return a.Next()
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
