package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

func TestImageCommands_ImportListAndRemoveOverTheAPI(t *testing.T) {
	srv, err := server.Start(context.Background(), server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	t.Setenv(envEndpoint, srv.URL())
	t.Setenv(envToken, srv.AdminToken())
	img := imagetest.Scratch(t, imagetest.Options{Files: []imagetest.File{{Path: "hello", Data: []byte("hi")}}})

	cli := func(want int, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if got := run(args, &stdout, &stderr); got != want {
			t.Fatalf("isolationd %s: exit %d, want %d; stdout %s stderr %s", strings.Join(args, " "), got, want, &stdout, &stderr)
		}
		return stdout.String() + stderr.String()
	}
	if out := cli(0, "image", "import", "team/dev:1", imagetest.WriteLayout(t, img)); !strings.Contains(out, "imported team/dev:1: sha256:") {
		t.Errorf("import of a layout directory says %q", out)
	}
	cli(0, "image", "import", "team/other:1", imagetest.WriteDockerTar(t, img))
	out := cli(0, "image", "list")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "team/dev:1") || !strings.Contains(out, "team/other:1") {
		t.Errorf("list says %q", out)
	}
	if out := cli(0, "image", "rm", "team/dev:1"); !strings.Contains(out, "deleted team/dev:1") {
		t.Errorf("rm says %q", out)
	}
	if out := cli(1, "image", "rm", "team/dev:1"); !strings.Contains(out, "404") {
		t.Errorf("rm of a deleted image says %q", out)
	}
	if out := cli(1, "image", "import", "team/dev:1", t.TempDir()); !strings.Contains(out, "not an OCI image layout") {
		t.Errorf("import of an empty directory says %q", out)
	}
	cli(2, "image", "import", "team/dev:1")
	t.Setenv(envToken, "")
	if out := cli(2, "image", "list"); !strings.Contains(out, envToken) {
		t.Errorf("list without a token says %q", out)
	}
}
