// Package ipam allocates environment addresses from the server's pool
// (Allocator), keeping its state in the store so that a freed address
// stays quarantined across restarts. The application layer (control)
// allocates and frees through it inside the transaction of the change;
// the API reads it to flag CIDR peers that cover other projects'
// environments. It imports only apiv1, policy and store.
package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// ErrPoolExhausted is returned when every address of the pool is held or
// quarantined.
var ErrPoolExhausted = errors.New("address pool exhausted")

// DefaultQuarantine is how long a freed address is kept from new
// environments: long enough for rules that named it (a CIDR pinning it,
// a peer's cached view) to be noticed and changed.
const DefaultQuarantine = 24 * time.Hour

// Allocator hands out environment addresses from one pool. Its state is in the
// store (store.Address), written in the transaction of the environment
// change that allocates or frees an address, so that nothing is reused
// after a restart that a rule may still name: a freed address stays
// quarantined for the allocator's period, and after it addresses are reused
// least recently freed first. Addresses never handed out go first, in
// order.
type Allocator struct {
	pool        netip.Prefix
	first, last netip.Addr // the usable addresses
	quarantine  time.Duration
	// excluded are never handed out (the netns driver's gateway); set
	// before the first Allocate.
	excluded map[netip.Addr]bool
	// pool6, when valid, gives every environment an IPv6 companion: its
	// prefix with the IPv4 address in the low 32 bits (the netns driver's
	// --address-pool6). Quarantining the IPv4 address quarantines it.
	pool6 netip.Prefix
}

// New parses cidr. For IPv4 pools larger than /31 the network and
// broadcast addresses are never handed out; for IPv6 the subnet-router
// anycast address (the first) is not. quarantine is how long a freed
// address waits before it is handed out again (0 means at once).
func New(cidr string, quarantine time.Duration) (*Allocator, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("address pool %q: %w", cidr, err)
	}
	if p != p.Masked() {
		return nil, fmt.Errorf("address pool %q: host bits set (did you mean %s?)", cidr, p.Masked())
	}
	if p.Addr().Is4In6() {
		return nil, fmt.Errorf("address pool %q: an IPv4-mapped IPv6 prefix; give the IPv4 prefix instead", cidr)
	}
	if quarantine < 0 {
		return nil, fmt.Errorf("address quarantine %s: must not be negative", quarantine)
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
	return &Allocator{pool: p, first: first, last: last, quarantine: quarantine, excluded: map[netip.Addr]bool{}}, nil
}

// Pool is the pool's CIDR.
func (m *Allocator) Pool() netip.Prefix { return m.pool }

// Quarantine is how long a freed address waits before it is reused.
func (m *Allocator) Quarantine() time.Duration { return m.quarantine }

// Exclude keeps a from ever being handed out. Call it before the first
// Allocate.
func (m *Allocator) Exclude(a netip.Addr) { m.excluded[a] = true }

// SetCompanionPool makes every address a also stand for its IPv6
// companion in pool6 (see Covered). Call it before the first Allocate.
func (m *Allocator) SetCompanionPool(pool6 netip.Prefix) { m.pool6 = pool6.Masked() }

// Allocate hands env an address inside tx, at now: the next never-used
// address, or else the one freed longest ago whose quarantine has passed.
// When there is none the error (ErrPoolExhausted) says how many addresses
// are quarantined, and until when.
func (m *Allocator) Allocate(ctx context.Context, tx store.Tx, env apiv1.Environment, now time.Time) (netip.Addr, error) {
	a, err := m.neverUsed(ctx, tx)
	if err == nil && !a.IsValid() {
		a, err = m.oldestFreed(ctx, tx, now)
	}
	if err != nil {
		return netip.Addr{}, err
	}
	if !a.IsValid() {
		return netip.Addr{}, m.exhausted(ctx, tx)
	}
	rec := store.Address{Addr: a, EnvironmentID: env.ID, ProjectID: env.ProjectID, AllocatedAt: now.UTC()}
	if err := tx.PutAddress(ctx, rec); err != nil {
		return netip.Addr{}, err
	}
	return a, nil
}

// neverUsed walks the pool from its cursor to the first address with no
// record, and moves the cursor past it. Every address before the cursor
// has a record or is excluded, so each is looked at once in the pool's
// life. The invalid address means none is left.
func (m *Allocator) neverUsed(ctx context.Context, tx store.Tx) (netip.Addr, error) {
	a, err := tx.GetAddressCursor(ctx, m.pool)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (a.Compare(m.first) < 0 || a.Compare(m.last) > 0)) {
		a, err = m.first, nil
	}
	if err != nil {
		return netip.Addr{}, err
	}
	start := a
	for {
		if !m.excluded[a] {
			_, err := tx.GetAddress(ctx, a)
			if errors.Is(err, store.ErrNotFound) {
				next := a
				if a != m.last {
					next = a.Next()
				}
				return a, tx.PutAddressCursor(ctx, m.pool, next)
			}
			if err != nil {
				return netip.Addr{}, err
			}
		}
		if a == m.last {
			break
		}
		a = a.Next()
	}
	if start == m.last {
		return netip.Addr{}, nil // every address has been handed out before
	}
	return netip.Addr{}, tx.PutAddressCursor(ctx, m.pool, m.last)
}

