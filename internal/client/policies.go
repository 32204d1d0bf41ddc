package client

import (
	"context"
	"fmt"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// waitEnforced is the wait_for condition "the environment's current rules
// are applied".
const waitEnforced = "enforced"

// Policies is the /v1/policies API.
type Policies struct{ collection[apiv1.Policy] }

// Policies returns the policies API.
func (c *Client) Policies() *Policies {
	return &Policies{collection[apiv1.Policy]{c, "/v1/policies"}}
}

// Create creates a policy. The request carries an Idempotency-Key, so a
// retry after a lost answer returns the same policy instead of a duplicate.
func (p *Policies) Create(ctx context.Context, in apiv1.PolicyCreate) (*apiv1.Policy, error) {
	return p.create(ctx, in)
}

// Get returns a policy; IsNotFound(err) when it does not exist.
func (p *Policies) Get(ctx context.Context, id string) (*apiv1.Policy, error) {
	return p.get(ctx, id)
}

// List returns every policy matching opts (project and labels of the
// selected environments are the server's filters), following all pages.
func (p *Policies) List(ctx context.Context, opts ListOptions) ([]apiv1.Policy, error) {
	return p.list(ctx, opts)
}

// Update replaces the fields present in patch, whole (rule lists included).
// With ifMatch set, it fails with a 412 (IsPreconditionFailed) when the
// policy changed since that ETag was read.
func (p *Policies) Update(ctx context.Context, id string, patch apiv1.PolicyPatch, ifMatch string) (*apiv1.Policy, error) {
	return p.update(ctx, id, patch, ifMatch)
}

// Delete deletes a policy. With ifMatch set, it fails with a 412 when the
// policy changed since that ETag was read.
func (p *Policies) Delete(ctx context.Context, id, ifMatch string) error {
	return p.delete(ctx, id, ifMatch)
}

// WaitEnforced blocks until every environment of the project has applied
// its current rules. A policy write bumps the enforcement generation of
// the environments it affects in the same transaction, so once the write
// has returned, this wait ends only when the change is in force
// everywhere. It lists the project once and long-polls (wait_for=enforced)
// only the environments not yet enforced, so it never sleeps; an
// environment that failed or is gone is not waited for. ctx's deadline
// bounds the wait.
func (p *Policies) WaitEnforced(ctx context.Context, projectID string) error {
	envs, err := p.c.Environments().List(ctx, ListOptions{ProjectID: projectID})
	if err != nil {
		return err
	}
	for _, env := range envs {
		for !settled(&env) {
			next, timedOut, err := p.c.Environments().poll(ctx, env.ID, []string{waitEnforced})
			if IsNotFound(err) {
				break
			}
			if err != nil {
				return fmt.Errorf("waiting for environment %s to enforce its rules (last seen: %s): %w", env.ID, enforcementState(&env), err)
			}
			env = *next
			if !timedOut && !settled(&env) {
				return fmt.Errorf("environment %s stopped short of enforcing its rules: %s", env.ID, enforcementState(&env))
			}
		}
	}
	return nil
}

// settled reports whether an environment needs no more waiting: its rules
// are applied, or it failed or is on its way out, where waiting cannot help.
func settled(e *apiv1.Environment) bool {
	switch e.State {
	case apiv1.StateFailed, apiv1.StateDeleting, apiv1.StateExpired:
		return true
	}
	return e.Enforcement.Enforced && e.Enforcement.ObservedGeneration == e.Enforcement.Generation
}

func enforcementState(e *apiv1.Environment) string {
	s := fmt.Sprintf("state %s, enforcement generation %d observed %d", e.State, e.Enforcement.Generation, e.Enforcement.ObservedGeneration)
	if e.Enforcement.Message != "" {
		s += ": " + e.Enforcement.Message
	}
	return s
}
