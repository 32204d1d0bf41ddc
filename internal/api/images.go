package api

import (
	"mime"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// imageMediaTypes are the Content-Types an image archive may be sent as
// (none at all is taken as a tar too).
var imageMediaTypes = []string{"application/x-tar", "application/octet-stream"}

// importUploadTime bounds how long an image archive may take to arrive:
// the server's one-minute read timeout is for JSON bodies.
const importUploadTime = time.Hour

// importImage streams the tar body into the image store (never into
// memory, and never through readBody's 1 MiB bound: the store bounds it,
// at 4 GiB by default). It is not an idempotent route: its body is not
// kept to hash, and importing the same archive again gives the same
// image, so a retry does no harm.
func (a *API) importImage(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	if fe := checkParams(q, []string{"name"}); fe != nil {
		return problem.Invalid(fe)
	}
	name := q.Get("name")
	if name == "" {
		return problem.Field(problem.Validation, "name", "is required: POST /v1/images?name=NAME, the name workloads give as workload.image")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !slices.Contains(imageMediaTypes, mt) {
			return problem.New(problem.MediaType, "Content-Type must be application/x-tar or application/octet-stream (an OCI image layout or a docker archive, as a tar), not %q", ct)
		}
	}
	if limit := a.control.ImageArchiveLimit(); r.ContentLength > limit {
		return problem.New(problem.TooLarge, "the image archive is %d bytes, larger than the server takes (%d)", r.ContentLength, limit)
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(importUploadTime))
	return commit(a, w, r, http.StatusCreated, func(c control.Call) (apiv1.Image, error) {
		return a.control.ImportImage(r.Context(), c, name, r.Body)
	}, func(img apiv1.Image) answer {
		return answer{body: img, etag: control.ImageETag(img.Digest), location: "/v1/images/" + url.PathEscape(img.Name), resourceID: img.Name}
	})
}

func (a *API) listImages(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	if fe := checkParams(q, nil); fe != nil {
		return problem.Invalid(fe)
	}
	imgs, err := a.control.ListImages(r.Context())
	if err != nil {
		return err
	}
	writeList(w, imgs, "")
	return nil
}

func (a *API) getImage(w http.ResponseWriter, r *http.Request) error {
	img, err := a.control.GetImage(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", control.ImageETag(img.Digest))
	writeJSON(w, http.StatusOK, img)
	return nil
}

func (a *API) deleteImage(w http.ResponseWriter, r *http.Request) error {
	return commit(a, w, r, http.StatusNoContent, func(c control.Call) (apiv1.Image, error) {
		return a.control.DeleteImage(r.Context(), c, r.PathValue("name"))
	}, func(img apiv1.Image) answer { return answer{resourceID: img.Name} })
}
