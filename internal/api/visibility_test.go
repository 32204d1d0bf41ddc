package api_test

import (
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// TestVisibility_CrossProjectPeersAreCountedNotNamedToCallersWhoCannotReadThem:
// a policy of project ci lets project shared's environments in by
// project_selector. A viewer of ci reads the peer as a count, never its
// name, id or address, in the effective policy and in check; the admin
// and a viewer of both read it named.
func TestVisibility_CrossProjectPeersAreCountedNotNamedToCallersWhoCannotReadThem(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ci, shared := h.project("ci"), h.project("shared")
	h.do("PATCH", "/v1/projects/"+shared.ID, map[string]any{"labels": map[string]string{"team": "shared"}}).json(t, 200, nil)
	runner, _ := h.wait(h.environment(ci.ID, "runner", nil).ID, "ready")
	cache, _ := h.wait(h.environment(shared.ID, "build-cache", nil).ID, "ready")
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: ci.ID, PolicySpec: apiv1.PolicySpec{
		Name: "from-shared", PolicyTypes: []string{"ingress"},
		Ingress: []apiv1.IngressRule{{
			From:  []apiv1.Peer{{ProjectSelector: &apiv1.Selector{MatchLabels: map[string]string{"team": "shared"}}}},
			Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(8080)}},
		}},
	}}).json(t, 201, nil)

	var tc apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "ci-viewer", Role: apiv1.RoleViewer, ProjectID: ci.ID}).json(t, 201, &tc)
	viewer := []string{"Authorization", "Bearer " + tc.Secret}
	secrets := []string{cache.ID, cache.Name, cache.Enforcement.Address}

	path := "/v1/environments/" + runner.ID + "/effective-policy"
	var eff apiv1.EffectivePolicy
	r := h.do("GET", path, nil, viewer...)
	r.json(t, 200, &eff)
	peer := eff.Ingress[0].Peers[0]
	if len(peer.Environments) != 0 || peer.Hidden != 1 {
		t.Errorf("viewer of ci reads the peer as %+v (hidden %d), want no environment and a count of 1", peer.Environments, peer.Hidden)
	}
	noneOf(t, "effective policy as viewer of ci", r.body, secrets)

	eff = apiv1.EffectivePolicy{}
	h.do("GET", path, nil).json(t, 200, &eff)
	if got := eff.Ingress[0].Peers[0]; len(got.Environments) != 1 || got.Environments[0].Name != cache.Name || got.Environments[0].ProjectID != shared.ID || got.Hidden != 0 {
		t.Errorf("the admin reads the peer as %+v (hidden %d), want build-cache named with its project", got.Environments, got.Hidden)
	}

	var res apiv1.CheckResult
	r = h.do("POST", "/v1/environments/"+runner.ID+"/check",
		apiv1.CheckRequest{Direction: "ingress", Protocol: "tcp", Address: cache.Enforcement.Address, Port: 8080}, viewer...)
	r.json(t, 200, &res)
	if !res.Allowed || !strings.Contains(res.Reason, "rule 0 of from-shared") {
		t.Errorf("check as viewer of ci = %+v, want allowed by rule 0 of from-shared", res)
	}
	// The address is the caller's own question; the answer adds nothing
	// about whose it is.
	noneOf(t, "check as viewer of ci", r.body, secrets[:2])

	// runner may send anywhere, and the cache's project lets nothing in:
	// the admin is told so, the viewer of ci is told nothing of it.
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: ci.ID, PolicySpec: apiv1.PolicySpec{
		Name: "out", PolicyTypes: []string{"egress"}, Egress: []apiv1.EgressRule{{}},
	}}).json(t, 201, nil)
	h.do("GET", "/v1/environments/"+runner.ID+"?wait_for=enforced&timeout=20s", nil).json(t, 200, nil)
	out := apiv1.CheckRequest{Direction: "egress", Protocol: "tcp", Address: cache.Enforcement.Address, Port: 22}
	res = apiv1.CheckResult{}
	h.do("POST", "/v1/environments/"+runner.ID+"/check", out).json(t, 200, &res)
	if want := "but the peer's own ingress denies it (environment build-cache: no policy selects this environment for ingress)"; !res.Allowed || !strings.Contains(res.Reason, want) {
		t.Errorf("check as admin = %+v, want allowed, with %q", res, want)
	}
	res = apiv1.CheckResult{}
	r = h.do("POST", "/v1/environments/"+runner.ID+"/check", out, viewer...)
	r.json(t, 200, &res)
	if !res.Allowed || strings.Contains(res.Reason, "peer") {
		t.Errorf("check as viewer of ci = %+v, want allowed and nothing said of the other end", res)
	}
	noneOf(t, "egress check as viewer of ci", r.body, secrets[:2])
}

func noneOf(t *testing.T, what string, body []byte, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(string(body), `"`+s+`"`) {
			t.Errorf("%s names %q: %s", what, s, body)
		}
	}
}

// TestProjectSelector_ARelabelledProjectIsPickedUpAndDroppedWithoutTouchingThePolicy:
// labelling a project brings its environments under another project's
// project_selector, and removing the label takes them out, both
// enforced before the environment reports enforced again.
func TestProjectSelector_ARelabelledProjectIsPickedUpAndDroppedWithoutTouchingThePolicy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ci, shared := h.project("ci"), h.project("shared")
	runner, _ := h.wait(h.environment(ci.ID, "runner", nil).ID, "ready")
	cache, _ := h.wait(h.environment(shared.ID, "cache", nil).ID, "ready")
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: ci.ID, PolicySpec: apiv1.PolicySpec{
		Name: "from-shared", PolicyTypes: []string{"ingress"},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{ProjectSelector: &apiv1.Selector{
			MatchExpressions: []apiv1.SelectorRequirement{{Key: "team", Operator: apiv1.OpIn, Values: []string{"shared"}}},
		}}}}},
	}}).json(t, 201, nil)
	in := apiv1.CheckRequest{Direction: "ingress", Protocol: "tcp", Address: cache.Enforcement.Address, Port: 443}
	allowed := func() bool {
		h.do("GET", "/v1/environments/"+runner.ID+"?wait_for=enforced&timeout=20s", nil).json(t, 200, nil)
		var res apiv1.CheckResult
		h.do("POST", "/v1/environments/"+runner.ID+"/check", in).json(t, 200, &res)
		return res.Allowed
	}
	if allowed() {
		t.Fatal("an unlabelled project's environment is let in")
	}
	for _, step := range []struct {
		labels map[string]string
		want   bool
	}{{map[string]string{"team": "shared"}, true}, {map[string]string{"team": "other"}, false}} {
		h.do("PATCH", "/v1/projects/"+shared.ID, map[string]any{"labels": step.labels}).json(t, 200, nil)
		if got := allowed(); got != step.want {
			t.Errorf("after labelling shared %v: allowed=%v, want %v", step.labels, got, step.want)
		}
	}
}
