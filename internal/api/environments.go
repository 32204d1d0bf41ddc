package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func (a *API) createEnvironment(w http.ResponseWriter, r *http.Request) error {
	return a.newEnvironment(w, r, func(e apiv1.Environment) any { return e })
}

// newEnvironment creates an environment in state pending and queues it;
// respond shapes the answer (the v1 object, or the original design's).
func (a *API) newEnvironment(w http.ResponseWriter, r *http.Request, respond func(apiv1.Environment) any) error {
	var in apiv1.EnvironmentCreate
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	now := a.now().UTC()
	env := apiv1.Environment{
		ID: control.NewID("env_"), ProjectID: in.ProjectID, Name: in.Name, Description: in.Description,
		Labels: apiv1.NormalizeLabels(in.Labels), Resources: resources(apiv1.Resources{
			CPUMillis: apiv1.DefaultCPUMillis, MemoryMB: apiv1.DefaultMemoryMB, DiskGB: apiv1.DefaultDiskGB,
		}, in.Resources),
		State: apiv1.StatePending, Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: etag(1),
		Enforcement: apiv1.Enforcement{Driver: a.driver.Name(), Generation: 1},
	}
	setTTL(&env, in.TTLSeconds, now)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		policies, err := checkEnvironmentRoom(ctx, tx, env.ProjectID)
		if err != nil {
			return nil, err
		}
		if err := tx.CreateEnvironment(ctx, env); err != nil {
			return nil, nameConflict(ctx, tx, err, "environment", env.ProjectID, env.Name)
		}
		affected, err := control.EnvironmentChangeAffectsAmong(ctx, tx, policies, nil, &env)
		if err != nil {
			return nil, err
		}
		bumped, err := control.Invalidate(ctx, tx, affected, env.ID)
		if err != nil {
			return nil, err
		}
		return &mutation{
			status: http.StatusAccepted, body: respond(env), generation: env.Generation, location: "/v1/environments/" + env.ID,
			action: "environment.create", resource: ref("environment", env.ID), projectID: env.ProjectID, after: env,
			reconcile: append(bumped, env.ID),
		}, nil
	})
}

// invalidateFor bumps the enforcement generation of every other
// environment a change to one environment touches, and returns them.
func (a *API) invalidateFor(ctx context.Context, tx store.Tx, before, after *apiv1.Environment) ([]string, error) {
	self := after
	if self == nil {
		self = before
	}
	affected, err := control.EnvironmentChangeAffects(ctx, tx, before, after)
	if err != nil {
		return nil, err
	}
	return control.Invalidate(ctx, tx, affected, self.ID)
}

func resources(r apiv1.Resources, spec *apiv1.ResourcesSpec) apiv1.Resources {
	if spec == nil {
		return r
	}
	if spec.CPUMillis != nil {
		r.CPUMillis = *spec.CPUMillis
	}
	if spec.MemoryMB != nil {
		r.MemoryMB = *spec.MemoryMB
	}
	if spec.DiskGB != nil {
		r.DiskGB = *spec.DiskGB
	}
	return r
}

// setTTL sets ttl_seconds and expires_at from now; 0 or nil removes them.
func setTTL(e *apiv1.Environment, ttl *int64, now time.Time) {
	if ttl == nil || *ttl == 0 {
		e.TTLSeconds, e.ExpiresAt = nil, nil
		return
	}
	t := *ttl
	exp := now.Add(time.Duration(t) * time.Second)
	e.TTLSeconds, e.ExpiresAt = &t, &exp
}

func (a *API) listEnvironments(w http.ResponseWriter, r *http.Request) error {
	lq, _, err := parseList(r, "limit", "cursor", "project_id", "label", "state")
	if err != nil {
		return err
	}
	return listScoped(a, w, r, lq, a.store.ListEnvironments)
}

func (a *API) getEnvironment(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	for k := range q {
		if k != "wait_for" && k != "timeout" {
			return problem.Field(problem.Validation, k, "is not a query parameter of this route")
		}
	}
	if q.Has("wait_for") || q.Has("timeout") {
		return a.waitEnvironment(w, r)
	}
	// The hottest route: the JSON the store keeps encoded, as it is.
	e := targetEnvironmentJSON(r)
	h := w.Header()
	h.Set("ETag", etag(e.Generation))
	h.Set("Content-Type", apiv1.MediaJSON)
	h.Set("Content-Length", strconv.Itoa(len(e.JSON)+1))
	w.WriteHeader(http.StatusOK)
	// Two writes: e.JSON is shared with the store's cache, so appending
	// the newline to it could write into that cache's array.
	_, _ = w.Write(e.JSON)
	_, _ = w.Write(newline)
	return nil
}

var newline = []byte{'\n'}

// targetEnvironment decodes the environment that authorize loaded for the
// path's {id}.
func targetEnvironment(r *http.Request) (apiv1.Environment, error) {
	var e apiv1.Environment
	raw := targetEnvironmentJSON(r)
	if err := json.Unmarshal(raw.JSON, &e); err != nil {
		return e, fmt.Errorf("decode environment: %w", err)
	}
	return e, nil
}

func (a *API) patchEnvironment(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.EnvironmentPatch
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	id := idFromPath(r)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		before, after, bumped, err := a.updateEnvironment(ctx, tx, r, id, in)
		if err != nil {
			return nil, err
		}
		return &mutation{
			status: http.StatusOK, body: after, generation: after.Generation,
			action: "environment.update", resource: ref("environment", id), projectID: after.ProjectID, before: before, after: after,
			reconcile: bumped,
		}, nil
	})
}

