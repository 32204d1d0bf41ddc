package reconcile

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// runWorkload brings env's workload to its spec once its rules are
// applied: it resolves the image, then has the runtime start, adopt,
// update or restart the container, or remove it when the spec has none.
// It returns what the runtime observed, or the pass's outcome when the
// step failed (retried, or the environment failed for a spec error).
func (r *Reconciler) runWorkload(p pass, env apiv1.Environment, ep enforce.Endpoint) (*control.Observed, string) {
	rt := r.opts.Runtime
	if rt == nil {
		return nil, ""
	}
	key := startedKey(env)
	if env.State == apiv1.StateReady && !p.restart && r.startedKey(env.ID) == key {
		return nil, "" // only the rules changed
	}
	if env.Workload == nil {
		// Only a workload this process started can be left to remove: at
		// start, Sync removed every container of an environment without one.
		if r.startedKey(env.ID) != "" {
			if err := rt.Remove(p.ctx, env.ID); err != nil {
				return nil, r.enforceFailed(p, env, "removing the workload", err)
			}
		}
		r.setStarted(env.ID, key)
		return nil, ""
	}
	spec := workload.Spec{
		EnvID: env.ID, Hostname: env.Name, Namespace: ep.Namespace, Nameservers: ep.Nameservers,
		Workload: env.Workload.WorkloadSpec, Resources: env.Resources,
	}
	if r.opts.Images != nil {
		r.progress(p, env, "preparing image "+env.Workload.Image+" (pulled and unpacked when it is not yet)")
		img, err := r.opts.Images.Resolve(p.ctx, env.Workload.Image)
		if errors.Is(err, image.ErrUnknown) || errors.Is(err, image.ErrInvalid) {
			return nil, r.specFailed(p, env, &workload.SpecError{Field: "workload.image", Message: err.Error()})
		}
		if err != nil {
			return nil, r.enforceFailed(p, env, "resolving image "+env.Workload.Image, err)
		}
		spec.Image = img
	}
	r.progress(p, env, "creating and starting the workload's container")
	applied, err := rt.Ensure(p.ctx, spec)
	var se *workload.SpecError
	if errors.As(err, &se) {
		return nil, r.specFailed(p, env, se)
	}
	if err != nil {
		return nil, r.enforceFailed(p, env, "starting the workload", err)
	}
	if applied.Restarted {
		p.log.Info("workload restarted", "image_digest", applied.Status.ImageDigest)
	}
	r.setStarted(env.ID, key)
	o := observed(applied.Status)
	return &o, ""
}

// specFailed fails env for a fault of its workload spec, which no retry
// fixes. An environment being created keeps nothing of its workload; one
// that was changed keeps its home volume for the change that fixes it.
func (r *Reconciler) specFailed(p pass, env apiv1.Environment, se *workload.SpecError) string {
	if apiv1.StateIsCreating(env.State) {
		if err := r.opts.Runtime.Remove(p.ctx, env.ID); err != nil {
			return r.retry(p, env.ID, "remove failed workload", err)
		}
	}
	return r.fail(p, env.ID, se.Error())
}

// progress records the step an environment being brought up is in.
func (r *Reconciler) progress(p pass, env apiv1.Environment, msg string) {
	if !apiv1.StateIsTransient(env.State) {
		return
	}
	if err := r.ctl.Progress(p.ctx, p.cause.requestID, env.ID, msg); err != nil && p.ctx.Err() == nil {
		p.log.Warn("record progress", "error", err.Error())
	}
}

// watchWorkloads records what the runtime sees happen to workloads on
// their own (exits, restarts, OOM kills), and has the environment's next
// pass start a workload whose container is gone.
func (r *Reconciler) watchWorkloads(ctx context.Context, changes <-chan string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.stopTimer:
			return
		case id, ok := <-changes:
			if !ok {
				return
			}
			r.observe(ctx, id)
		}
	}
}

func (r *Reconciler) observe(ctx context.Context, id string) {
	env, err := r.opts.Store.GetEnvironment(ctx, id)
	if err != nil || env.Workload == nil || env.State != apiv1.StateReady {
		return // its own pass records the workload
	}
	st, err := r.opts.Runtime.Status(ctx, id)
	log := r.log.With("environment_id", id)
	if err != nil && !errors.Is(err, workload.ErrUnknown) {
		log.Warn("read workload status", "error", err.Error())
		return
	}
	if err != nil || st.Pid == 0 {
		// The container is gone or its init died: start it again.
		r.mu.Lock()
		r.ensure[id] = true
		r.mu.Unlock()
		r.queue.add("", id)
		if err != nil {
			return
		}
	}
	if err := r.ctl.WorkloadObserved(ctx, control.NewID("rec_"), id, observed(st)); err != nil && ctx.Err() == nil {
		log.Warn("record workload status", "error", err.Error())
	}
}

// startedKey is what of env, when it changes, the runtime must be given.
func startedKey(env apiv1.Environment) string {
	b, _ := json.Marshal(struct {
		W *apiv1.WorkloadSpec
		R apiv1.Resources
		N string
	}{workloadSpec(env), env.Resources, env.Enforcement.Namespace})
	return string(b)
}

func workloadSpec(env apiv1.Environment) *apiv1.WorkloadSpec {
	if env.Workload == nil {
		return nil
	}
	return &env.Workload.WorkloadSpec
}

func (r *Reconciler) startedKey(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.brought[id]
}

func (r *Reconciler) setStarted(id, key string) {
	r.mu.Lock()
	r.brought[id] = key
	r.mu.Unlock()
}

func observed(st workload.Status) control.Observed {
	return control.Observed{
		State: st.State, ExitCode: st.ExitCode, RestartCount: st.RestartCount, StartedAt: st.StartedAt,
		ImageDigest: st.ImageDigest, Message: st.Message,
	}
}
