package control

import (
	"context"
	"reflect"
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
		return change[apiv1.Project]{
			result: answer[0], action: "project.update", resource: ref("project", id), projectID: id, before: cur, after: next,
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
		envs, _, err := tx.ListEnvironments(ctx, store.ListQuery{ProjectID: id, Limit: 1})
		if err != nil {
			return change[ProjectDeleted]{}, err
		}
		pols, _, err := tx.ListPolicies(ctx, store.ListQuery{ProjectID: id, Limit: 1})
		if err != nil {
			return change[ProjectDeleted]{}, err
		}
		if len(envs) > 0 || len(pols) > 0 {
			return change[ProjectDeleted]{}, problem.New(problem.Conflict, "project %q still has environments or policies; delete them first", id)
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

// revokeProjectTokens revokes every live token scoped to project and
// returns their ids.
func revokeProjectTokens(ctx context.Context, tx store.Tx, project string, now time.Time) ([]string, error) {
	var revoked []string
	q := store.ListQuery{ProjectID: project, Limit: store.MaxLimit}
	for {
		page, next, err := tx.ListTokens(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, t := range page {
			if t.RevokedAt != nil {
				continue
			}
			t.RevokedAt = &now
			if err := tx.UpdateToken(ctx, t); err != nil {
				return nil, err
			}
			revoked = append(revoked, t.ID)
		}
		if next == "" {
			return revoked, nil
		}
		q.Cursor = next
	}
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
