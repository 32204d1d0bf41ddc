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
	// Nameservers are the addresses of the environment's resolvers, when
	// the driver runs them (the netns driver's DNS proxy); a runtime
	// writes them into the workload's /etc/resolv.conf.
	Nameservers []string
}

// NameResolver is implemented by drivers whose resolver allows the
// addresses of names (fqdn peers): what an environment resolved, for the
// effective policy.
type NameResolver interface {
	// ResolvedNames lists the names matching pattern (an fqdn peer) that
	// envID resolved and whose addresses its rules allow now.
	ResolvedNames(ctx context.Context, envID, pattern string) []apiv1.ResolvedName
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
	// Verify compares what the kernel holds for every environment the
	// driver provisioned with what it put there, and reports the ones that
	// changed behind its back. It must be cheap: the reconciler calls it
	// every second. A drifted environment is repaired by Provision, then
	// Apply, as after a restart.
	Verify(ctx context.Context) ([]Drift, error)
	// Close releases the driver; kernel objects stay for the next start.
	Close() error
}

// Drift is an environment whose kernel objects changed outside the
// driver: Reason names what drifted, for the API and the audit trail
// ("namespace deleted outside isolationd"), and Recreated says its
// namespace is new, so whatever ran in the old one must start again.
type Drift struct {
	EnvID     string
	Reason    string
	Recreated bool
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
