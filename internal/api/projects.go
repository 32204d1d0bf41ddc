package api

import (
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
)

func (a *API) createProject(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.ProjectCreate
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	return commit(a, w, r, http.StatusCreated, func(c control.Call) (apiv1.Project, error) {
		return a.control.CreateProject(r.Context(), c, in)
	}, func(p apiv1.Project) answer {
		return answer{body: p, generation: p.Generation, location: "/v1/projects/" + p.ID, resourceID: p.ID}
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
		if err := control.WithUsage(r.Context(), a.store, items); err != nil {
			return err
		}
		writeList(w, items, "")
		return nil
	}
	items, next, err := a.store.ListProjects(r.Context(), lq)
	if err != nil {
		return err
	}
	if err := control.WithUsage(r.Context(), a.store, items); err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

func (a *API) getProject(w http.ResponseWriter, r *http.Request) error {
	p := []apiv1.Project{targetProject(r)}
	if err := control.WithUsage(r.Context(), a.store, p); err != nil {
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
	return commit(a, w, r, http.StatusOK, func(c control.Call) (apiv1.Project, error) {
		return a.control.PatchProject(r.Context(), c, id, in)
	}, func(p apiv1.Project) answer { return answer{body: p, generation: p.Generation, resourceID: id} })
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request) error {
	id := idFromPath(r)
	return commit(a, w, r, http.StatusNoContent, func(c control.Call) (control.ProjectDeleted, error) {
		return a.control.DeleteProject(r.Context(), c, id)
	}, func(control.ProjectDeleted) answer { return answer{resourceID: id} })
}

func (a *API) deleteProjectContents(w http.ResponseWriter, r *http.Request) error {
	id := idFromPath(r)
	return commit(a, w, r, http.StatusOK, func(c control.Call) (apiv1.ProjectContents, error) {
		return a.control.DeleteProjectContents(r.Context(), c, id)
	}, func(held apiv1.ProjectContents) answer { return answer{body: held, resourceID: id} })
}

func hasLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}