// updateEnvironment applies a patch inside tx: it checks If-Match and the
// state, bumps generation when the spec changes (state updating, unless
// the environment is still being provisioned) and re-enforces every
// environment the change touches. It returns the ids to reconcile.
func (a *API) updateEnvironment(ctx context.Context, tx store.Tx, r *http.Request, id string, in apiv1.EnvironmentPatch) (before, after apiv1.Environment, reconcileIDs []string, err error) {
	cur, err := tx.GetEnvironment(ctx, id)
	if err := writable(r, err, "environment", id, cur.Generation); err != nil {
		return cur, cur, nil, err
	}
	if apiv1.StateIsLeaving(cur.State) {
		return cur, cur, nil, problem.New(problem.State, "environment %q is %s; it cannot be changed", id, cur.State)
	}
	next := cur
	setIfPresent(&next.Name, in.Name)
	setIfPresent(&next.Description, in.Description)
	if in.Labels != nil {
		next.Labels = apiv1.NormalizeLabels(*in.Labels)
	}
	next.Resources = resources(next.Resources, in.Resources)
	now := a.now().UTC()
	if in.TTLSeconds != nil {
		setTTL(&next, in.TTLSeconds, now)
	}
	if reflect.DeepEqual(cur, next) {
		return cur, cur, nil, nil
	}
	next.Generation, next.ETag, next.UpdatedAt = nextGeneration(next.Generation, now)
	next.Enforcement.Generation++
	next.Enforcement.Enforced = false
	if next.State == apiv1.StateReady || next.State == apiv1.StateFailed || next.State == apiv1.StateUpdating {
		next.State = apiv1.StateUpdating
		next.StateMessage = ""
	}
	if err := tx.UpdateEnvironment(ctx, next); err != nil {
		return cur, cur, nil, nameConflict(ctx, tx, err, "environment", next.ProjectID, next.Name)
	}
	bumped, err := a.invalidateFor(ctx, tx, &cur, &next)
	if err != nil {
		return cur, cur, nil, err
	}
	return cur, next, append(bumped, id), nil
}

func (a *API) deleteEnvironment(w http.ResponseWriter, r *http.Request) error {
	id := idFromPath(r)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		cur, err := tx.GetEnvironment(ctx, id)
		if err := writable(r, err, "environment", id, cur.Generation); err != nil {
			return nil, err
		}
		if apiv1.StateIsLeaving(cur.State) {
			return nil, problem.New(problem.State, "environment %q is already %s", id, cur.State)
		}
		next := cur
		next.State = apiv1.StateDeleting
		next.StateMessage = ""
		next.UpdatedAt = a.now().UTC()
		if err := tx.UpdateEnvironment(ctx, next); err != nil {
			return nil, err
		}
		bumped, err := a.invalidateFor(ctx, tx, &cur, &next)
		if err != nil {
			return nil, err
		}
		return &mutation{
			status: http.StatusAccepted, body: next, generation: next.Generation,
			action: "environment.delete", resource: ref("environment", id), projectID: cur.ProjectID, before: cur, after: next,
			reconcile: append(bumped, id),
		}, nil
	})
}

func statusOf(e apiv1.Environment) apiv1.EnvironmentStatus {
	return apiv1.EnvironmentStatus{ID: e.ID, State: e.State, StateMessage: e.StateMessage, Generation: e.Generation, Enforcement: e.Enforcement}
}

func (a *API) environmentStatus(w http.ResponseWriter, r *http.Request) error {
	e, err := targetEnvironment(r)
	if err != nil {
		return err
	}
	writeObject(w, http.StatusOK, statusOf(e), e.Generation)
	return nil
}

func (a *API) effectivePolicy(w http.ResponseWriter, r *http.Request) error {
	e, err := targetEnvironment(r)
	if err != nil {
		return err
	}
	eff, err := a.effectiveWithCoverage(r, e)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, eff)
	return nil
}

// effectiveWithCoverage is e's effective policy with its CIDR peers that
// cover other projects' environments flagged, naming only those the
// caller may see.
func (a *API) effectiveWithCoverage(r *http.Request, e apiv1.Environment) (apiv1.EffectivePolicy, error) {
	eff, err := control.Effective(r.Context(), a.store, e)
	if err != nil || a.ipam == nil {
		return eff, err
	}
	p := requestInfoFrom(r.Context()).principal
	return eff, a.ipam.FlagCoverage(r.Context(), a.store, &eff, e.ProjectID, p.Sees)
}

func (a *API) checkEnvironment(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.CheckRequest
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	if in.Protocol == "" {
		in.Protocol = apiv1.ProtocolTCP
	}
	e, err := targetEnvironment(r)
	if err != nil {
		return err
	}
	notYet := problem.New(problem.State, "environment %q is %s and not provisioned yet; wait for state ready (GET /v1/environments/%s?wait_for=ready)", e.ID, e.State, e.ID)
	if e.Enforcement.Address == "" || apiv1.StateIsCreating(e.State) {
		return notYet
	}
	res, err := a.driver.Check(r.Context(), e.ID, in)
	if errors.Is(err, enforce.ErrUnknownEnvironment) {
		return notYet
	}
	if err != nil {
		return err
	}
	if res.Allowed && a.ipam != nil {
		eff, err := a.effectiveWithCoverage(r, e)
		if err != nil {
			return err
		}
		res.Warnings = policy.CheckWarnings(eff, in, res)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
