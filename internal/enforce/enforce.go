// Package enforce defines how isolationd makes an environment's effective
// policy real. A Driver owns whatever the host needs for an environment
// (nothing, for simulate; a network namespace and an nftables ruleset, for
// netns) and applies rule sets atomically. The control plane allocates
// addresses and computes effective policies; drivers only enforce them.
package enforce

import (
	"context"
	"errors"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Endpoint is what a driver reports about an environment it provisioned.
type Endpoint struct {
	Address   string // the environment's address, as allocated by the control plane
	Namespace string // the kernel namespace name, when there is one
}

// Driver enforces effective policies for environments. Every method is
// idempotent: the reconciler calls them again after a crash or a failure.
type Driver interface {
	// Name is the driver's name as the API reports it ("simulate", "netns").
	Name() string
	// Provision creates what the environment needs, with everything denied,
	// and reports where it is. address is the one the control plane
	// allocated for it.
	Provision(ctx context.Context, envID, address string) (Endpoint, error)
	// Apply replaces the environment's rules with p, atomically: there is
	// never a moment with no rules or half of them.
	Apply(ctx context.Context, envID string, p apiv1.EffectivePolicy) error
	// Check answers whether the rules last applied to the environment
	// allow the packet the request describes.
	Check(ctx context.Context, envID string, req apiv1.CheckRequest) (apiv1.CheckResult, error)
	// Teardown removes everything the environment owned. Tearing down an
	// environment the driver does not know is not an error.
	Teardown(ctx context.Context, envID string) error
	// Sync is called once at start with every environment the store holds
	// (id to address): the driver adopts what it finds for them, recreates
	// what is missing, and removes what belongs to no environment in keep.
	// It carries on past an environment it cannot restore, and reports
	// that failure as an *EnvironmentError.
	Sync(ctx context.Context, keep map[string]string) error
	// Close releases the driver; kernel objects stay for the next start.
	Close() error
}

// ErrUnknownEnvironment is returned by Check for an environment the driver
// has not provisioned.
var ErrUnknownEnvironment = errors.New("environment not known to the driver")

// EnvironmentError is a driver's failure for one environment. Sync wraps
// each of its failures in one, so that the caller can name the
// environments that failed and carry on with the others.
type EnvironmentError struct {
	EnvID string
	Err   error
}

func (e *EnvironmentError) Error() string { return e.Err.Error() }
func (e *EnvironmentError) Unwrap() error { return e.Err }

// FailedEnvironments lists the environments err names through
// EnvironmentError, looking through joined and wrapped errors.
func FailedEnvironments(err error) []string {
	var ids []string
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *EnvironmentError:
			ids = append(ids, e.EnvID)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return ids
}
