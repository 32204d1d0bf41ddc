package store_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// FuzzListEnvironments lists environments with arbitrary filters, limits
// and cursors (any bytes: the API passes the cursor through). Every page
// is the reference's (every environment, filtered the slow way, in id
// order after the cursor, at most the clamped limit), and following
// next_cursor walks the rest exactly once.
func FuzzListEnvironments(f *testing.F) {
	for _, s := range []struct {
		project       uint8
		labels, state string
		limit         int
		cursor        string
	}{
		{0, "", "", 0, ""}, {1, "team=a", "", 3, ""}, {0, "team=b,tier=prod", "ready", 2, "env_05"},
		{2, "x.io/k=", "", -1, "env_"}, {3, "", "", 5000, ""}, {0, "tier=dev,tier=prod", "", 1, ""},
		{0, "", "pending", 1, "env_\xff"}, {1, "team=a,team=a", "failed", 4, "env_10\x00"}, {0, "nope=1", "", 0, "\x00"},
	} {
		f.Add(s.project, s.labels, s.state, s.limit, s.cursor)
	}
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(f.TempDir(), "isolationd.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	projects := []string{"", "prj_a", "prj_b", "prj_missing"}
	var all []apiv1.Environment
	err = st.Update(ctx, func(tx store.Tx) error {
		for _, id := range projects[1:3] {
			if err := tx.CreateProject(ctx, apiv1.Project{ID: id, Name: id[4:]}); err != nil {
				return err
			}
		}
		for i := range 30 {
			labels := map[string]string{"team": string(rune('a' + i%3)), "tier": []string{"dev", "prod"}[i%2]}
			if i%4 == 0 {
				labels["x.io/k"] = ""
			}
			id := "env_" + strconv.Itoa(i/10) + strconv.Itoa(i%10)
			if i == 29 {
				id = "env_é" // sorts after every ASCII id, as bytes do
			}
			e := apiv1.Environment{ID: id, ProjectID: projects[1+i%2], Name: "e" + strconv.Itoa(i), Labels: labels,
				State: apiv1.States[i%len(apiv1.States)]}
			if err := tx.CreateEnvironment(ctx, e); err != nil {
				return err
			}
			all = append(all, e)
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, project uint8, labels, state string, limit int, cursor string) {
		lq := store.ListQuery{ProjectID: projects[int(project)%len(projects)], State: state, Limit: limit, Cursor: cursor}
		if labels != "" {
			lq.Labels = map[string]string{}
			for term := range strings.SplitSeq(labels, ",") {
				k, v, _ := strings.Cut(term, "=")
				lq.Labels[k] = v
			}
			if len(lq.Labels) > apiv1.MaxLabelSelectorTerms {
				return // the API refuses more
			}
		}
		want, wantNext := referenceList(all, lq)
		items, next, err := st.ListEnvironments(ctx, lq)
		if err != nil {
			t.Fatalf("ListEnvironments(%+v): %v", lq, err)
		}
		if diff := cmp.Diff(ids(want), ids(items)); diff != "" || next != wantNext {
			t.Fatalf("ListEnvironments(%+v) differs from the reference (-want +got):\n%s\nnext %q, want %q", lq, diff, next, wantNext)
		}
		walked := ids(items)
		for pages := 0; next != ""; pages++ {
			if pages > len(all) {
				t.Fatalf("next_cursor does not end: %q", next)
			}
			lq.Cursor = next
			if items, next, err = st.ListEnvironments(ctx, lq); err != nil {
				t.Fatal(err)
			}
			walked = append(walked, ids(items)...)
		}
		lq.Cursor, lq.Limit = cursor, len(all)
		rest, _ := referenceList(all, lq)
		if diff := cmp.Diff(ids(rest), walked); diff != "" {
			t.Fatalf("following next_cursor from %q did not walk every match once (-want +got):\n%s", cursor, diff)
		}
	})
}

func referenceList(all []apiv1.Environment, lq store.ListQuery) ([]apiv1.Environment, string) {
	limit := lq.Limit
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	limit = min(limit, store.MaxLimit)
	var out []apiv1.Environment
	for _, e := range slices.SortedFunc(slices.Values(all), func(a, b apiv1.Environment) int { return strings.Compare(a.ID, b.ID) }) {
		ok := e.ID > lq.Cursor && (lq.ProjectID == "" || e.ProjectID == lq.ProjectID) && (lq.State == "" || e.State == lq.State)
		for k, v := range lq.Labels {
			if got, has := e.Labels[k]; !has || got != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		if len(out) == limit {
			return out, out[limit-1].ID
		}
		out = append(out, e)
	}
	return out, ""
}

func ids(envs []apiv1.Environment) []string {
	out := []string{}
	for _, e := range envs {
		out = append(out, e.ID)
	}
	return out
}
