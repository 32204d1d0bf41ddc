package control_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func TestImages_WithoutAnImageStoreAreNotImplemented(t *testing.T) {
	r := newRig(t)
	_, err1 := r.svc.ListImages(r.ctx)
	_, err2 := r.svc.GetImage(r.ctx, "team/dev:1")
	_, err3 := r.svc.ImportImage(r.ctx, call("i", 201), "team/dev:1", bytes.NewReader(nil))
	_, err4 := r.svc.DeleteImage(r.ctx, call("d", 204), "team/dev:1")
	for i, err := range []error{err1, err2, err3, err4} {
		if p, ok := problem.As(err); !ok || p.Kind != problem.Unsupported {
			t.Errorf("operation %d without an image store: %v, want %s", i+1, err, problem.Unsupported)
		}
	}
	if r.svc.ImageResolver() != nil {
		t.Error("an image resolver without an image store")
	}
}

// An import whose transaction fails leaves no image and no audit event:
// the change and its event go together.
func TestImportImage_ATransactionThatFailsLeavesNoImage(t *testing.T) {
	r := newRig(t)
	images, err := image.Open(filepath.Join(t.TempDir(), "images"), image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc := control.New(control.Options{Store: r.st, Clock: r.clock, Driver: "simulate", Images: images})
	archive, err := os.ReadFile(imagetest.WriteOCITar(t, imagetest.Scratch(t, imagetest.Options{Files: []imagetest.File{{Path: "a", Data: []byte("a")}}})))
	if err != nil {
		t.Fatal(err)
	}
	c := call("failing", 201)
	c.Within = func(context.Context, store.Tx, any) error { return errors.New("the answer could not be stored") }
	if _, err := svc.ImportImage(r.ctx, c, "team/dev:1", bytes.NewReader(archive)); err == nil {
		t.Fatal("the import succeeded")
	}
	if l := images.List(); len(l) != 0 {
		t.Errorf("the image store holds %+v", l)
	}
	img, err := svc.ImportImage(r.ctx, call("ok", 201), "team/dev:1", bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := r.st.ListAudit(r.ctx, store.AuditQuery{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].RequestID != "ok" || evs[0].Action != "image.import" || evs[0].Resource != (apiv1.ResourceRef{Type: "image", ID: img.Name}) {
		t.Errorf("audit trail %+v, want the one successful import", evs)
	}
}

// A workload's image that names a registry is pulled by the server, and
// the pull is on the audit trail as the server's.
func TestImageResolver_AuditsThePullsItMakes(t *testing.T) {
	r := newRig(t)
	images, err := image.Open(filepath.Join(t.TempDir(), "images"), image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc := control.New(control.Options{Store: r.st, Clock: r.clock, Driver: "simulate", Images: images})
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/dev:1"
	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, imagetest.Scratch(t, imagetest.Options{Files: []imagetest.File{{Path: "a", Data: []byte("a")}}})); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := svc.ImageResolver().Resolve(r.ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	evs, _, err := r.st.ListAudit(r.ctx, store.AuditQuery{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Action != "image.pull" || evs[0].Actor != control.ServerActor || evs[0].Resource.ID != ref {
		t.Fatalf("audit trail %+v, want one pull by the server", evs)
	}
}