// oldestFreed is the address freed longest ago whose quarantine has
// passed at now, the invalid address when there is none. An excluded
// address found there (freed before it was excluded) is moved to the
// back of the order, so it is never handed out.
func (m *Allocator) oldestFreed(ctx context.Context, tx store.Tx, now time.Time) (netip.Addr, error) {
	for range len(m.excluded) + 1 {
		rec, err := tx.OldestFreedAddress(ctx, m.first, m.last, now.Add(-m.quarantine))
		if errors.Is(err, store.ErrNotFound) {
			return netip.Addr{}, nil
		}
		if err != nil {
			return netip.Addr{}, err
		}
		if !m.excluded[rec.Addr] {
			return rec.Addr, nil
		}
		rec.FreedAt = now.UTC()
		if err := tx.PutAddress(ctx, rec); err != nil {
			return netip.Addr{}, err
		}
	}
	return netip.Addr{}, nil
}

func (m *Allocator) exhausted(ctx context.Context, r store.Reader) error {
	u, err := r.AddressUsage(ctx, m.first, m.last)
	if err != nil {
		return err
	}
	if u.Freed == 0 {
		return fmt.Errorf("%w: every address of %s is held by an environment (%d)", ErrPoolExhausted, m.pool, u.Held)
	}
	return fmt.Errorf("%w: %s has %d addresses held by environments and %d freed ones quarantined for %s after they were freed: "+
		"the first is free again at %s, the last at %s (--address-quarantine)", ErrPoolExhausted, m.pool, u.Held, u.Freed,
		m.quarantine, u.FirstFreed.Add(m.quarantine).Format(time.RFC3339), u.LastFreed.Add(m.quarantine).Format(time.RFC3339))
}

// Release frees env's address inside tx, at now, which starts its
// quarantine. An address another environment holds is left alone; one
// with no record (handed out before records were kept) is recorded freed.
func (m *Allocator) Release(ctx context.Context, tx store.Tx, env apiv1.Environment, now time.Time) error {
	a, err := netip.ParseAddr(env.Enforcement.Address)
	if err != nil {
		return nil // never allocated
	}
	rec, err := tx.GetAddress(ctx, a)
	switch {
	case errors.Is(err, store.ErrNotFound):
		rec = store.Address{Addr: a, ProjectID: env.ProjectID, AllocatedAt: env.CreatedAt.UTC()}
	case err != nil:
		return err
	case rec.EnvironmentID != env.ID:
		return nil
	}
	rec.EnvironmentID, rec.FreedAt = "", now.UTC()
	return tx.PutAddress(ctx, rec)
}

