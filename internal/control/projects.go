package control

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// CreateProject creates a project; without a quota of its own it gets
// the service's default one.
func (s *Service) CreateProject(ctx context.Context, c Call, in apiv1.ProjectCreate) (apiv1.Project, error) {
	now := s.now()
	p := apiv1.Project{
		ID: NewID("prj_"), Name: in.Name, Description: in.Description,
		Labels: apiv1.NormalizeLabels(in.Labels), Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: apiv1.ETag(1),
		EnvironmentQuota: s.quota,
	}
	setIfPresent(&p.EnvironmentQuota, in.EnvironmentQuota)
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Project], error) {
		if err := tx.CreateProject(ctx, p); err != nil {
			return change[apiv1.Project]{}, nameConflict(ctx, tx, err, "project", "", p.Name)
		}
		return change[apiv1.Project]{
			result: p, action: "project.create", resource: ref("project", p.ID), projectID: p.ID, after: p,
		}, nil
	})
}

// PatchProject changes the fields of in that are present. The project
// it returns carries its usage: a quota below the usage is allowed (it
// stops new creates, as lowering a quota should) and the answer shows both.
func (s *Service) PatchProject(ctx context.Context, c Call, id string, in apiv1.ProjectPatch) (apiv1.Project, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Project], error) {
		cur, err := tx.GetProject(ctx, id)
		if err := writable(c, err, "project", id, cur.Generation); err != nil {
			return change[apiv1.Project]{}, err
		}
		next := cur
		setIfPresent(&next.Name, in.Name)
		setIfPresent(&next.Description, in.Description)
		setIfPresent(&next.EnvironmentQuota, in.EnvironmentQuota)
		if in.Labels != nil {
			next.Labels = apiv1.NormalizeLabels(*in.Labels)
		}
		if !reflect.DeepEqual(cur, next) {
			next.Generation, next.ETag, next.UpdatedAt = nextGeneration(next.Generation, s.now())
			if err := tx.UpdateProject(ctx, next); err != nil {
				return change[apiv1.Project]{}, nameConflict(ctx, tx, err, "project", "", next.Name)
			}
		}
		answer := []apiv1.Project{next}
		if err := WithUsage(ctx, tx, answer); err != nil {
			return change[apiv1.Project]{}, err
		}
		// Policies of any project that pick this one by its labels see
		// it come or go.
		affected, err := ProjectChangeAffects(ctx, tx, cur, next)
		if err != nil {
			return change[apiv1.Project]{}, err
		}
		if !maps.Equal(cur.Labels, next.Labels) {
			if err := keepAssertions(ctx, tx, guard{projects: []string{id}, changed: affected, undo: undoProjectLabels(cur)}); err != nil {
				return change[apiv1.Project]{}, err
			}
		}
		bumped, err := Invalidate(ctx, tx, affected, "")
		if err != nil {
			return change[apiv1.Project]{}, err
		}
		return change[apiv1.Project]{
			result: answer[0], action: "project.update", resource: ref("project", id), projectID: id, before: cur, after: next,
			reconcile: bumped,
		}, nil
	})
}

// ProjectDeleted is what deleting a project did.
type ProjectDeleted struct {
	Project apiv1.Project
	// RevokedTokens are the tokens scoped to the project, revoked with it.
	RevokedTokens []string
}

// DeleteProject deletes a project that has no environments and no
// policies, revoking the tokens scoped to it.
func (s *Service) DeleteProject(ctx context.Context, c Call, id string) (ProjectDeleted, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[ProjectDeleted], error) {
		cur, err := tx.GetProject(ctx, id)
		if err := writable(c, err, "project", id, cur.Generation); err != nil {
			return change[ProjectDeleted]{}, err
		}
		envs, pols, err := projectContents(ctx, tx, id)
		if err != nil {
			return change[ProjectDeleted]{}, err
		}
		if len(envs) > 0 || len(pols) > 0 {
			return change[ProjectDeleted]{}, problem.New(problem.Conflict,
				"project %q still holds %s; delete them first, or all at once with DELETE /v1/projects/%s/contents (force_destroy in Terraform)",
				id, holdings(envs, pols), id)
		}
		// Tokens scoped to the project would otherwise outlive it, and
		// would reach a new project that took its id: revoke them with it.
		revoked, err := revokeProjectTokens(ctx, tx, id, s.now())
		if err != nil {
			return change[ProjectDeleted]{}, err
		}
		if err := tx.DeleteProject(ctx, id); err != nil {
			return change[ProjectDeleted]{}, err
		}
		ch := change[ProjectDeleted]{
			result: ProjectDeleted{Project: cur, RevokedTokens: revoked},
			action: "project.delete", resource: ref("project", id), projectID: id, before: cur,
		}
		if len(revoked) > 0 {
			ch.after = map[string][]string{"revoked_tokens": revoked}
		}
		return ch, nil
	})
}

