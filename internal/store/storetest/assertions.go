package storetest

import (
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func assertion(projectID, name string) apiv1.Assertion {
	ts := now()
	return apiv1.Assertion{
		ID: newID("ast"), ProjectID: projectID,
		AssertionSpec: apiv1.AssertionSpec{
			Name: name, From: apiv1.AssertionSource{Environment: "web"},
			To:       apiv1.AssertionTarget{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"tier": "db"}}},
			Protocol: apiv1.ProtocolTCP, Port: 5432, Expect: apiv1.ExpectAllow,
		},
		Generation: 1, CreatedAt: ts, UpdatedAt: ts, ETag: `"1"`,
	}
}

// testAssertions: assertions are created, read, listed by project and
// deleted; a name is unique within its project; a missing project is not
// found; and deleting the project deletes its assertions.
func testAssertions(t *testing.T, st store.Store) {
	p := mustProject(t, st, "alpha")
	other := mustProject(t, st, "beta")
	a, b, c := assertion(p.ID, "web-reaches-db"), assertion(p.ID, "web-not-ssh"), assertion(other.ID, "web-reaches-db")
	update(t, st, func(tx store.Tx) error {
		for _, x := range []apiv1.Assertion{a, b, c} {
			if err := tx.CreateAssertion(ctx, x); err != nil {
				return err
			}
		}
		got, err := tx.GetAssertion(ctx, a.ID)
		diff(t, "read inside the creating transaction", got, a)
		return err
	})
	got, err := st.GetAssertion(ctx, b.ID)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	diff(t, "read after create", got, b)
	listed, _, err := st.ListAssertions(ctx, store.ListQuery{ProjectID: p.ID})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(listed) != 2 || listed[0].ProjectID != p.ID || listed[1].ProjectID != p.ID {
		t.Fatalf("list of project alpha = %+v, want its two assertions", listed)
	}

	dup := assertion(p.ID, a.Name)
	wantErr(t, st.Update(ctx, func(tx store.Tx) error { return tx.CreateAssertion(ctx, dup) }), store.ErrConflict)
	wantErr(t, st.Update(ctx, func(tx store.Tx) error { return tx.CreateAssertion(ctx, assertion(newID("prj"), "x")) }), store.ErrNotFound)

	update(t, st, func(tx store.Tx) error { return tx.DeleteAssertion(ctx, b.ID) })
	_, err = st.GetAssertion(ctx, b.ID)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, st.Update(ctx, func(tx store.Tx) error { return tx.DeleteAssertion(ctx, b.ID) }), store.ErrNotFound)

	update(t, st, func(tx store.Tx) error { return tx.DeleteProject(ctx, p.ID) })
	_, err = st.GetAssertion(ctx, a.ID)
	wantErr(t, err, store.ErrNotFound)
	if _, err := st.GetAssertion(ctx, c.ID); err != nil {
		t.Fatalf("another project's assertion after the delete: %v", err)
	}
}
