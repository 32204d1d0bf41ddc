package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy/netpoltest"
)

// checkWorld runs Kubernetes' NetworkPolicy e2e cases through the API's
// check: a packet goes through when the sender's egress and the
// receiver's ingress both allow it.
type checkWorld struct {
	t *testing.T
	h *harness
}

func (w checkWorld) Project(name string, labels map[string]string) string {
	var p apiv1.Project
	w.h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: name, Labels: labels}).json(w.t, 201, &p)
	return p.ID
}

func (w checkWorld) Environment(projectID, name string, labels map[string]string, ports []apiv1.WorkloadPort) apiv1.Environment {
	var e apiv1.Environment
	w.h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{
		ProjectID: projectID, Name: name, Labels: labels,
		Workload: &apiv1.WorkloadSpec{Image: "registry.example.com/netpol/agnhost:1", Ports: ports},
	}).json(w.t, 202, &e)
	e, _ = w.h.wait(e.ID, "ready")
	return e
}

func (w checkWorld) Policy(projectID string, spec apiv1.PolicySpec) {
	w.h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: projectID, PolicySpec: spec}).json(w.t, 201, nil)
}

func (w checkWorld) Settle(envs []apiv1.Environment) {
	for _, e := range envs {
		w.h.wait(e.ID, "ready")
		w.h.do("GET", "/v1/environments/"+e.ID+"?wait_for=enforced&timeout=20s", nil).json(w.t, 200, nil)
	}
}

func (w checkWorld) Reach(from, to apiv1.Environment, proto string, port int) (bool, error) {
	allowed := true
	for _, c := range []struct {
		env apiv1.Environment
		req apiv1.CheckRequest
	}{
		{from, apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: proto, Address: to.Enforcement.Address, Port: port}},
		{to, apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: proto, Address: from.Enforcement.Address, Port: port}},
	} {
		var res apiv1.CheckResult
		r := w.h.do("POST", "/v1/environments/"+c.env.ID+"/check", c.req)
		if r.status != 200 {
			return false, fmt.Errorf("check %s: %d %s", c.env.Name, r.status, r.body)
		}
		r.json(w.t, 200, &res)
		if res.Reason == "" {
			return false, fmt.Errorf("check %s %+v answered no reason: %+v", c.env.Name, c.req, res)
		}
		allowed = allowed && res.Allowed
	}
	return allowed, nil
}

// TestNetpolE2E_KubernetesTruthTablesHoldThroughCheck: each upstream case
// on a server of its own, its truth table asked of check pair by pair.
func TestNetpolE2E_KubernetesTruthTablesHoldThroughCheck(t *testing.T) {
	t.Parallel()
	for i, c := range netpoltest.Cases {
		t.Run(strings.ReplaceAll(c.Name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			netpoltest.Run(t, checkWorld{t: t, h: newHarness(t)}, fmt.Sprintf("k%d", i), c)
		})
	}
}
