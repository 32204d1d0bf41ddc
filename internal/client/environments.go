package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// maxWaitPoll is the longest single long poll the client asks the server
// to hold; longer waits are several polls.
const maxWaitPoll = 30 * time.Second

// stateDeleted is the pseudo-state wait_for=deleted waits for: the
// environment is gone (404).
const stateDeleted = "deleted"

// Environments is the /v1/environments API.
type Environments struct{ collection[apiv1.Environment] }

// Environments returns the environments API.
func (c *Client) Environments() *Environments {
	return &Environments{collection[apiv1.Environment]{c, "/v1/environments"}}
}

// Create asks for an environment and returns it in state pending; use
// WaitFor to wait until it is ready. The request carries an
// Idempotency-Key, so a retried create never makes a duplicate.
func (e *Environments) Create(ctx context.Context, in apiv1.EnvironmentCreate) (*apiv1.Environment, error) {
	return e.create(ctx, in)
}

// Get returns an environment; IsNotFound(err) when it does not exist.
func (e *Environments) Get(ctx context.Context, id string) (*apiv1.Environment, error) {
	return e.get(ctx, id)
}

// List returns every environment matching opts, following all pages.
func (e *Environments) List(ctx context.Context, opts ListOptions) ([]apiv1.Environment, error) {
	return e.list(ctx, opts)
}

// Update replaces the fields present in patch (TTLSeconds 0 removes the
// TTL; Workload apiv1.Some replaces the workload whole, apiv1.Null removes
// it, and the zero Nullable keeps it). With ifMatch set, it fails with a 412 (IsPreconditionFailed) when
// the environment changed since that ETag was read.
func (e *Environments) Update(ctx context.Context, id string, patch apiv1.EnvironmentPatch, ifMatch string) (*apiv1.Environment, error) {
	return e.update(ctx, id, patch, ifMatch)
}

// Delete starts deleting an environment; use WaitDeleted to wait until it is gone.
func (e *Environments) Delete(ctx context.Context, id, ifMatch string) error {
	return e.delete(ctx, id, ifMatch)
}

// Status returns the lifecycle and enforcement status of an environment.
func (e *Environments) Status(ctx context.Context, id string) (*apiv1.EnvironmentStatus, error) {
	return call[apiv1.EnvironmentStatus](ctx, e.c, request{method: http.MethodGet, path: e.item(id) + "/status"})
}

// EffectivePolicy returns the policies that select an environment and the
// merged allow rules.
func (e *Environments) EffectivePolicy(ctx context.Context, id string) (*apiv1.EffectivePolicy, error) {
	return call[apiv1.EffectivePolicy](ctx, e.c, request{method: http.MethodGet, path: e.item(id) + "/effective-policy"})
}

// Check asks whether a packet would be allowed, and by which rule.
func (e *Environments) Check(ctx context.Context, id string, in apiv1.CheckRequest) (*apiv1.CheckResult, error) {
	return call[apiv1.CheckResult](ctx, e.c, request{method: http.MethodPost, path: e.item(id) + "/check", body: in})
}

// StateError says an environment settled in a state other than the one
// waited for, typically failed; Environment holds it as last seen, with the
// server's state_message.
type StateError struct {
	Environment *apiv1.Environment
	Want        []string
}

func (e *StateError) Error() string {
	msg := fmt.Sprintf("environment %s is %s, not %s", e.Environment.ID, e.Environment.State, strings.Join(e.Want, " or "))
	if e.Environment.StateMessage != "" {
		msg += ": " + e.Environment.StateMessage
	}
	return msg
}

// WaitFor blocks until the environment reaches one of states and returns
// it. It rides the server's long poll (wait_for), so it learns of the change
// as it happens and never sleeps; ctx's deadline bounds the whole wait.
// When the environment settles elsewhere (failed), it returns the
// environment and a *StateError carrying the server's message.
func (e *Environments) WaitFor(ctx context.Context, id string, states ...string) (*apiv1.Environment, error) {
	if len(states) == 0 {
		return nil, errors.New("WaitFor needs at least one state")
	}
	var last *apiv1.Environment
	for {
		env, timedOut, err := e.poll(ctx, id, states)
		if err != nil {
			return last, waitError(ctx, err, id, states, last)
		}
		last = env
		if slices.Contains(states, env.State) {
			return env, nil
		}
		if !timedOut {
			// The server answered before its timeout without reaching the
			// state: the environment settled elsewhere (failed).
			return env, &StateError{Environment: env, Want: states}
		}
	}
}

// WaitDeleted blocks until the environment is gone (404, or 410 when its
// TTL removed it), riding the server's long poll; ctx's deadline bounds
// the wait.
func (e *Environments) WaitDeleted(ctx context.Context, id string) error {
	want := []string{stateDeleted}
	var last *apiv1.Environment
	for {
		env, timedOut, err := e.poll(ctx, id, want)
		if IsGone(err) {
			return nil
		}
		if err != nil {
			return waitError(ctx, err, id, want, last)
		}
		last = env
		if !timedOut {
			return &StateError{Environment: env, Want: want}
		}
	}
}

// poll is one long poll: GET the environment, asking the server to hold
// the answer until it reaches states or the poll times out.
func (e *Environments) poll(ctx context.Context, id string, states []string) (env *apiv1.Environment, timedOut bool, err error) {
	wait := maxWaitPoll
	if deadline, ok := ctx.Deadline(); ok {
		// Leave the server a tenth of the time to answer before our own
		// deadline, so the last poll ends with the latest state rather than
		// a cancelled request.
		remaining := time.Until(deadline)
		wait = min(wait, remaining-remaining/10)
		if wait < 10*time.Millisecond {
			wait = max(remaining, time.Millisecond)
		}
	}
	q := url.Values{}
	q.Set("wait_for", strings.Join(states, ","))
	q.Set("timeout", wait.Round(time.Millisecond).String())
	out := new(apiv1.Environment)
	meta, err := e.c.do(ctx, request{method: http.MethodGet, path: e.item(id), query: q, extraTimeout: wait}, out)
	if err != nil {
		return nil, false, err
	}
	if ctx.Err() != nil {
		return nil, false, ctx.Err()
	}
	fillETag(out, meta.Header.Get("ETag"))
	return out, strings.EqualFold(meta.Header.Get("X-Wait-Timeout"), "true"), nil
}

// waitError explains a wait that ended without reaching its state, with
// the last state seen when the deadline passed.
func waitError(ctx context.Context, err error, id string, want []string, last *apiv1.Environment) error {
	if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return err
	}
	seen := "unknown"
	if last != nil {
		seen = last.State
	}
	return fmt.Errorf("timed out waiting for environment %s to be %s (last state %s): %w", id, strings.Join(want, " or "), seen, err)
}
