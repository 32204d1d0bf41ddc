// Package netpoltest holds Kubernetes' NetworkPolicy e2e cases that need
// namespaceSelector, matchExpressions, named ports or SCTP
// (test/e2e/network/netpol/network_policy.go of kubernetes/kubernetes),
// transcribed with their truth tables, and runs them against any World:
// the API's check, or real packets under the netns driver.
//
// Namespaces are projects, labelled as Kubernetes labels namespaces
// (kubernetes.io/metadata.name); pods are environments labelled pod=<name>
// whose workloads declare the pods' named ports (serve-80-tcp and so on).
// Upstream's pods that no policy selects are not isolated; here every
// environment is, so they get explicit allow-all policies (Unisolated).
package netpoltest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
)

// NamespaceLabelKey is the label Kubernetes puts on every namespace.
const NamespaceLabelKey = "kubernetes.io/metadata.name"

// Namespaces are the names of a case's projects x, y and z.
type Namespaces struct{ X, Y, Z string }

func (n Namespaces) of(short string) string {
	return map[string]string{"x": n.X, "y": n.Y, "z": n.Z}[short]
}

// Policy is a policy of a namespace.
type Policy struct {
	Namespace string
	Spec      apiv1.PolicySpec
}

// Table is a truth table for one protocol and port.
type Table struct {
	Protocol string
	Port     int
	Reach    Reachability
}

// Case is one upstream test: its name, its pods ("x/a"), and, for its
// namespaces' real names, its policies and truth tables.
type Case struct {
	Name  string
	Pods  []string
	Build func(ns Namespaces, pods []string) ([]Policy, []Table)
}

// Peer picks pods as upstream's Peer does: an empty field matches all.
type Peer struct{ Namespace, Pod string }

func (p Peer) matches(pod string) bool {
	ns, name, _ := strings.Cut(pod, "/")
	return (p.Namespace == "" || p.Namespace == ns) && (p.Pod == "" || p.Pod == name)
}

// Reachability is a truth table: whether from may reach to, by
// "namespace/pod" strings.
type Reachability struct {
	pods []string
	m    map[[2]string]bool
}

// NewReachability is a table of pods where every pair is def.
func NewReachability(pods []string, def bool) Reachability {
	r := Reachability{pods: pods, m: map[[2]string]bool{}}
	for _, f := range pods {
		for _, t := range pods {
			r.m[[2]string{f, t}] = def
		}
	}
	return r
}

// ExpectPeer sets every pair whose ends match from and to.
func (r Reachability) ExpectPeer(from, to Peer, v bool) {
	for k := range r.m {
		if from.matches(k[0]) && to.matches(k[1]) {
			r.m[k] = v
		}
	}
}

// Expect sets one pair.
func (r Reachability) Expect(from, to string, v bool) { r.m[[2]string{from, to}] = v }

// ExpectAllIngress sets every pair into to.
func (r Reachability) ExpectAllIngress(to string, v bool) {
	for _, f := range r.pods {
		r.m[[2]string{f, to}] = v
	}
}

// ExpectAllEgress sets every pair out of from.
func (r Reachability) ExpectAllEgress(from string, v bool) {
	for _, t := range r.pods {
		r.m[[2]string{from, t}] = v
	}
}

// Want is the table's answer for a pair.
func (r Reachability) Want(from, to string) bool { return r.m[[2]string{from, to}] }

// PodLabels are the labels of pod "ns/name".
func PodLabels(pod string) map[string]string {
	_, name, _ := strings.Cut(pod, "/")
	return map[string]string{"pod": name}
}

// PodPorts are the named ports every upstream pod's containers declare.
func PodPorts() []apiv1.WorkloadPort {
	var out []apiv1.WorkloadPort
	for _, proto := range []string{apiv1.ProtocolTCP, apiv1.ProtocolUDP, apiv1.ProtocolSCTP} {
		for _, port := range []int{80, 81} {
			out = append(out, apiv1.WorkloadPort{Name: fmt.Sprintf("serve-%d-%s", port, proto), Port: port, Protocol: proto})
		}
	}
	return out
}

