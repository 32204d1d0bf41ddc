// Package simulate is the workload runtime of the simulate driver: it
// records every workload spec it is given and runs nothing, reporting
// each workload as not run. It is what isolationd uses without root.
package simulate

import (
	"context"
	"sync"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// Message is what a simulated workload reports, so that nobody mistakes
// a recorded spec for a running workload.
const Message = "the simulate driver records the workload and runs nothing: nothing is isolated on this server"

// Runtime records specs.
type Runtime struct {
	mu      sync.Mutex
	specs   map[string]workload.Spec
	changes chan string
}

// New returns an empty simulated runtime.
func New() *Runtime {
	return &Runtime{specs: map[string]workload.Spec{}, changes: make(chan string)}
}

var _ workload.Runtime = (*Runtime)(nil)

// Name reports apiv1.RuntimeSimulate.
func (*Runtime) Name() string { return apiv1.RuntimeSimulate }

// Ensure records spec.
func (r *Runtime) Ensure(_ context.Context, spec workload.Spec) (workload.Apply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.specs[spec.EnvID] = spec
	return workload.Apply{Status: status(spec)}, nil
}

// Status reports the recorded workload as not run.
func (r *Runtime) Status(_ context.Context, envID string) (workload.Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	spec, ok := r.specs[envID]
	if !ok {
		return workload.Status{}, workload.ErrUnknown
	}
	return status(spec), nil
}

func status(spec workload.Spec) workload.Status {
	return workload.Status{State: apiv1.WorkloadNotRun, ImageDigest: spec.Image.Digest, Message: Message}
}

// Spec returns the spec last recorded for envID, for tests.
func (r *Runtime) Spec(envID string) (workload.Spec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	spec, ok := r.specs[envID]
	return spec, ok
}

// Remove forgets envID.
func (r *Runtime) Remove(_ context.Context, envID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.specs, envID)
	return nil
}

// Sync forgets what is not kept (nothing survives a restart anyway).
func (r *Runtime) Sync(_ context.Context, keep map[string]bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.specs {
		if !keep[id] {
			delete(r.specs, id)
		}
	}
	return nil
}

// Changes never delivers: nothing simulated changes on its own.
func (r *Runtime) Changes() <-chan string { return r.changes }

// LogDir reports that a simulated workload has no output.
func (*Runtime) LogDir(string) (string, error) { return "", workload.ErrUnknown }

// Close does nothing; Changes stays open and silent.
func (*Runtime) Close() error { return nil }

// Exec runs nothing: the simulate runtime has no containers.
func (r *Runtime) Exec(context.Context, string, workload.ExecSpec) (workload.Exec, error) {
	return nil, workload.ErrNoExec
}
