package server_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/simulate"
)

// Benchmarks of enforcement through the API, for `make bench-enforce`:
//
//	go test -run '^$' -bench '^BenchmarkAPIEnforce' -benchtime 1x -count 3 -timeout 30m ./internal/server/
//
// Each runs against the netns driver and, as its baseline in the same
// run, the simulate driver (the same server, store and reconciler, no
// kernel work). One iteration measures a fixed amount of work and reports
// it with b.ReportMetric; ns/op also counts the untimed clean-up.

var benchDrivers = []string{netns.DriverName, simulate.Name}

// BenchmarkAPIEnforce_CreateToReady times, one environment after another,
// POST /v1/environments until the environment is ready (a long poll,
// wait_for=ready), with 200 environments and a typical set of policies
// present: one selecting every environment (cidr peers only), and one
// letting the hundred "db" environments take connections from "web" ones.
//
//   - fanout=0: the new environments are "batch" ones, a peer of nobody;
//     creating one enforces that environment alone.
//   - fanout=100: they are "web" ones, so creating one also re-enforces
//     the hundred databases, which must learn its address.
func BenchmarkAPIEnforce_CreateToReady(b *testing.B) {
	for _, driver := range benchDrivers {
		b.Run("driver="+driver, func(b *testing.B) {
			l := startLab(b, labConfig(b, driver))
			l.typicalPolicies()
			present := l.createMany(200, func(i int) map[string]string {
				return map[string]string{"tier": []string{"web", "db"}[i%2]}
			})
			l.mustEnforce(present)
			for _, fan := range []struct {
				name string
				tier string
			}{{"fanout=0", "batch"}, {"fanout=100", "web"}} {
				b.Run(fan.name, func(b *testing.B) {
					for b.Loop() {
						const n = 100
						took := make([]time.Duration, n)
						created := make([]apiv1.Environment, n)
						for i := range n {
							start := time.Now()
							created[i] = l.createEnv(fmt.Sprintf("new-%d", i), map[string]string{"tier": fan.tier})
							took[i] = time.Since(start)
						}
						reportQuantiles(b, took, "ready", 0.50, 0.99)
						b.StopTimer()
						l.deleteAll(created)
						l.mustEnforce(present) // the next round starts from rest
						b.StartTimer()
					}
				})
			}
		})
	}
}

// BenchmarkAPIEnforce_PolicyChange100 times PATCH /v1/policies/{id} of a
// policy selecting 100 of 200 environments, until all 100 report
// enforced at the new generation (a long poll each, wait_for=enforced).
func BenchmarkAPIEnforce_PolicyChange100(b *testing.B) {
	for _, driver := range benchDrivers {
		b.Run("driver="+driver, func(b *testing.B) {
			l := startLab(b, labConfig(b, driver))
			envs := l.createMany(200, func(i int) map[string]string {
				return map[string]string{"group": []string{"selected", "other"}[i%2]}
			})
			var selected []apiv1.Environment
			for _, e := range envs {
				if e.Labels["group"] == "selected" {
					selected = append(selected, e)
				}
			}
			pol := l.createPolicy(apiv1.PolicySpec{
				Name: "web", EnvironmentSelector: selector(map[string]string{"group": "selected"}), PolicyTypes: []string{apiv1.Ingress},
				Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{CIDR: "198.19.0.0/16"}}, Ports: []apiv1.Port{tcpPort(8000)}}},
			})
			selected = l.mustEnforce(selected)
			for b.Loop() {
				const changes = 10
				took := make([]time.Duration, changes)
				for c := range changes {
					ingress := []apiv1.IngressRule{{From: []apiv1.Peer{{CIDR: "198.19.0.0/16"}}, Ports: []apiv1.Port{tcpPort(8001 + c)}}}
					start := time.Now()
					p, err := l.c.Policies().Update(l.ctx, pol.ID, apiv1.PolicyPatch{Ingress: &ingress}, "")
					if err != nil {
						b.Fatal(err)
					}
					pol = *p
					ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
					after, err := l.waitAllEnforced(ctx, ids(selected))
					cancel()
					took[c] = time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					for i, e := range after {
						if e.Enforcement.ObservedGeneration <= selected[i].Enforcement.ObservedGeneration {
							b.Fatalf("environment %s: observed generation %d after the change, %d before", e.ID, e.Enforcement.ObservedGeneration, selected[i].Enforcement.ObservedGeneration)
						}
					}
					selected = after
				}
				reportQuantiles(b, took, "all100", 0.50)
			}
		})
	}
}

// typicalPolicies are what a small team's project carries: web from the
// internet and egress to a few services for everyone, and databases that
// take connections from the web environments.
func (l *apiLab) typicalPolicies() {
	l.tb.Helper()
	l.createPolicy(apiv1.PolicySpec{
		Name: "web", EnvironmentSelector: selector(map[string]string{}), PolicyTypes: []string{apiv1.Ingress, apiv1.Egress},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{CIDR: "198.19.0.0/16", Except: []string{"198.19.1.0/24"}}}, Ports: []apiv1.Port{tcpPort(80), tcpPort(443)}}},
		Egress: []apiv1.EgressRule{{
			To:    []apiv1.Peer{{CIDR: "198.19.0.0/24"}, {CIDR: "fd00:198:19::/64"}},
			Ports: []apiv1.Port{tcpPort(443), {Protocol: apiv1.ProtocolUDP, Port: ptr(53)}},
		}},
	})
	l.createPolicy(apiv1.PolicySpec{
		Name: "db", EnvironmentSelector: selector(map[string]string{"tier": "db"}), PolicyTypes: []string{apiv1.Ingress},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"tier": "web"}}}}, Ports: []apiv1.Port{tcpPort(5432)}}},
	})
}

// reportQuantiles reports the given quantiles (nearest rank) and the
// maximum of took, in milliseconds: name-p50-ms, name-p99-ms, name-max-ms.
func reportQuantiles(b *testing.B, took []time.Duration, name string, quantiles ...float64) {
	s := slices.Clone(took)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, q := range quantiles {
		rank := int(math.Ceil(q * float64(len(s))))
		b.ReportMetric(ms(s[max(rank, 1)-1]), fmt.Sprintf("%s-p%d-ms", name, int(q*100)))
	}
	b.ReportMetric(ms(s[len(s)-1]), name+"-max-ms")
}

func ptr[T any](v T) *T { return &v }
