package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Images are changed in the image store, outside the store's
// transactions; each change commits its audit event from the image
// store's hook (image.WithHook), which the image store undoes when the
// transaction fails, so that the change and its event go together.

// ImportImage stores the image archive body (an OCI layout or a docker
// archive, as a tar) under name, replacing the image that had it.
func (s *Service) ImportImage(ctx context.Context, c Call, name string, body io.Reader) (apiv1.Image, error) {
	if err := s.imagesSupported(); err != nil {
		return apiv1.Image{}, err
	}
	if fe := apiv1.ValidateImageRef("name", name); fe != nil {
		return apiv1.Image{}, problem.Invalid(fe)
	}
	var out apiv1.Image
	_, err := s.images.Import(ctx, name, body, image.WithHook(func(before, after *image.Image) error {
		var err error
		out, err = mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Image], error) {
			img := after.API()
			users, err := imageUsers(ctx, tx, name)
			if err != nil {
				return change[apiv1.Image]{}, err
			}
			img.InUse = len(users)
			ch := change[apiv1.Image]{result: img, action: "image.import", resource: ref("image", name), after: img}
			if before != nil {
				ch.before = before.API()
			}
			return ch, nil
		})
		return err
	}))
	return out, imageError(err, name)
}

// DeleteImage deletes the image name, refused while an environment's
// workload uses it.
func (s *Service) DeleteImage(ctx context.Context, c Call, name string) (apiv1.Image, error) {
	if err := s.imagesSupported(); err != nil {
		return apiv1.Image{}, err
	}
	var out apiv1.Image
	err := s.images.Delete(ctx, name, image.WithHook(func(before, _ *image.Image) error {
		var err error
		out, err = mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Image], error) {
			if err := checkImageIfMatch(c.IfMatch, before.Digest); err != nil {
				return change[apiv1.Image]{}, err
			}
			users, err := imageUsers(ctx, tx, name)
			if err != nil {
				return change[apiv1.Image]{}, err
			}
			if len(users) > 0 {
				return change[apiv1.Image]{}, problem.New(problem.Conflict,
					"image %q is the workload.image of %d environment(s) (%s); change their workload or delete them first", name, len(users), listSome(users, 5))
			}
			img := before.API()
			return change[apiv1.Image]{result: img, action: "image.delete", resource: ref("image", name), before: img}, nil
		})
		return err
	}))
	return out, imageError(err, name)
}

// ListImages lists the images, by name, each with the number of
// environments that use it.
func (s *Service) ListImages(ctx context.Context) ([]apiv1.Image, error) {
	if err := s.imagesSupported(); err != nil {
		return nil, err
	}
	uses, err := imageUses(ctx, s.store)
	if err != nil {
		return nil, err
	}
	imgs := s.images.List()
	out := make([]apiv1.Image, len(imgs))
	for i, img := range imgs {
		out[i] = img.API()
		out[i].InUse = uses[img.Name]
	}
	return out, nil
}

// GetImage returns the image name.
func (s *Service) GetImage(ctx context.Context, name string) (apiv1.Image, error) {
	if err := s.imagesSupported(); err != nil {
		return apiv1.Image{}, err
	}
	img, err := s.images.Get(name)
	if err != nil {
		return apiv1.Image{}, imageError(err, name)
	}
	users, err := imageUsers(ctx, s.store, name)
	if err != nil {
		return apiv1.Image{}, err
	}
	out := img.API()
	out.InUse = len(users)
	return out, nil
}

// ImageResolver resolves workloads' images through the store, as
// image.Store.Resolve does, auditing the pulls it makes (action
// image.pull, by the server); nil when the server has no image store.
func (s *Service) ImageResolver() interface {
	Resolve(ctx context.Context, ref string, opts ...image.Option) (image.Resolved, error)
} {
	if s.images == nil {
		return nil
	}
	return imageResolver{s}
}

type imageResolver struct{ s *Service }

// Resolve resolves name; the audit hook replaces any hook in opts.
func (r imageResolver) Resolve(ctx context.Context, name string, opts ...image.Option) (image.Resolved, error) {
	return r.s.images.Resolve(ctx, name, append(opts, image.WithHook(func(_, after *image.Image) error {
		_, err := mutate(ctx, r.s, Call{Actor: ServerActor}, func(tx store.Tx) (change[apiv1.Image], error) {
			img := after.API()
			return change[apiv1.Image]{result: img, action: "image.pull", resource: ref("image", img.Name), after: img}, nil
		})
		return err
	}))...)
}

// ImageArchiveLimit is the largest image archive ImportImage takes.
func (s *Service) ImageArchiveLimit() int64 {
	if s.images == nil {
		return math.MaxInt64 // ImportImage says why it takes none
	}
	return s.images.MaxArchiveBytes()
}

// ImageETag is an image's ETag: its digest, which changes exactly when
// another image takes its name.
func ImageETag(digest string) string { return `"` + digest + `"` }

func checkImageIfMatch(ifMatch, digest string) error {
	cur := ImageETag(digest)
	if ifMatch == "" || etagMatches(ifMatch, cur) {
		return nil
	}
	return problem.New(problem.Precondition, "If-Match %s does not match the image's ETag %s: another image took the name since you read it; read it again and retry", ifMatch, cur)
}

func (s *Service) imagesSupported() error {
	if s.images == nil {
		return problem.New(problem.Unsupported, "this server has no image store")
	}
	return nil
}

// imageError is what the API answers for an error of the image store: a
// problem the hook or the request's body gave stays as it is.
func imageError(err error, name string) error {
	if err == nil {
		return nil
	}
	if p, ok := problem.As(err); ok {
		return p
	}
	switch {
	case errors.Is(err, image.ErrNotFound):
		return problem.NoSuch("image", name)
	case errors.Is(err, image.ErrTooLarge):
		return problem.New(problem.TooLarge, "%s", err.Error())
	case errors.Is(err, image.ErrInvalid):
		return problem.New(problem.Malformed, "the body is not an image the server can import: %s", err.Error())
	}
	return err
}

// imageUsers are the environments whose workload uses the image name.
func imageUsers(ctx context.Context, r store.Reader, name string) ([]string, error) {
	var ids []string
	err := eachEnvironment(ctx, r, func(e apiv1.Environment) {
		if e.Workload != nil && e.Workload.Image == name {
			ids = append(ids, e.ID)
		}
	})
	return ids, err
}

// imageUses counts the environments that use each image.
func imageUses(ctx context.Context, r store.Reader) (map[string]int, error) {
	uses := map[string]int{}
	err := eachEnvironment(ctx, r, func(e apiv1.Environment) {
		if e.Workload != nil {
			uses[e.Workload.Image]++
		}
	})
	return uses, err
}

func eachEnvironment(ctx context.Context, r store.Reader, fn func(apiv1.Environment)) error {
	q := store.ListQuery{Limit: store.MaxLimit}
	for {
		page, next, err := r.ListEnvironments(ctx, q)
		if err != nil {
			return err
		}
		for _, e := range page {
			fn(e)
		}
		if next == "" {
			return nil
		}
		q.Cursor = next
	}
}

// listSome names the first n of ids, and how many more there are.
func listSome(ids []string, n int) string {
	if len(ids) <= n {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:n], ", "), len(ids)-n)
}
