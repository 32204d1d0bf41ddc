package client

import (
	"context"
	"net/http"
)

// collection is one /v1/<kind> API: the create, get, list, update and
// delete every collection makes the same way, for objects of type T.
type collection[T any] struct {
	c    *Client
	path string // such as "/v1/projects"
}

// item is the path of one object of the collection.
func (k collection[T]) item(id string) string { return k.path + "/" + escape(id) }

func (k collection[T]) create(ctx context.Context, in any) (*T, error) {
	return call[T](ctx, k.c, request{method: http.MethodPost, path: k.path, body: in})
}

func (k collection[T]) get(ctx context.Context, id string) (*T, error) {
	return call[T](ctx, k.c, request{method: http.MethodGet, path: k.item(id)})
}

func (k collection[T]) list(ctx context.Context, opts ListOptions) ([]T, error) {
	return listAll[T](ctx, k.c, k.path, opts)
}

func (k collection[T]) update(ctx context.Context, id string, patch any, ifMatch string) (*T, error) {
	return call[T](ctx, k.c, request{method: http.MethodPatch, path: k.item(id), body: patch, ifMatch: ifMatch})
}

func (k collection[T]) delete(ctx context.Context, id, ifMatch string) error {
	_, err := k.c.do(ctx, request{method: http.MethodDelete, path: k.item(id), ifMatch: ifMatch}, nil)
	return err
}
