package apiv1

import (
	"net/netip"
	"slices"
	"testing"
)

// Every state is classified once here: a state added later without a
// row fails, so it cannot fall through the predicates unnoticed.
func TestStatePredicates_ClassifyEveryState(t *testing.T) {
	t.Parallel()
	type class struct{ creating, transient, leaving bool }
	want := map[string]class{
		StatePending:      {creating: true, transient: true},
		StateProvisioning: {creating: true, transient: true},
		StateReady:        {},
		StateUpdating:     {transient: true},
		StateFailed:       {},
		StateDeleting:     {leaving: true},
		StateExpired:      {leaving: true},
	}
	for _, s := range States {
		w, ok := want[s]
		if !ok {
			t.Errorf("state %q has no row in this test: classify it", s)
			continue
		}
		got := class{StateIsCreating(s), StateIsTransient(s), StateIsLeaving(s)}
		if got != w {
			t.Errorf("state %q: creating, transient, leaving = %+v, want %+v", s, got, w)
		}
	}
	if len(want) != len(States) {
		t.Errorf("%d rows for %d states", len(want), len(States))
	}
	if StateIsCreating("") || StateIsTransient("") || StateIsLeaving("") {
		t.Error("an unknown state is classified")
	}
}

func TestRoles_ListsEveryRoleOnceMostPowerfulFirst(t *testing.T) {
	t.Parallel()
	if !slices.Equal(Roles, []string{RoleAdmin, RoleAuditor, RoleEditor, RoleDeveloper, RoleViewer}) {
		t.Fatalf("Roles = %v", Roles)
	}
}

func TestDefaultAddressPool_IsAPrivateIPv4Prefix(t *testing.T) {
	t.Parallel()
	p, err := netip.ParsePrefix(DefaultAddressPool)
	if err != nil || !p.Addr().Is4() || !p.Addr().IsPrivate() || p.Masked() != p {
		t.Fatalf("DefaultAddressPool %q: %v, %v", DefaultAddressPool, p, err)
	}
}