// DeleteProjectContents deletes every policy of a project and marks every
// environment of it deleting, in one change: the reconciler tears the
// environments down, after which the project can be deleted.
func (s *Service) DeleteProjectContents(ctx context.Context, c Call, id string) (apiv1.ProjectContents, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.ProjectContents], error) {
		cur, err := tx.GetProject(ctx, id)
		if err := writable(c, err, "project", id, cur.Generation); err != nil {
			return change[apiv1.ProjectContents]{}, err
		}
		envs, pols, err := projectContents(ctx, tx, id)
		if err != nil {
			return change[apiv1.ProjectContents]{}, err
		}
		out := apiv1.ProjectContents{Environments: []apiv1.ObjectRef{}, Policies: []apiv1.ObjectRef{}, Assertions: []apiv1.ObjectRef{}}
		// The project's own assertions go first: emptying it is what they
		// would refuse.
		asserts, err := listAll(func(cursor string) ([]apiv1.Assertion, string, error) {
			return tx.ListAssertions(ctx, store.ListQuery{ProjectID: id, Limit: store.MaxLimit, Cursor: cursor})
		})
		if err != nil {
			return change[apiv1.ProjectContents]{}, err
		}
		for _, a := range asserts {
			out.Assertions = append(out.Assertions, apiv1.ObjectRef{ID: a.ID, Name: a.Name})
			if err := tx.DeleteAssertion(ctx, a.ID); err != nil {
				return change[apiv1.ProjectContents]{}, err
			}
		}
		var reconcile []string
		for _, e := range envs {
			out.Environments = append(out.Environments, apiv1.ObjectRef{ID: e.ID, Name: e.Name})
			if apiv1.StateIsLeaving(e.State) {
				continue
			}
			_, more, err := s.markDeleting(ctx, tx, c, e)
			if err != nil {
				return change[apiv1.ProjectContents]{}, err
			}
			reconcile = append(reconcile, more...)
		}
		for _, p := range pols {
			out.Policies = append(out.Policies, apiv1.ObjectRef{ID: p.ID, Name: p.Name})
			more, err := deletePolicy(ctx, tx, p)
			if err != nil {
				return change[apiv1.ProjectContents]{}, err
			}
			reconcile = append(reconcile, more...)
		}
		slices.Sort(reconcile)
		return change[apiv1.ProjectContents]{
			result: out, action: "project.delete_contents", resource: ref("project", id), projectID: id, before: out,
			reconcile: slices.Compact(reconcile),
		}, nil
	})
}

// projectContents are every environment and policy of a project.
func projectContents(ctx context.Context, tx store.Tx, id string) ([]apiv1.Environment, []apiv1.Policy, error) {
	envs, err := Environments(ctx, tx, id, nil)
	if err != nil {
		return nil, nil, err
	}
	pols, err := ProjectPolicies(ctx, tx, id)
	return envs, pols, err
}

// holdings says what a project holds, naming the first few of each kind:
// "2 environments (web, db) and 1 policy (web)".
func holdings(envs []apiv1.Environment, pols []apiv1.Policy) string {
	var parts []string
	if len(envs) > 0 {
		parts = append(parts, counted(len(envs), "environment", "environments", func(i int) string { return envs[i].Name }))
	}
	if len(pols) > 0 {
		parts = append(parts, counted(len(pols), "policy", "policies", func(i int) string { return pols[i].Name }))
	}
	return strings.Join(parts, " and ")
}

// counted is "n things (a, b, c and 7 more)".
func counted(n int, one, many string, name func(int) string) string {
	const shown = 5
	kind := many
	if n == 1 {
		kind = one
	}
	names := make([]string, 0, shown)
	for i := 0; i < n && i < shown; i++ {
		names = append(names, name(i))
	}
	list := strings.Join(names, ", ")
	if n > shown {
		list += fmt.Sprintf(" and %d more", n-shown)
	}
	return fmt.Sprintf("%d %s (%s)", n, kind, list)
}

// revokeProjectTokens revokes every live token scoped to project and
// returns their ids.
func revokeProjectTokens(ctx context.Context, tx store.Tx, project string, now time.Time) ([]string, error) {
	revoked, err := revokeTokens(ctx, tx, store.ListQuery{ProjectID: project}, now)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, t := range revoked {
		ids = append(ids, t.ID)
	}
	return ids, nil
}

// WithUsage fills in the usage of projects, counted in one query.
func WithUsage(ctx context.Context, r store.Reader, ps []apiv1.Project) error {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	counts, err := r.CountProjectEnvironments(ctx, ids...)
	if err != nil {
		return err
	}
	for i := range ps {
		ps[i].Usage = apiv1.ProjectUsage{Environments: int64(counts[ps[i].ID])}
	}
	return nil
}
