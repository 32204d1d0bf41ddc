package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"

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

// newEnvironment creates an environment (provisioned asynchronously);
// respond shapes the answer (the v1 object, or the original design's).
func (a *API) newEnvironment(w http.ResponseWriter, r *http.Request, respond func(apiv1.Environment) any) error {
	var in apiv1.EnvironmentCreate
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	return commit(a, w, r, http.StatusAccepted, func(c control.Call) (apiv1.Environment, error) {
		return a.control.CreateEnvironment(r.Context(), c, in)
	}, func(e apiv1.Environment) answer {
		return answer{body: respond(e), generation: e.Generation, location: "/v1/environments/" + e.ID, resourceID: e.ID}
	})
}

// environmentAnswer answers a change of an environment with the object.
func environmentAnswer(e apiv1.Environment) answer {
	return answer{body: e, generation: e.Generation, resourceID: e.ID}
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
	h.Set("ETag", apiv1.ETag(e.Generation))
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
	return commit(a, w, r, http.StatusOK, func(c control.Call) (apiv1.Environment, error) {
		return a.control.PatchEnvironment(r.Context(), c, idFromPath(r), in)
	}, environmentAnswer)
}

func (a *API) deleteEnvironment(w http.ResponseWriter, r *http.Request) error {
	return commit(a, w, r, http.StatusAccepted, func(c control.Call) (apiv1.Environment, error) {
		return a.control.DeleteEnvironment(r.Context(), c, idFromPath(r))
	}, environmentAnswer)
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
	a.resolvedNames(r, e.ID, &eff)
	writeJSON(w, http.StatusOK, eff)
	return nil
}

// resolvedNames fills each fqdn peer's Names with what the environment
// resolved and may reach now, when the driver resolves names.
func (a *API) resolvedNames(r *http.Request, envID string, eff *apiv1.EffectivePolicy) {
	nr, ok := a.driver.(enforce.NameResolver)
	if !ok {
		return
	}
	for i := range eff.Egress {
		for j, p := range eff.Egress[i].Peers {
			if p.FQDN != "" {
				eff.Egress[i].Peers[j].Names = nr.ResolvedNames(r.Context(), envID, p.FQDN)
			}
		}
	}
}

// effectiveWithCoverage is e's effective policy as the caller may read
// it: selector peers of projects it cannot read only counted, and CIDR
// peers that cover other projects' environments flagged, naming only
// those the caller may see.
func (a *API) effectiveWithCoverage(r *http.Request, e apiv1.Environment) (apiv1.EffectivePolicy, error) {
	eff, err := control.Effective(r.Context(), a.store, e)
	if err != nil {
		return eff, err
	}
	p := requestInfoFrom(r.Context()).principal
	eff = policy.Redact(eff, p.Sees)
	if a.ipam == nil {
		return eff, nil
	}
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
	if err := a.notEnforcedHere(r.Context()); err != nil {
		return err
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
		res.Warnings = append(res.Warnings, policy.CheckWarnings(eff, in, res)...)
	}
	if err := a.peerVerdict(r, e, in, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// peerVerdict adds to an allowed answer that the other end, when it is
// an environment the caller may read, refuses the packet in its own
// direction: a connection needs both ends' allow. An end the caller may
// not read is not looked at, so the answer says nothing about it.
func (a *API) peerVerdict(r *http.Request, e apiv1.Environment, in apiv1.CheckRequest, res *apiv1.CheckResult) error {
	addr, err := netip.ParseAddr(in.Address)
	if !res.Allowed || err != nil {
		return nil
	}
	held, err := a.store.GetAddress(r.Context(), addr.Unmap())
	if errors.Is(err, store.ErrNotFound) || (err == nil && (!held.Held() || held.EnvironmentID == e.ID)) {
		return nil
	}
	if err != nil {
		return err
	}
	peer, err := a.store.GetEnvironment(r.Context(), held.EnvironmentID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !requestInfoFrom(r.Context()).principal.Sees(peer.ProjectID)) {
		return nil
	}
	if err != nil {
		return err
	}
	back := apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: in.Protocol, Address: e.Enforcement.Address, Port: in.Port}
	side := "ingress"
	if in.Direction == apiv1.Ingress {
		back.Direction, side = apiv1.Egress, "egress"
	}
	verdict, err := a.driver.Check(r.Context(), peer.ID, back)
	if errors.Is(err, enforce.ErrUnknownEnvironment) {
		return nil // the peer is not provisioned: nothing to say yet
	}
	if err != nil || verdict.Allowed {
		return err
	}
	res.Reason += fmt.Sprintf("; but the peer's own %s denies it (environment %s: %s)", side, peer.Name, verdict.Reason)
	return nil
}
