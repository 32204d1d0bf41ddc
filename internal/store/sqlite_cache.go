package store

import (
	"context"
	"sync"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// envCacheSize bounds the environment cache: about 1 KiB each, so a few
// MiB at most.
const envCacheSize = 8192

// envCache keeps environments read outside a transaction, encoded, so
// that the hottest read of the API (GET of one environment, and the
// authorization of every path naming one) costs no SQLite query and no
// JSON decoding.
//
// It is exact, not eventually consistent: every write of an environment
// goes through a Tx, which records the id, and the writer drops those ids
// after the batch's COMMIT (or ROLLBACK) and before any of its Updates
// returns. A read that raced the commit (it read the old row from its WAL
// snapshot) must not put that row back afterwards: each invalidation bumps
// an epoch, and a read caches its row only if the epoch has not moved
// since before it queried. Between COMMIT and the invalidation a reader
// may already see the new row in SQLite while a slower one still holds the
// old: so the writer also drops the ids before its COMMIT (begin), and no
// read is cached while a commit is in flight, or a reader could see the
// new row and then the old one from the cache.
type envCache struct {
	mu       sync.RWMutex
	envs     map[string]EnvironmentJSON
	epoch    uint64
	inflight bool
	max      int
}

func newEnvCache(max int) *envCache {
	return &envCache{envs: make(map[string]EnvironmentJSON), max: max}
}

func (c *envCache) get(id string) (e EnvironmentJSON, epoch uint64, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok = c.envs[id]
	return e, c.epoch, ok
}

// put caches e, read after get returned epoch.
func (c *envCache) put(id string, e EnvironmentJSON, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch || c.inflight {
		return // a write committed (or is committing) since the read began; e may be older
	}
	if len(c.envs) >= c.max {
		for k := range c.envs { // map order is random enough for eviction
			delete(c.envs, k)
			break
		}
	}
	c.envs[id] = e
}

// begin drops ids before their writer's COMMIT; invalidate ends it.
func (c *envCache) begin(ids []string)      { c.drop(ids, true) }
func (c *envCache) invalidate(ids []string) { c.drop(ids, false) }

// drop forgets ids and moves the epoch, with a commit in flight from
// begin to invalidate.
func (c *envCache) drop(ids []string, inflight bool) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight = inflight
	c.epoch++
	for _, id := range ids {
		delete(c.envs, id)
	}
}

// GetEnvironmentJSON reads through the cache. Inside a transaction, Tx
// reads the writer's connection instead and sees its own writes.
func (s *SQLite) GetEnvironmentJSON(ctx context.Context, id string) (EnvironmentJSON, error) {
	e, epoch, ok := s.envs.get(id)
	if ok {
		return e, nil
	}
	e, err := s.reader.GetEnvironmentJSON(ctx, id)
	if err != nil {
		return EnvironmentJSON{}, err
	}
	s.envs.put(id, e, epoch)
	return e, nil
}

// GetEnvironment reads through the cache too.
func (s *SQLite) GetEnvironment(ctx context.Context, id string) (apiv1.Environment, error) {
	e, err := s.GetEnvironmentJSON(ctx, id)
	if err != nil {
		return apiv1.Environment{}, err
	}
	return decode(environments, e.JSON)
}

// immutableCacheSize bounds an immutableCache; past it, the cache starts
// over.
const immutableCacheSize = 16384

// immutableCache keeps decoded objects of a kind that never changes
// once created (assertions have no update), by id: ids are never reused,
// so an id's object is the same whenever a query returns its row, and a
// row rolled back or deleted only leaves an entry no query returns. It
// saves decoding what every guarded write lists.
type immutableCache[T any] struct {
	mu   sync.Mutex
	objs map[string]T
	max  int
}

func newImmutableCache[T any](max int) *immutableCache[T] {
	return &immutableCache[T]{objs: map[string]T{}, max: max}
}

// decode returns id's object, decoding data only the first time.
func (c *immutableCache[T]) decode(id string, data []byte, decode func([]byte) (T, error)) (T, error) {
	if c == nil {
		return decode(data)
	}
	c.mu.Lock()
	obj, ok := c.objs[id]
	c.mu.Unlock()
	if ok {
		return obj, nil
	}
	obj, err := decode(data)
	if err != nil {
		return obj, err
	}
	c.mu.Lock()
	if len(c.objs) >= c.max {
		clear(c.objs)
	}
	c.objs[id] = obj
	c.mu.Unlock()
	return obj, nil
}
