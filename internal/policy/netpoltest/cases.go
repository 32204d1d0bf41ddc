package netpoltest

import "github.com/isolationhq/terraform-provider-isolation/internal/apiv1"

// The cases, in upstream's order, named as upstream's It(...) names them;
// each Build is upstream's body: its policies (GenNetworkPolicy...,
// SetSpecIngressRules) and its truth tables (NewReachability, Expect...).

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func matchLabels(kv ...string) *apiv1.Selector { return &apiv1.Selector{MatchLabels: labels(kv...)} }

func matchExpression(key, op string, values ...string) *apiv1.Selector {
	return &apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// ingressPolicy is GenNetworkPolicyWithNameAndPodMatchLabel with
// SetSpecIngressRules: policy_types [ingress], no rules denying all.
func ingressPolicy(ns, name string, pods map[string]string, rules ...apiv1.IngressRule) Policy {
	return Policy{Namespace: ns, Spec: apiv1.PolicySpec{
		Name: name, EnvironmentSelector: apiv1.Selector{MatchLabels: pods}, PolicyTypes: []string{apiv1.Ingress}, Ingress: rules,
	}}
}

func egressPolicy(ns, name string, pods map[string]string, rules ...apiv1.EgressRule) Policy {
	return Policy{Namespace: ns, Spec: apiv1.PolicySpec{
		Name: name, EnvironmentSelector: apiv1.Selector{MatchLabels: pods}, PolicyTypes: []string{apiv1.Egress}, Egress: rules,
	}}
}

func from(peers ...apiv1.Peer) apiv1.IngressRule { return apiv1.IngressRule{From: peers} }

func port(proto string, n int) apiv1.Port { return apiv1.Port{Protocol: proto, Port: &n} }

func named(proto, name string) apiv1.Port { return apiv1.Port{Protocol: proto, PortName: name} }

func pod(ns, name string) string { return ns + "/" + name }

func table(proto string, n int, r Reachability) Table {
	return Table{Protocol: proto, Port: n, Reach: r}
}

// Cases are upstream's cases that need namespaceSelector, matchExpressions,
// named ports or SCTP.
var Cases = []Case{
	{
		Name: "should enforce policy to allow ingress traffic for a target",
		Pods: []string{"x/a", "x/b", "y/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectAllIngress(pod(ns.X, "a"), true)
			r.ExpectAllIngress(pod(ns.X, "b"), false)
			return []Policy{
				ingressPolicy(ns.X, "deny-all", labels()),
				ingressPolicy(ns.X, "allow-all-to-a", labels("pod", "a"), from(apiv1.Peer{EnvironmentSelector: matchLabels(), ProjectSelector: matchLabels()})),
			}, []Table{table(apiv1.ProtocolTCP, 80, r)}
		},
	},
	{
		Name: "should enforce policy to allow ingress traffic from pods in all namespaces",
		Pods: []string{"x/a", "x/b", "y/a", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			return []Policy{
				ingressPolicy(ns.X, "allow-from-another-ns", labels("pod", "a"), from(apiv1.Peer{ProjectSelector: matchLabels()})),
			}, []Table{table(apiv1.ProtocolTCP, 80, NewReachability(pods, true))}
		},
	},
	{
		Name: "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
		Pods: []string{"x/a", "x/b", "y/a", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectPeer(Peer{Namespace: ns.X}, Peer{Namespace: ns.X, Pod: "a"}, false)
			r.ExpectPeer(Peer{Namespace: ns.Z}, Peer{Namespace: ns.X, Pod: "a"}, false)
			return []Policy{
				ingressPolicy(ns.X, "allow-client-a-via-ns-selector", labels("pod", "a"), from(apiv1.Peer{ProjectSelector: matchLabels(NamespaceLabelKey, ns.Y)})),
			}, []Table{table(apiv1.ProtocolTCP, 80, r)}
		},
	},
	{
		Name: "should enforce policy based on PodSelector with MatchExpressions",
		Pods: []string{"x/a", "x/b", "y/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectAllIngress(pod(ns.X, "a"), false)
			r.Expect(pod(ns.X, "b"), pod(ns.X, "a"), true)
			return []Policy{
				ingressPolicy(ns.X, "x-a-allows-x-b", labels("pod", "a"), from(apiv1.Peer{EnvironmentSelector: matchExpression("pod", apiv1.OpIn, "b")})),
			}, []Table{table(apiv1.ProtocolTCP, 80, r)}
		},
	},
	{
		Name: "should enforce policy based on NamespaceSelector with MatchExpressions",
		Pods: []string{"x/a", "x/b", "y/a", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectPeer(Peer{Namespace: ns.X}, Peer{Namespace: ns.X, Pod: "a"}, false)
			r.ExpectPeer(Peer{Namespace: ns.Z}, Peer{Namespace: ns.X, Pod: "a"}, false)
			return []Policy{
				ingressPolicy(ns.X, "allow-ns-y-match-selector", labels("pod", "a"), from(apiv1.Peer{ProjectSelector: matchExpression(NamespaceLabelKey, apiv1.OpIn, ns.Y)})),
			}, []Table{table(apiv1.ProtocolTCP, 80, r)}
		},
	},
	{
		Name: "should enforce policy based on PodSelector or NamespaceSelector",
		Pods: []string{"x/a", "x/b", "x/c", "y/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.Expect(pod(ns.X, "a"), pod(ns.X, "a"), false)
			r.Expect(pod(ns.X, "c"), pod(ns.X, "a"), false)
			return []Policy{
				ingressPolicy(ns.X, "allow-ns-y-match-selector", labels("pod", "a"), from(
					apiv1.Peer{ProjectSelector: matchExpression(NamespaceLabelKey, apiv1.OpNotIn, ns.X)},
					apiv1.Peer{EnvironmentSelector: matchLabels("pod", "b")},
				)),
			}, []Table{table(apiv1.ProtocolTCP, 80, r)}
		},
	},
	{
		Name: "should enforce policy based on PodSelector and NamespaceSelector",
		Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/b"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectAllIngress(pod(ns.X, "a"), false)
			r.Expect(pod(ns.Y, "b"), pod(ns.X, "a"), true)
			r.Expect(pod(ns.Z, "b"), pod(ns.X, "a"), true)
			return []Policy{
				ingressPolicy(ns.X, "allow-ns-y-podselector-and-nsselector", labels("pod", "a"), from(apiv1.Peer{
					ProjectSelector: matchExpression(NamespaceLabelKey, apiv1.OpNotIn, ns.X), EnvironmentSelector: matchLabels("pod", "b"),
				})),
			}, []Table{table(apiv1.ProtocolTCP, 80, r)}
		},
	},
	{
		Name: "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
		Pods: []string{"x/a", "x/b", "y/a", "y/b", "y/c"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectPeer(Peer{Namespace: ns.X}, Peer{Namespace: ns.X, Pod: "a"}, false)
			r.Expect(pod(ns.Y, "a"), pod(ns.X, "a"), false)
			return []Policy{
				ingressPolicy(ns.X, "allow-ns-y-z-pod-b-c", labels("pod", "a"), from(apiv1.Peer{
					ProjectSelector: matchExpression(NamespaceLabelKey, apiv1.OpNotIn, ns.X), EnvironmentSelector: matchExpression("pod", apiv1.OpIn, "b", "c"),
				})),
			}, []Table{table(apiv1.ProtocolTCP, 80, r)}
		},
	},
	{
		Name: "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
		Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectAllIngress(pod(ns.X, "a"), false)
			r.Expect(pod(ns.Y, "a"), pod(ns.X, "a"), true)
			return []Policy{
				ingressPolicy(ns.X, "allow-ns-y-pod-a-via-namespace-pod-selector", labels("pod", "a"), from(apiv1.Peer{
					ProjectSelector: matchLabels(NamespaceLabelKey, ns.Y), EnvironmentSelector: matchLabels("pod", "a"),
				})),
			}, []Table{table(apiv1.ProtocolTCP, 80, r)}
		},
	},
	{
		Name: "should enforce policy based on Ports",
		Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			return []Policy{allowPortFromY(ns, "allow-client-a-via-ns-selector", apiv1.ProtocolTCP, 81)},
				[]Table{table(apiv1.ProtocolTCP, 81, fromYOnly(ns, pods))}
		},
	},
	{
		// Upstream checks this before and after the second policy; the
		// two halves are two cases here.
		Name: "should enforce multiple, stacked policies with overlapping podSelectors (before the port 80 policy)",
		Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			deny := NewReachability(pods, true)
			deny.ExpectAllIngress(pod(ns.X, "a"), false)
			return []Policy{allowPortFromY(ns, "allow-client-a-via-ns-selector", apiv1.ProtocolTCP, 81)},
				[]Table{table(apiv1.ProtocolTCP, 81, fromYOnly(ns, pods)), table(apiv1.ProtocolTCP, 80, deny)}
		},
	},
	{
		Name: "should enforce multiple, stacked policies with overlapping podSelectors (after it)",
		Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			return []Policy{
					allowPortFromY(ns, "allow-client-a-via-ns-selector", apiv1.ProtocolTCP, 81),
					allowPortFromY(ns, "allow-client-a-via-ns-selector-80", apiv1.ProtocolTCP, 80),
				},
				[]Table{table(apiv1.ProtocolTCP, 81, fromYOnly(ns, pods)), table(apiv1.ProtocolTCP, 80, fromYOnly(ns, pods))}
		},
	},
	{
		Name: "should allow ingress access on one named port",
		Pods: []string{"x/a", "x/b", "y/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r80 := NewReachability(pods, true)
			r80.ExpectPeer(Peer{}, Peer{Namespace: ns.X}, false)
			return []Policy{
					ingressPolicy(ns.X, "allow-all", labels(), apiv1.IngressRule{Ports: []apiv1.Port{named("", "serve-81-tcp")}}),
				}, []Table{
					table(apiv1.ProtocolTCP, 81, NewReachability(pods, true)),
					table(apiv1.ProtocolTCP, 80, r80),
				}
		},
	},
	{
		Name: "should allow ingress access from namespace on one named port",
		Pods: []string{"x/a", "x/b", "y/a", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectPeer(Peer{Namespace: ns.X}, Peer{Namespace: ns.X, Pod: "a"}, false)
			r.ExpectPeer(Peer{Namespace: ns.Z}, Peer{Namespace: ns.X, Pod: "a"}, false)
			fail := NewReachability(pods, true)
			fail.ExpectAllIngress(pod(ns.X, "a"), false)
			rule := from(apiv1.Peer{ProjectSelector: matchLabels(NamespaceLabelKey, ns.Y)})
			rule.Ports = []apiv1.Port{named(apiv1.ProtocolTCP, "serve-80-tcp")}
			return []Policy{ingressPolicy(ns.X, "allow-client-a-via-ns-selector-80", labels("pod", "a"), rule)},
				[]Table{table(apiv1.ProtocolTCP, 80, r), table(apiv1.ProtocolTCP, 81, fail)}
		},
	},
	{
		Name: "should allow egress access on one named port",
		Pods: []string{"x/a", "y/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r81 := NewReachability(pods, true)
			r81.ExpectPeer(Peer{Namespace: ns.X}, Peer{}, false)
			return []Policy{
					egressPolicy(ns.X, "allow-egress", labels(), apiv1.EgressRule{Ports: []apiv1.Port{named("", "serve-80-tcp")}}),
				}, []Table{
					table(apiv1.ProtocolTCP, 80, NewReachability(pods, true)),
					table(apiv1.ProtocolTCP, 81, r81),
				}
		},
	},
	// NetworkPolicy between server and client using SCTP.
	{
		Name: "SCTP: should support a 'default-deny-ingress' policy",
		Pods: []string{"x/a", "x/b", "y/a", "y/b"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectPeer(Peer{}, Peer{Namespace: ns.X}, false)
			return []Policy{ingressPolicy(ns.X, "deny-all", labels())}, []Table{table(apiv1.ProtocolSCTP, 80, r)}
		},
	},
	{
		Name: "SCTP: should enforce policy based on Ports",
		Pods: []string{"x/a", "x/b", "y/a", "z/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			return []Policy{allowPortFromY(ns, "allow-ingress-on-port-81-ns-x", apiv1.ProtocolSCTP, 81)},
				[]Table{table(apiv1.ProtocolSCTP, 81, fromYOnly(ns, pods))}
		},
	},
	{
		Name: "SCTP: should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
		Pods: []string{"x/a", "x/b", "y/a"},
		Build: func(ns Namespaces, pods []string) ([]Policy, []Table) {
			r := NewReachability(pods, true)
			r.ExpectAllIngress(pod(ns.X, "a"), false)
			r.Expect(pod(ns.Y, "a"), pod(ns.X, "a"), true)
			return []Policy{
				ingressPolicy(ns.X, "allow-ns-y-pod-a-via-namespace-pod-selector", labels("pod", "a"), from(apiv1.Peer{
					ProjectSelector: matchLabels(NamespaceLabelKey, ns.Y), EnvironmentSelector: matchLabels("pod", "a"),
				})),
			}, []Table{table(apiv1.ProtocolSCTP, 80, r)}
		},
	},
}

// allowPortFromY is upstream's allowPort81Policy: x/a lets namespace y
// in on one port.
func allowPortFromY(ns Namespaces, name, proto string, n int) Policy {
	rule := from(apiv1.Peer{ProjectSelector: matchLabels(NamespaceLabelKey, ns.Y)})
	rule.Ports = []apiv1.Port{port(proto, n)}
	return ingressPolicy(ns.X, name, labels("pod", "a"), rule)
}

// fromYOnly is upstream's table for allowPortFromY: into x/a, only y's pods.
func fromYOnly(ns Namespaces, pods []string) Reachability {
	r := NewReachability(pods, true)
	r.ExpectPeer(Peer{Namespace: ns.X}, Peer{Namespace: ns.X, Pod: "a"}, false)
	r.ExpectPeer(Peer{Namespace: ns.Y}, Peer{Namespace: ns.X, Pod: "a"}, true)
	r.ExpectPeer(Peer{Namespace: ns.Z}, Peer{Namespace: ns.X, Pod: "a"}, false)
	return r
}