// Unisolated are the allow-all policies that stand for upstream's
// default: a pod no policy of its namespace selects for a direction
// allows everything in that direction.
func Unisolated(pods []string, policies []Policy) []Policy {
	var out []Policy
	for _, pod := range pods {
		ns, name, _ := strings.Cut(pod, "/")
		for _, dir := range []string{apiv1.Ingress, apiv1.Egress} {
			if slices.ContainsFunc(policies, func(p Policy) bool {
				return p.Namespace == ns && policy.HasType(p.Spec, dir) && policy.Selects(p.Spec.EnvironmentSelector, PodLabels(pod))
			}) {
				continue
			}
			spec := apiv1.PolicySpec{
				Name:                "unisolated-" + dir + "-" + name,
				EnvironmentSelector: apiv1.Selector{MatchLabels: PodLabels(pod)},
				PolicyTypes:         []string{dir},
			}
			if dir == apiv1.Ingress {
				spec.Ingress = []apiv1.IngressRule{{}}
			} else {
				spec.Egress = []apiv1.EgressRule{{}}
			}
			out = append(out, Policy{Namespace: ns, Spec: spec})
		}
	}
	return out
}

// World is where a case runs.
type World interface {
	// Project makes a project with labels and returns its id.
	Project(name string, labels map[string]string) string
	// Environment makes an environment, ready, with a workload declaring
	// ports, and returns it.
	Environment(projectID, name string, labels map[string]string, ports []apiv1.WorkloadPort) apiv1.Environment
	// Policy makes a policy.
	Policy(projectID string, spec apiv1.PolicySpec)
	// Settle returns once envs enforce every policy made.
	Settle(envs []apiv1.Environment)
	// Reach says whether a packet of proto to port goes from one
	// environment to the other.
	Reach(from, to apiv1.Environment, proto string, port int) (bool, error)
}

// Run runs c in w: namespaces named prefix-x and so on, its pods, its
// policies and the unisolated ones, then every table, each pair but a
// pod to itself (upstream ignores loopback). A mismatch is reported as
// upstream reports it, the whole table with the wrong cells marked.
func Run(t *testing.T, w World, prefix string, c Case) {
	t.Helper()
	ns := Namespaces{X: prefix + "-x", Y: prefix + "-y", Z: prefix + "-z"}
	var pods []string
	projects := map[string]string{}
	envs := map[string]apiv1.Environment{}
	for _, short := range c.Pods {
		s, name, _ := strings.Cut(short, "/")
		full := ns.of(s)
		if _, ok := projects[full]; !ok {
			projects[full] = w.Project(full, map[string]string{NamespaceLabelKey: full})
		}
		pod := full + "/" + name
		pods = append(pods, pod)
		envs[pod] = w.Environment(projects[full], name, PodLabels(pod), PodPorts())
	}
	policies, tables := c.Build(ns, pods)
	for _, p := range append(policies, Unisolated(pods, policies)...) {
		id, ok := projects[p.Namespace]
		if !ok {
			t.Fatalf("%s: policy %s is in namespace %s, which has no pod", c.Name, p.Spec.Name, p.Namespace)
		}
		w.Policy(id, p.Spec)
	}
	all := make([]apiv1.Environment, 0, len(envs))
	for _, pod := range pods {
		all = append(all, envs[pod])
	}
	w.Settle(all)
	for _, tb := range tables {
		var b strings.Builder
		wrong := 0
		for _, from := range pods {
			for _, to := range pods {
				if from == to {
					continue
				}
				got, err := w.Reach(envs[from], envs[to], tb.Protocol, tb.Port)
				if err != nil {
					t.Fatalf("%s: %s %s -> %s port %d: %v", c.Name, tb.Protocol, from, to, tb.Port, err)
				}
				mark := ""
				if want := tb.Reach.Want(from, to); got != want {
					wrong++
					mark = fmt.Sprintf("   <- want %v", want)
				}
				fmt.Fprintf(&b, "  %-12s -> %-12s %v%s\n", from, to, got, mark)
			}
		}
		if wrong > 0 {
			t.Errorf("%s: %s/%d: %d cells differ from upstream's truth table:\n%s", c.Name, tb.Protocol, tb.Port, wrong, b.String())
		}
	}
}
