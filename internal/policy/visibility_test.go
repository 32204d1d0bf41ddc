package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestRedact_PeersOfProjectsTheCallerCannotReadAreOnlyCounted(t *testing.T) {
	t.Parallel()
	projects := map[string]map[string]string{"p1": labels(), "p2": labels("team", "shared"), "p3": labels("team", "shared")}
	p := ingress(apiv1.IngressRule{From: []apiv1.Peer{
		{ProjectSelector: &apiv1.Selector{MatchLabels: labels("team", "shared")}},
		{EnvironmentSelector: sel("tier", "db")},
	}})
	peers := []apiv1.Environment{db, foreign, env("y1", "p3", "198.18.7.1"), env("y2", "p3", "198.18.7.2")}
	full := EffectiveAcross(web, []apiv1.Policy{p}, peers, projects)

	got := Redact(full, func(id string) bool { return id == "p2" })
	cross := got.Ingress[0].Peers[0]
	if want := []apiv1.PeerEnvironment{{ID: "x1", Name: "env-x1", Address: "198.18.9.9", ProjectID: "p2"}}; !cmp.Equal(cross.Environments, want) || cross.Hidden != 2 {
		t.Errorf("cross-project peer = %+v (hidden %d), want only p2's environment named and p3's two counted", cross.Environments, cross.Hidden)
	}
	if own := got.Ingress[0].Peers[1]; len(own.Environments) != 1 || own.Hidden != 0 {
		t.Errorf("own-project peer = %+v, want its environments named whatever the caller reads", own)
	}
	if n := len(full.Ingress[0].Peers[0].Environments); n != 3 {
		t.Errorf("Redact changed the policy it was given: %d peers: want 3", n)
	}
	none := Redact(full, func(string) bool { return false }).Ingress[0].Peers[0]
	if len(none.Environments) != 0 || none.Environments == nil || none.Hidden != 3 {
		t.Errorf("a caller of no other project reads %+v, want an empty list and a count of 3", none)
	}
}
