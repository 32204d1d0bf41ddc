package storetest

import (
	"strconv"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// flowRecord is the n-th record of a fixture: environments env_a and
// env_b of projects prj_a and prj_b, alternating verdicts and directions.
func flowRecord(n int, at time.Time) apiv1.Flow {
	env, prj := "env_a", "prj_a"
	if n%3 == 2 {
		env, prj = "env_b", "prj_b"
	}
	f := apiv1.Flow{
		Time: at, EnvironmentID: env, ProjectID: prj, Direction: apiv1.Egress, Protocol: apiv1.ProtocolTCP,
		SrcAddress: "198.18.0.2", SrcPort: 40000 + n, DstAddress: "198.18.1." + strconv.Itoa(n%5), DstPort: 443,
		Verdict: apiv1.VerdictDenied, Packets: 1, Bytes: 60, Count: 1, FirstSeen: at, LastSeen: at,
	}
	if n%2 == 0 {
		rule := n % 4
		f.Verdict, f.PolicyID, f.Rule, f.Direction = apiv1.VerdictAllowed, "pol_x", &rule, apiv1.Ingress
		f.SrcAddress, f.DstAddress = f.DstAddress, f.SrcAddress
	}
	return f
}

func appendFlows(t *testing.T, st store.Store, flows []apiv1.Flow) []apiv1.Flow {
	t.Helper()
	update(t, st, func(tx store.Tx) error { return tx.AppendFlows(ctx, flows) })
	return flows
}

func listAllFlows(t *testing.T, st store.Store, q store.FlowQuery) []apiv1.Flow {
	t.Helper()
	var out []apiv1.Flow
	for range 1000 {
		page, next, err := st.ListFlows(ctx, q)
		if err != nil {
			t.Fatalf("ListFlows: %v", err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		if q.AfterID, err = strconv.ParseInt(next, 10, 64); err != nil {
			t.Fatalf("cursor %q: %v", next, err)
		}
	}
	t.Fatal("ListFlows never reached its last page")
	return nil
}

func testFlows(t *testing.T, st store.Store) {
	base := now()
	var all []apiv1.Flow
	for n := range 30 {
		all = append(all, flowRecord(n, base.Add(time.Duration(n)*time.Second)))
	}
	all = appendFlows(t, st, all)
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("ids do not grow: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	diff(t, "every record, by pages of 7", listAllFlows(t, st, store.FlowQuery{Limit: 7}), all)
	want := func(keep func(apiv1.Flow) bool) []apiv1.Flow {
		var out []apiv1.Flow
		for _, f := range all {
			if keep(f) {
				out = append(out, f)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    store.FlowQuery
		keep func(apiv1.Flow) bool
	}{
		{"environment", store.FlowQuery{EnvironmentID: "env_b"}, func(f apiv1.Flow) bool { return f.EnvironmentID == "env_b" }},
		{"projects", store.FlowQuery{ProjectIDs: []string{"prj_a"}}, func(f apiv1.Flow) bool { return f.ProjectID == "prj_a" }},
		{"no project", store.FlowQuery{ProjectIDs: []string{}}, func(apiv1.Flow) bool { return false }},
		{"verdict", store.FlowQuery{Verdict: apiv1.VerdictDenied}, func(f apiv1.Flow) bool { return f.Verdict == apiv1.VerdictDenied }},
		{"direction", store.FlowQuery{Direction: apiv1.Ingress}, func(f apiv1.Flow) bool { return f.Direction == apiv1.Ingress }},
		{"peer", store.FlowQuery{Peer: "198.18.1.3"}, func(f apiv1.Flow) bool { return f.SrcAddress == "198.18.1.3" || f.DstAddress == "198.18.1.3" }},
		{"time range", store.FlowQuery{Since: base.Add(10 * time.Second), Until: base.Add(20 * time.Second)}, func(f apiv1.Flow) bool {
			return !f.Time.Before(base.Add(10*time.Second)) && f.Time.Before(base.Add(20*time.Second))
		}},
		{"all at once", store.FlowQuery{EnvironmentID: "env_a", Verdict: apiv1.VerdictAllowed, Peer: "198.18.1.4"}, func(f apiv1.Flow) bool {
			return f.EnvironmentID == "env_a" && f.Verdict == apiv1.VerdictAllowed && (f.SrcAddress == "198.18.1.4" || f.DstAddress == "198.18.1.4")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.Limit = 4
			diff(t, tc.name, listAllFlows(t, st, tc.q), want(tc.keep))
		})
	}
}

func testFlowPruning(t *testing.T, st store.Store) {
	base := now()
	var all []apiv1.Flow
	for n := range 20 {
		all = append(all, flowRecord(n, base.Add(time.Duration(n)*time.Minute)))
	}
	all = appendFlows(t, st, all)
	var pruned int
	update(t, st, func(tx store.Tx) error {
		var err error
		pruned, err = tx.PruneFlows(ctx, base.Add(5*time.Minute), 10)
		return err
	})
	if pruned != 10 {
		t.Fatalf("pruned %d records, want 5 by age and 5 by count", pruned)
	}
	diff(t, "what is left", listAllFlows(t, st, store.FlowQuery{}), all[10:])
	// Ids are never reused: a cursor past a pruned record still follows.
	next := appendFlows(t, st, []apiv1.Flow{flowRecord(0, base.Add(time.Hour))})
	if next[0].ID <= all[len(all)-1].ID {
		t.Fatalf("new record's id %d does not follow %d", next[0].ID, all[len(all)-1].ID)
	}
}
