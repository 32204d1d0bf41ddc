// Package simulate is the default enforcement driver: it keeps each
// environment's effective rules in memory, compiled, and answers checks
// with them. Nothing on the host changes, so it runs anywhere; the rules
// it answers from are exactly the ones a real driver would be given.
package simulate

import (
	"context"
	"sync"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
)

// Name is the driver's name as the API reports it.
const Name = "simulate"

// Driver is the simulate driver. The zero value is not ready; use New.
type Driver struct {
	mu   sync.RWMutex
	envs map[string]*env
}

type env struct {
	address string
	rules   *policy.Ruleset // nil until the first Apply: everything denied
}

var _ enforce.Driver = (*Driver)(nil)

// New returns a driver that knows no environment.
func New() *Driver { return &Driver{envs: map[string]*env{}} }

// Name implements enforce.Driver.
func (d *Driver) Name() string { return Name }

// Provision records the environment with everything denied, keeping the
// rules it already has when called again (the reconciler retries).
func (d *Driver) Provision(_ context.Context, envID, address string) (enforce.Endpoint, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.envs[envID]; ok {
		e.address = address
	} else {
		d.envs[envID] = &env{address: address}
	}
	return enforce.Endpoint{Address: address}, nil
}

// Apply replaces the environment's rules in one pointer swap, so a
// concurrent Check sees the old rules or the new ones, never a mix.
func (d *Driver) Apply(_ context.Context, envID string, p apiv1.EffectivePolicy) error {
	rules := policy.Compile(p)
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.envs[envID]
	if !ok {
		return enforce.ErrUnknownEnvironment
	}
	e.rules = rules
	return nil
}

// Check answers from the rules last applied.
func (d *Driver) Check(_ context.Context, envID string, req apiv1.CheckRequest) (apiv1.CheckResult, error) {
	d.mu.RLock()
	e, ok := d.envs[envID]
	var rules *policy.Ruleset
	if ok {
		rules = e.rules
	}
	d.mu.RUnlock()
	if !ok {
		return apiv1.CheckResult{}, enforce.ErrUnknownEnvironment
	}
	if rules == nil {
		return apiv1.CheckResult{Allowed: false}, nil
	}
	return rules.Check(req), nil
}

// Teardown forgets the environment.
func (d *Driver) Teardown(_ context.Context, envID string) error {
	d.mu.Lock()
	delete(d.envs, envID)
	d.mu.Unlock()
	return nil
}

// Sync keeps exactly the environments in keep; ones it did not know start
// with everything denied until the reconciler applies their rules.
func (d *Driver) Sync(_ context.Context, keep map[string]string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.envs {
		if _, ok := keep[id]; !ok {
			delete(d.envs, id)
		}
	}
	for id, addr := range keep {
		if e, ok := d.envs[id]; ok {
			e.address = addr
		} else {
			d.envs[id] = &env{address: addr}
		}
	}
	return nil
}

// Verify implements enforce.Driver: memory does not drift.
func (d *Driver) Verify(context.Context) ([]enforce.Drift, error) { return nil, nil }

// Close implements enforce.Driver; there is nothing to release.
func (d *Driver) Close() error { return nil }
