package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy/netpoltest"
	wsimulate "github.com/isolationhq/terraform-provider-isolation/internal/workload/simulate"
)

// packetWorld runs Kubernetes' NetworkPolicy e2e cases with real packets
// between the environments' namespaces: TCP connections and raw SCTP
// INITs to listeners on ports 80 and 81. Each packet's fate must also be
// what check says of it.
type packetWorld struct {
	t *testing.T
	l *apiLab
}

func (w packetWorld) Project(name string, labels map[string]string) string {
	p, err := w.l.c.Projects().Create(w.l.ctx, apiv1.ProjectCreate{Name: name, Labels: labels})
	if err != nil {
		w.t.Fatal(err)
	}
	return p.ID
}

func (w packetWorld) Environment(projectID, name string, labels map[string]string, ports []apiv1.WorkloadPort) apiv1.Environment {
	e, err := w.l.c.Environments().Create(w.l.ctx, apiv1.EnvironmentCreate{ProjectID: projectID, Name: name, Labels: labels,
		Workload: &apiv1.WorkloadSpec{Image: "registry.example.com/netpol/agnhost:1", Ports: ports}})
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(w.l.ctx, time.Minute)
	defer cancel()
	if e, err = w.l.c.Environments().WaitFor(ctx, e.ID, apiv1.StateReady); err != nil {
		w.t.Fatal(err)
	}
	netnstest.Serve(w.t, e.Enforcement.Namespace, []int{80, 81})
	return *e
}

func (w packetWorld) Policy(projectID string, spec apiv1.PolicySpec) {
	if _, err := w.l.c.Policies().Create(w.l.ctx, apiv1.PolicyCreate{ProjectID: projectID, PolicySpec: spec}); err != nil {
		w.t.Fatalf("create policy %s: %v", js(spec), err)
	}
}

func (w packetWorld) Settle(envs []apiv1.Environment) { w.l.mustEnforce(envs) }

func (w packetWorld) Reach(from, to apiv1.Environment, proto string, port int) (bool, error) {
	p := netnstest.Probe{From: w.l.ends(from)[0], To: w.l.ends(to)[0], Protocol: proto, Port: port}
	want, err := netnstest.Expect(p, w.l.oracle)
	if err != nil {
		return false, err
	}
	// An allowed packet gets patience, a denied one denyTimeout.
	timeout := denyTimeout
	if want {
		timeout = 2 * time.Second
	}
	got, err := netnstest.Send(w.l.ctx, p, timeout)
	if err == nil && got != want {
		err = fmt.Errorf("%s: through=%v, but check says %v", p, got, want)
	}
	return got, err
}

// TestNetnsNetpolE2E_KubernetesTruthTablesHoldForRealPackets: every case
// on one server (its namespaces named apart, as upstream's are), in
// parallel.
func TestNetnsNetpolE2E_KubernetesTruthTablesHoldForRealPackets(t *testing.T) {
	cfg := labConfig(t, netns.DriverName)
	cfg.WorkloadRuntime = wsimulate.New() // the ports are declared; the test's listeners answer on them
	l := startLab(t, cfg)
	t.Run("cases", func(t *testing.T) {
		for i, c := range netpoltest.Cases {
			t.Run(strings.ReplaceAll(c.Name, " ", "_"), func(t *testing.T) {
				t.Parallel()
				netpoltest.Run(t, packetWorld{t: t, l: l}, fmt.Sprintf("k%d", i), c)
			})
		}
	})
}

// TestNetnsAPI_SCTPPortsAndRangesAreEnforced: sctp rules pass the ports
// and the range they list, by number, and nothing next to them, nor tcp
// on the same numbers.
func TestNetnsAPI_SCTPPortsAndRangesAreEnforced(t *testing.T) {
	cfg := labConfig(t, netns.DriverName)
	cfg.Runtime = apiv1.RuntimeNone // no workloads here
	l := startLab(t, cfg)
	a := l.createEnv("a", map[string]string{"app": "a"})
	b := l.createEnv("b", map[string]string{"app": "b"})
	sctp := func(port int, end ...int) apiv1.Port {
		p := apiv1.Port{Protocol: apiv1.ProtocolSCTP, Port: &port}
		if len(end) > 0 {
			p.EndPort = &end[0]
		}
		return p
	}
	l.createPolicy(apiv1.PolicySpec{
		Name: "sctp", EnvironmentSelector: selector(map[string]string{}), PolicyTypes: []string{apiv1.Ingress, apiv1.Egress},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"app": "a"}}}}, Ports: []apiv1.Port{sctp(2905), sctp(3000, 3010)}}},
		Egress:  []apiv1.EgressRule{{Ports: []apiv1.Port{{Protocol: apiv1.ProtocolSCTP}}}},
	})
	l.mustEnforce([]apiv1.Environment{a, b})
	for _, c := range []struct {
		proto string
		port  int
		want  bool
	}{
		{"sctp", 2905, true}, {"sctp", 3000, true}, {"sctp", 3005, true}, {"sctp", 3010, true},
		{"sctp", 2904, false}, {"sctp", 2999, false}, {"sctp", 3011, false}, {"tcp", 3000, false},
	} {
		p := netnstest.Probe{From: l.ends(a)[0], To: l.ends(b)[0], Protocol: c.proto, Port: c.port}
		timeout := denyTimeout
		if c.want {
			timeout = 2 * time.Second
		}
		got, err := netnstest.Send(l.ctx, p, timeout)
		if err != nil || got != c.want {
			t.Errorf("%s: through=%v (%v), want %v", p, got, err, c.want)
		}
		if ok, err := netnstest.Expect(p, l.oracle); err != nil || ok != c.want {
			t.Errorf("%s: check says %v (%v), want %v", p, ok, err, c.want)
		}
	}
}
