package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/simulate"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// failingApply is the simulate driver whose Apply fails while failing is set.
type failingApply struct {
	*simulate.Driver
	mu      sync.Mutex
	failing bool
}

func (d *failingApply) Apply(ctx context.Context, id string, p apiv1.EffectivePolicy) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failing {
		return errors.New("nftables: transaction refused")
	}
	return d.Driver.Apply(ctx, id, p)
}

func (d *failingApply) setFailing(v bool) {
	d.mu.Lock()
	d.failing = v
	d.mu.Unlock()
}

func TestEnforcement_AFailingDriverIsReportedNeverAllowsAndRecovers(t *testing.T) {
	d := &failingApply{Driver: simulate.New()}
	h := newHarness(t, func(c *server.Config) { c.EnforceDriver = d })
	p := h.project("payments")
	e := h.environment(p.ID, "api", map[string]string{"app": "api"})
	h.wait(e.ID, "enforced")

	next := h.watch(e.ID)
	d.setFailing(true)
	var pol apiv1.Policy
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: apiv1.PolicySpec{
		Name: "web", EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{"app": "api"}}, PolicyTypes: []string{"egress"},
		Egress: []apiv1.EgressRule{{Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(443)}}}},
	}}, "X-Request-Id", "req-web-policy").json(t, 201, &pol)

	// The environment says it is not enforced and why, stays ready, and
	// check answers from the rules in force: the new allow is not one.
	cur := next()
	for cur.Enforcement.Message == "" {
		cur = next()
	}
	if cur.State != apiv1.StateReady || cur.Enforcement.Enforced || !strings.Contains(cur.Enforcement.Message, "transaction refused") {
		t.Fatalf("while the driver fails: state %s enforcement %+v", cur.State, cur.Enforcement)
	}
	check := func() apiv1.CheckResult {
		var res apiv1.CheckResult
		h.do("POST", "/v1/environments/"+e.ID+"/check", apiv1.CheckRequest{Direction: "egress", Protocol: "tcp", Address: "203.0.113.7", Port: 443}).json(t, 200, &res)
		return res
	}
	if res := check(); res.Allowed {
		t.Fatalf("check allowed a rule the driver never applied: %+v", res)
	}

	d.setFailing(false)
	done, _ := h.wait(e.ID, "enforced")
	if done.Enforcement.Message != "" || done.State != apiv1.StateReady {
		t.Fatalf("after recovery: %+v", done)
	}
	if res := check(); !res.Allowed || res.Matched.PolicyID != pol.ID {
		t.Fatalf("check after the rules were applied: %+v", res)
	}

	// Both changes of health are audited by isolationd under the request
	// that caused the work.
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?request_id=req-web-policy", nil).json(t, 200, &evs)
	var got []string
	for _, ev := range evs.Items {
		got = append(got, ev.Action+"/"+ev.Outcome+"/"+ev.Actor.Name)
	}
	want := "policy.create/success/bootstrap-admin environment.enforce_failed/failure/isolationd environment.enforced/success/isolationd"
	if strings.Join(got, " ") != want {
		t.Fatalf("audit of the policy's request:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

// watch follows an environment's watch stream; next returns its next
// version, failing the test when none arrives within 20 s.
func (h *harness) watch(id string) (next func() apiv1.Environment) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/v1/environments/"+id+"/watch", nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	versions := make(chan apiv1.Environment)
	go func() {
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			var e apiv1.Environment
			if !ok || json.Unmarshal([]byte(data), &e) != nil || e.ID != id {
				continue
			}
			select {
			case versions <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() apiv1.Environment {
		h.t.Helper()
		select {
		case e := <-versions:
			return e
		case <-time.After(20 * time.Second):
			h.t.Fatalf("watch %s: no change within 20s", id)
		}
		return apiv1.Environment{}
	}
}