// Adopt makes the records say that each of envs holds the address it
// has, inside tx, at now: environments are the truth, and a store written
// before addresses had records gets them here, at start. A record of
// another address held by the same environment is freed (so quarantined).
func (m *Allocator) Adopt(ctx context.Context, tx store.Tx, envs []apiv1.Environment, now time.Time) error {
	for _, e := range envs {
		a, err := netip.ParseAddr(e.Enforcement.Address)
		if err != nil {
			continue
		}
		rec, err := tx.GetAddress(ctx, a)
		if err == nil && rec.EnvironmentID == e.ID {
			continue
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		held := store.Address{Addr: a, EnvironmentID: e.ID, ProjectID: e.ProjectID, AllocatedAt: e.CreatedAt.UTC()}
		err = tx.PutAddress(ctx, held)
		if errors.Is(err, store.ErrConflict) {
			if err = m.freeHeldBy(ctx, tx, e.ID, now); err == nil {
				err = tx.PutAddress(ctx, held)
			}
		}
		if err != nil {
			return fmt.Errorf("adopt address %s of environment %s: %w", a, e.ID, err)
		}
	}
	return nil
}

// freeHeldBy frees whatever record says environment id holds it.
func (m *Allocator) freeHeldBy(ctx context.Context, tx store.Tx, id string, now time.Time) error {
	for _, all := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		recs, err := tx.ListAddresses(ctx, store.AddressQuery{First: all.Addr(), Last: lastAddr(all), EnvironmentID: id})
		if err != nil {
			return err
		}
		for _, rec := range recs {
			rec.EnvironmentID, rec.FreedAt = "", now.UTC()
			if err := tx.PutAddress(ctx, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// Holder is an environment whose address (or its IPv6 companion) a CIDR
// covers, with the address as the CIDR sees it.
type Holder struct {
	Addr          netip.Addr
	EnvironmentID string
	ProjectID     string
}

// Covered lists up to limit environments outside project whose addresses
// peer's CIDR covers, less its exceptions: IPv4 addresses, and with a
// companion pool their IPv6 companions. more reports that there may be
// others beyond limit.
func (m *Allocator) Covered(ctx context.Context, r store.Reader, peer apiv1.Peer, project string, limit int) (holders []Holder, more bool, err error) {
	cidr, err := netip.ParsePrefix(peer.CIDR)
	if err != nil {
		return nil, false, nil // not a CIDR peer
	}
	cidr = cidr.Masked()
	var except []netip.Prefix
	for _, e := range peer.Except {
		if p, err := netip.ParsePrefix(e); err == nil {
			except = append(except, p.Masked())
		}
	}
	for _, rg := range m.ranges(cidr) {
		recs, err := r.ListAddresses(ctx, store.AddressQuery{First: rg.first, Last: rg.last, HeldOnly: true, NotProject: project, Limit: limit + 1})
		if err != nil {
			return nil, false, err
		}
		more = more || len(recs) > limit
	recs:
		for _, rec := range recs {
			seen := rec.Addr
			if rg.companion {
				seen = m.companion(rec.Addr)
			}
			for _, e := range except {
				if e.Contains(seen) {
					continue recs
				}
			}
			if len(holders) == limit {
				more = true
				break
			}
			holders = append(holders, Holder{Addr: seen, EnvironmentID: rec.EnvironmentID, ProjectID: rec.ProjectID})
		}
	}
	return holders, more, nil
}

// coverageScan bounds the environments looked up per CIDR peer, so that
// a wide CIDR costs one bounded query.
const coverageScan = 100

// FlagCoverage marks the CIDR peers of eff (the effective policy of an
// environment of project) that cover environments of other projects, with
// policy.Coverage, and adds their warnings to the rules. sees tells which
// projects the caller may see named.
func (m *Allocator) FlagCoverage(ctx context.Context, r store.Reader, eff *apiv1.EffectivePolicy, project string, sees func(projectID string) bool) error {
	seen := map[string]*apiv1.CIDRCoverage{}
	for _, rules := range [][]apiv1.EffectiveRule{eff.Ingress, eff.Egress} {
		for i := range rules {
			rule := &rules[i]
			for j := range rule.Peers {
				p := &rule.Peers[j]
				if p.CIDR == "" {
					continue
				}
				key := p.CIDR + " except " + strings.Join(p.Except, ",")
				c, ok := seen[key]
				if !ok {
					holders, more, err := m.Covered(ctx, r, p.Peer, project, coverageScan)
					if err != nil {
						return err
					}
					pinned := make([]apiv1.PinnedEnvironment, len(holders))
					for k, h := range holders {
						pinned[k] = apiv1.PinnedEnvironment{ID: h.EnvironmentID, ProjectID: h.ProjectID, Address: h.Addr.String()}
					}
					c = policy.Coverage(p.CIDR, pinned, more, sees, m.quarantine)
					seen[key] = c
				}
				if c != nil {
					p.Covers = c
					rule.Warnings = append(rule.Warnings, c.Warning)
				}
			}
		}
	}
	return nil
}

type addrRange struct {
	first, last netip.Addr
	companion   bool // the records' IPv6 companions are what cidr covers
}

// ranges are the ranges of allocated addresses whose own address, or
// IPv6 companion, cidr contains.
func (m *Allocator) ranges(cidr netip.Prefix) []addrRange {
	if !m.pool6.IsValid() || cidr.Addr().Is4() {
		return []addrRange{{first: cidr.Addr(), last: lastAddr(cidr)}}
	}
	out := []addrRange{{first: cidr.Addr(), last: lastAddr(cidr)}}
	// Companions share the pool's upper 96 bits; cidr covers all of them
	// when it is as wide as that, else the IPv4 prefix in its low 32 bits.
	top := m.companion(netip.IPv4Unspecified())
	switch {
	case cidr.Bits() <= 96 && cidr.Contains(top):
		out = append(out, addrRange{first: netip.IPv4Unspecified(), last: netip.AddrFrom4([4]byte{255, 255, 255, 255}), companion: true})
	case cidr.Bits() > 96 && netip.PrefixFrom(cidr.Addr(), 96).Masked().Addr() == top:
		b := cidr.Addr().As16()
		v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte(b[12:])), cidr.Bits()-96)
		out = append(out, addrRange{first: v4.Addr(), last: lastAddr(v4), companion: true})
	}
	return out
}

// companion is a's IPv6 companion in pool6.
func (m *Allocator) companion(a netip.Addr) netip.Addr {
	b := m.pool6.Addr().As16()
	v4 := a.As4()
	copy(b[12:], v4[:])
	return netip.AddrFrom16(b)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
