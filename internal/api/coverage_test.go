package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// A CIDR rule that covers another project's environment is flagged on the
// effective policy and on a check it allowed: by id for a caller who may
// see that project, counted only for one who may not. CIDRs covering only
// the project's own environments, exceptions and selector peers are not.
func TestEffectivePolicy_FlagsCIDRPeersCoveringOtherProjectsEnvironments(t *testing.T) {
	h := newHarness(t, func(c *server.Config) { c.AddressPool = "198.18.0.0/24" })
	a, b := h.project("project-a"), h.project("project-b")
	other, _ := h.wait(h.environment(a.ID, "other", nil).ID, "ready")
	db, _ := h.wait(h.environment(b.ID, "db", map[string]string{"app": "db"}).ID, "ready")
	sibling, _ := h.wait(h.environment(b.ID, "sibling", map[string]string{"app": "web"}).ID, "ready")
	pinned, own := other.Enforcement.Address, sibling.Enforcement.Address
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: b.ID, PolicySpec: apiv1.PolicySpec{
		Name: "db-in", PolicyTypes: []string{apiv1.Ingress}, EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{"app": "db"}},
		Ingress: []apiv1.IngressRule{
			{From: []apiv1.Peer{{CIDR: pinned + "/32"}, {CIDR: own + "/32"}}, Ports: []apiv1.Port{{Port: ptr(5432)}}},
			{From: []apiv1.Peer{{CIDR: "198.18.0.0/24", Except: []string{pinned + "/32"}}, {EnvironmentSelector: &apiv1.Selector{}}}},
		},
	}}).json(t, 201, nil)
	h.wait(db.ID, "ready")
	viewer := h.apiToken("b-viewer", apiv1.RoleViewer, b.ID)

	effective := func(hdr ...string) apiv1.EffectivePolicy {
		t.Helper()
		var eff apiv1.EffectivePolicy
		h.do("GET", "/v1/environments/"+db.ID+"/effective-policy", nil, hdr...).json(t, 200, &eff)
		if len(eff.Ingress) != 2 {
			t.Fatalf("effective policy has %d ingress rules, want 2", len(eff.Ingress))
		}
		second := eff.Ingress[1]
		if len(second.Warnings) != 0 || second.Peers[0].Covers != nil || second.Peers[1].Covers != nil {
			t.Fatalf("the rule excepting %s and selecting its own project is flagged: %s", pinned, js(second))
		}
		first := eff.Ingress[0]
		if first.Peers[1].Covers != nil {
			t.Fatalf("a CIDR covering only the project's own %s is flagged: %s", own, js(first.Peers[1]))
		}
		c := first.Peers[0].Covers
		if c == nil || c.Count != 1 || len(first.Warnings) != 1 || first.Warnings[0] != c.Warning {
			t.Fatalf("the CIDR pinning %s of project A is not flagged once: %s", pinned, js(first))
		}
		return eff
	}

	admin := effective().Ingress[0].Peers[0].Covers
	want := apiv1.PinnedEnvironment{ID: other.ID, ProjectID: a.ID, Address: pinned}
	if len(admin.Environments) != 1 || admin.Environments[0] != want || !strings.Contains(admin.Warning, other.ID+" of "+a.ID) ||
		!strings.Contains(admin.Warning, "24h0m0s") || !strings.Contains(admin.Warning, "environment_selector") {
		t.Fatalf("the admin's coverage: %s; want %+v named, the quarantine and the advice", js(admin), want)
	}

	scoped := effective(bearer(viewer.Secret)...).Ingress[0].Peers[0].Covers
	if len(scoped.Environments) != 0 || strings.Contains(scoped.Warning, other.ID) || strings.Contains(scoped.Warning, a.ID) ||
		!strings.Contains(scoped.Warning, "1 in projects out of your scope") {
		t.Fatalf("project B's viewer sees %s; want the environment counted, neither it nor its project named", js(scoped))
	}

	check := func(addr string, port int, hdr ...string) apiv1.CheckResult {
		t.Helper()
		var res apiv1.CheckResult
		h.do("POST", "/v1/environments/"+db.ID+"/check", apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: "tcp", Address: addr, Port: port}, hdr...).json(t, 200, &res)
		return res
	}
	if res := check(pinned, 5432, bearer(viewer.Secret)...); !res.Allowed || len(res.Warnings) != 1 || res.Warnings[0] != scoped.Warning {
		t.Fatalf("check from the pinned %s as B's viewer: %s; want allowed with the scoped warning", pinned, js(res))
	}
	if res := check(own, 5432); !res.Allowed || len(res.Warnings) != 0 {
		t.Fatalf("check from the project's own %s: %s; want allowed without warnings", own, js(res))
	}
	if res := check(pinned, 22); res.Allowed || len(res.Warnings) != 0 {
		t.Fatalf("check from %s on a port no rule allows: %s; want denied without warnings", pinned, js(res))
	}
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
