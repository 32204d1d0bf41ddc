package control

import (
	"context"
	"errors"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// nameConflict turns a store conflict into a 409 naming the name field
// and, in existing_id, the object that holds the name, so a client can
// adopt it (terraform import) instead of guessing. The caller already
// may write in that project, so the id tells it nothing it could not list.
func nameConflict(ctx context.Context, tx store.Reader, err error, kind, projectID, name string) error {
	if !errors.Is(err, store.ErrConflict) {
		return err
	}
	msg := "is already taken by another " + kind
	if kind != "project" {
		msg += " of this project"
	}
	e := problem.Field(problem.Conflict, "name", msg)
	if id, ok := holderOf(ctx, tx, kind, projectID, name); ok {
		e.ExistingID = id
		e.Detail += " (" + id + ")"
	}
	return e
}

// holderOf finds the id of the kind's object named name, in projectID for
// environments and policies. Names are unique there; it pages through
// the list, which costs only on a conflict.
func holderOf(ctx context.Context, tx store.Reader, kind, projectID, name string) (string, bool) {
	switch kind {
	case "project":
		return findName(ctx, tx.ListProjects, store.ListQuery{}, name, func(p apiv1.Project) (string, string) { return p.ID, p.Name })
	case "environment":
		return findName(ctx, tx.ListEnvironments, store.ListQuery{ProjectID: projectID}, name, func(e apiv1.Environment) (string, string) { return e.ID, e.Name })
	case "policy":
		return findName(ctx, tx.ListPolicies, store.ListQuery{ProjectID: projectID}, name, func(p apiv1.Policy) (string, string) { return p.ID, p.Name })
	case "assertion":
		return findName(ctx, tx.ListAssertions, store.ListQuery{ProjectID: projectID}, name, func(a apiv1.Assertion) (string, string) { return a.ID, a.Name })
	}
	return "", false
}

func findName[T any](ctx context.Context, list func(context.Context, store.ListQuery) ([]T, string, error), q store.ListQuery, name string, idName func(T) (string, string)) (string, bool) {
	q.Limit = store.MaxLimit
	for {
		page, next, err := list(ctx, q)
		if err != nil {
			return "", false
		}
		for _, obj := range page {
			if id, n := idName(obj); n == name {
				return id, true
			}
		}
		if next == "" {
			return "", false
		}
		q.Cursor = next
	}
}

// projectExists is the check that an object's project_id names a project.
func projectExists(ctx context.Context, tx store.Reader, id string) error {
	if _, err := tx.GetProject(ctx, id); errors.Is(err, store.ErrNotFound) {
		return NoSuchProject(id)
	} else if err != nil {
		return err
	}
	return nil
}

// NoSuchProject is the answer to a body naming a project that does not
// exist, or that the caller may not see: the two must look the same.
func NoSuchProject(id string) *problem.Error {
	e := problem.NoSuch("project", id)
	e.Fields = []apiv1.FieldError{{Field: "project_id", Message: "names no project"}}
	return e
}
