package api

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func (a *API) createProject(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.ProjectCreate
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	now := a.now().UTC()
	p := apiv1.Project{
		ID: control.NewID("prj_"), Name: in.Name, Description: in.Description,
		Labels: apiv1.NormalizeLabels(in.Labels), Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: etag(1),
		EnvironmentQuota: a.quota,
	}
	setIfPresent(&p.EnvironmentQuota, in.EnvironmentQuota)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		if err := tx.CreateProject(ctx, p); err != nil {
			return nil, nameConflict(ctx, tx, err, "project", "", p.Name)
		}
		return &mutation{
			status: http.StatusCreated, body: p, generation: p.Generation, location: "/v1/projects/" + p.ID,
			action: "project.create", resource: ref("project", p.ID), projectID: p.ID, after: p,
		}, nil
	})
}

func (a *API) listProjects(w http.ResponseWriter, r *http.Request) error {
	lq, _, err := parseList(r, "limit", "cursor", "label")
	if err != nil {
		return err
	}
	if p := requestInfoFrom(r.Context()).principal; !p.OrgWide() {
		// A project-scoped token sees its own project only.
		items := []apiv1.Project{}
		if pr, err := a.store.GetProject(r.Context(), p.ProjectID); err == nil && lq.Cursor < pr.ID && hasLabels(pr.Labels, lq.Labels) {
			items = append(items, pr)
		}
		if err := withUsage(r.Context(), a.store, items); err != nil {
			return err
		}
		writeList(w, items, "")
		return nil
	}
	items, next, err := a.store.ListProjects(r.Context(), lq)
	if err != nil {
		return err
	}
	if err := withUsage(r.Context(), a.store, items); err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

// withUsage fills in the usage of projects, counted in one query.
func withUsage(ctx context.Context, r store.Reader, ps []apiv1.Project) error {
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

func (a *API) getProject(w http.ResponseWriter, r *http.Request) error {
	p := []apiv1.Project{targetProject(r)}
	if err := withUsage(r.Context(), a.store, p); err != nil {
		return err
	}
	writeObject(w, http.StatusOK, p[0], p[0].Generation)
	return nil
}

func (a *API) patchProject(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.ProjectPatch
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	id := idFromPath(r)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		cur, err := tx.GetProject(ctx, id)
		if err := writable(r, err, "project", id, cur.Generation); err != nil {
			return nil, err
		}
		next := cur
		setIfPresent(&next.Name, in.Name)
		setIfPresent(&next.Description, in.Description)
		setIfPresent(&next.EnvironmentQuota, in.EnvironmentQuota)
		if in.Labels != nil {
			next.Labels = apiv1.NormalizeLabels(*in.Labels)
		}
		if !reflect.DeepEqual(cur, next) {
			next.Generation, next.ETag, next.UpdatedAt = nextGeneration(next.Generation, a.now().UTC())
			if err := tx.UpdateProject(ctx, next); err != nil {
				return nil, nameConflict(ctx, tx, err, "project", "", next.Name)
			}
		}
		// A quota below the usage is allowed (it stops new creates, as
		// lowering a quota should) and the answer shows both.
		answer := []apiv1.Project{next}
		if err := withUsage(ctx, tx, answer); err != nil {
			return nil, err
		}
		return &mutation{
			status: http.StatusOK, body: answer[0], generation: next.Generation,
			action: "project.update", resource: ref("project", id), projectID: id, before: cur, after: next,
		}, nil
	})
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request) error {
	id := idFromPath(r)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		cur, err := tx.GetProject(ctx, id)
		if err := writable(r, err, "project", id, cur.Generation); err != nil {
			return nil, err
		}
		envs, _, err := tx.ListEnvironments(ctx, store.ListQuery{ProjectID: id, Limit: 1})
		if err != nil {
			return nil, err
		}
		pols, _, err := tx.ListPolicies(ctx, store.ListQuery{ProjectID: id, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(envs) > 0 || len(pols) > 0 {
			return nil, problem.New(problem.Conflict, "project %q still has environments or policies; delete them first", id)
		}
		// Tokens scoped to the project would otherwise outlive it, and
		// would reach a new project that took its id: revoke them with it.
		revoked, err := revokeProjectTokens(ctx, tx, id, a.now().UTC())
		if err != nil {
			return nil, err
		}
		if err := tx.DeleteProject(ctx, id); err != nil {
			return nil, err
		}
		m := &mutation{
			status: http.StatusNoContent,
			action: "project.delete", resource: ref("project", id), projectID: id, before: cur,
			committed: func() {
				for _, tid := range revoked {
					a.tokens.invalidate(tid)
				}
			},
		}
		if len(revoked) > 0 {
			m.after = map[string][]string{"revoked_tokens": revoked}
		}
		return m, nil
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

func ref(kind, id string) apiv1.ResourceRef { return apiv1.ResourceRef{Type: kind, ID: id} }

// notFoundOr names the missing object in a 404.
func notFoundOr(err error, kind, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return problem.NoSuch(kind, id)
	}
	return err
}

// projectExists is the check that an object's project_id names a project.
func projectExists(ctx context.Context, tx store.Reader, id string) error {
	if _, err := tx.GetProject(ctx, id); errors.Is(err, store.ErrNotFound) {
		return noSuchProject(id)
	} else if err != nil {
		return err
	}
	return nil
}

// noSuchProject is the answer to a body naming a project that does not
// exist, or that the caller may not see: the two must look the same.
func noSuchProject(id string) *problem.Error {
	e := problem.NoSuch("project", id)
	e.Fields = []apiv1.FieldError{{Field: "project_id", Message: "names no project"}}
	return e
}

func hasLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}
