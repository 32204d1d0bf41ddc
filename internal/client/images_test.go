package client_test

import (
	"os"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

func TestImages_ImportListGetDeleteAgainstTheServer(t *testing.T) {
	srv := startServer(t, server.Config{})
	c := adminClient(t, srv)
	ctx := t.Context()
	img := imagetest.Scratch(t, imagetest.Options{Files: []imagetest.File{{Path: "hello", Data: []byte("hi")}}})
	f, err := os.Open(imagetest.WriteDockerTar(t, img))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := c.Images().Import(ctx, "team/dev:1.4", f)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "team/dev:1.4" || !strings.HasPrefix(got.Digest, "sha256:") || got.Layers != 1 {
		t.Fatalf("imported %+v", got)
	}
	list, err := c.Images().List(ctx)
	if err != nil || len(list) != 1 || list[0].Digest != got.Digest {
		t.Fatalf("list %+v %v", list, err)
	}
	one, err := c.Images().Get(ctx, "team/dev:1.4")
	if err != nil || *one != *got {
		t.Fatalf("get %+v %v, want %+v", one, err, got)
	}
	if err := c.Images().Delete(ctx, "team/dev:1.4", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Images().Get(ctx, "team/dev:1.4"); !client.IsNotFound(err) {
		t.Fatalf("get after delete: %v, want 404", err)
	}
}

func TestImages_ImportOfABadArchiveSaysWhy(t *testing.T) {
	srv := startServer(t, server.Config{})
	c := adminClient(t, srv)
	_, err := c.Images().Import(t.Context(), "team/dev:1", strings.NewReader("not a tar"))
	if client.StatusCode(err) != 400 || !strings.Contains(err.Error(), "not an image") {
		t.Fatalf("import of garbage: %v, want a 400 saying why", err)
	}
	auditor, err := c.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: "v", Role: apiv1.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	ac := newClient(t, client.Config{Endpoint: srv.URL(), Token: auditor.Secret})
	if _, err := ac.Images().Import(t.Context(), "team/dev:1", strings.NewReader("x")); client.StatusCode(err) != 403 {
		t.Fatalf("import by an auditor: %v, want 403", err)
	}
}
