package netnstest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// SeedEnv fixes the seed of every differential test, so a failure seen in
// CI can be replayed without knowing which flag the failing package uses.
const SeedEnv = "ISOLATION_NETNS_SEED"

// Seed returns a differential test's seed, SeedEnv first, then the test's
// own flag (named flagName, 0 when unset), else a random one, and logs how
// to rerun with it.
func Seed(t testing.TB, flagName string, flagged uint64) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv(SeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, s, err)
		}
		seed = v
	} else if flagged != 0 {
		seed = flagged
	}
	t.Logf("seed %d: rerun with -%s %d or %s=%d", seed, flagName, seed, SeedEnv, seed)
	return seed
}

// Rounds counts a differential test's probes across its rounds.
type Rounds struct {
	Seed          uint64 // named in every failure, so it can be replayed
	Sent, Through int
}

// Check counts one round's results and fails t on a probe that could not
// be sent or checked (it proves nothing either way) or on any packet that
// did not do what the oracle said: the first few are described, and the
// first is shrunk by reproduce into a case a person can read.
func (rs *Rounds) Check(t testing.TB, round string, results []Result, reproduce func(Probe) string) {
	t.Helper()
	var bad []Result
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("round %s: %s: %v", round, r.Probe, r.Err)
		}
		if !r.Agrees() {
			bad = append(bad, r)
		}
		rs.Sent++
		if r.Got {
			rs.Through++
		}
	}
	if len(bad) == 0 {
		return
	}
	for _, r := range bad[:min(5, len(bad))] {
		t.Errorf("round %s: %s: check says %v, the packet %s", round, r.Probe, r.Want, fate(r.Got))
	}
	t.Fatalf("%d of %d probes disagree in round %s (seed %d); the first, reduced:\n%s", len(bad), len(results), round, rs.Seed, reproduce(bad[0].Probe))
}

// Enough fails t unless at least least probes were sent and some got
// through and some were dropped: a run in which every packet met the same
// fate says little about the rules.
func (rs *Rounds) Enough(t testing.TB, least int) {
	t.Helper()
	if rs.Sent < least || rs.Through == 0 || rs.Through == rs.Sent {
		t.Errorf("%d probes, %d through: the run proves too little", rs.Sent, rs.Through)
	}
}

func fate(through bool) string {
	if through {
		return "got through"
	}
	return "was dropped"
}

// Shrink removes from policies, first whole policies and then single
// rules, every piece whose removal still leaves disagrees true, and
// returns what is left with whether it disagrees once more: a disagreement
// that comes and goes may not.
func Shrink(policies []apiv1.Policy, disagrees func([]apiv1.Policy) bool) (reduced []apiv1.Policy, reproduces bool) {
	cur := slices.Clone(policies)
	for i := 0; i < len(cur); {
		if cand := slices.Delete(slices.Clone(cur), i, i+1); disagrees(cand) {
			cur = cand
		} else {
			i++
		}
	}
	for pi := range cur {
		for _, ingress := range []bool{true, false} {
			for ri := 0; ; {
				cand := slices.Clone(cur)
				spec := cand[pi].PolicySpec
				if ingress && ri < len(spec.Ingress) {
					spec.Ingress = slices.Delete(slices.Clone(spec.Ingress), ri, ri+1)
				} else if !ingress && ri < len(spec.Egress) {
					spec.Egress = slices.Delete(slices.Clone(spec.Egress), ri, ri+1)
				} else {
					break
				}
				cand[pi].PolicySpec = spec
				if disagrees(cand) {
					cur = cand
				} else {
					ri++
				}
			}
		}
	}
	return cur, disagrees(cur)
}

// ReportHeader opens the description of a reduced disagreement: whether it
// still reproduced, the seed and the probe.
func ReportHeader(seed uint64, p Probe, reproduces bool) string {
	s := fmt.Sprintf("seed: %d\nprobe: %s\n", seed, p)
	if !reproduces {
		s = "(the reduced case no longer disagrees: the disagreement is intermittent)\n" + s
	}
	return s
}
