package api_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
)

func init() {
	// openapi.json documents image archives as binary bodies; the
	// validator reads octet-stream ones, and a tar is read the same way.
	openapi3filter.RegisterBodyDecoder("application/x-tar", openapi3filter.FileBodyDecoder)
}

// imageArchive is a small image (no busybox: one file holding seed) as
// an OCI layout tar.
func imageArchive(t *testing.T, seed string) []byte {
	t.Helper()
	img := imagetest.Scratch(t, imagetest.Options{Files: []imagetest.File{{Path: "seed", Data: []byte(seed)}}, Cmd: []string{"/seed"}})
	b, err := os.ReadFile(imagetest.WriteOCITar(t, img))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tarBody(hdr ...string) []string {
	return append([]string{"Content-Type", "application/x-tar"}, hdr...)
}

// importImage imports archive as name, as the admin.
func (h *harness) importImage(name string, archive []byte) apiv1.Image {
	h.t.Helper()
	var img apiv1.Image
	h.do("POST", "/v1/images?name="+name, archive, tarBody()...).json(h.t, 201, &img)
	return img
}

func TestImages_AdminImportsReadsAndDeletesThemAudited(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/images?name=team/dev:1.4", imageArchive(t, "one"), tarBody("X-Request-Id", "import-1")...)
	var img apiv1.Image
	r.json(t, 201, &img)
	if img.Name != "team/dev:1.4" || !strings.HasPrefix(img.Digest, "sha256:") || img.Layers != 1 || img.Size <= 0 || img.Source != "import" || img.InUse != 0 || img.CreatedAt.IsZero() {
		t.Fatalf("imported %+v", img)
	}
	if r.header.Get("Location") != "/v1/images/team%2Fdev:1.4" || r.header.Get("ETag") != `"`+img.Digest+`"` {
		t.Errorf("Location %q, ETag %q", r.header.Get("Location"), r.header.Get("ETag"))
	}

	var list apiv1.List[apiv1.Image]
	h.do("GET", "/v1/images", nil).json(t, 200, &list)
	if len(list.Items) != 1 || list.Items[0].Digest != img.Digest {
		t.Fatalf("list %+v", list)
	}
	var got apiv1.Image
	r = h.do("GET", "/v1/images/team%2Fdev:1.4", nil)
	r.json(t, 200, &got)
	if got != img || r.header.Get("ETag") != `"`+img.Digest+`"` {
		t.Errorf("GET: %+v (ETag %s), want %+v", got, r.header.Get("ETag"), img)
	}
	// Unescaped too, for curl users: not in the document, which has the
	// name in one segment.
	req, _ := http.NewRequest("GET", h.url+"/v1/images/team/dev:1.4", nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	if res, err := h.client.Do(req); err != nil || res.StatusCode != 200 {
		t.Errorf("GET with the name unescaped: %v %v", res, err)
	} else {
		res.Body.Close()
	}

	// Importing the name again replaces the image.
	var second apiv1.Image
	h.do("POST", "/v1/images?name=team/dev:1.4", imageArchive(t, "two"), tarBody()...).json(t, 201, &second)
	if second.Digest == img.Digest {
		t.Fatalf("the second import kept the first digest")
	}
	h.do("DELETE", "/v1/images/team%2Fdev:1.4", nil, "If-Match", `"`+img.Digest+`"`).problem(t, 412, "precondition-failed", "")
	h.do("DELETE", "/v1/images/team%2Fdev:1.4", nil, "If-Match", `"`+second.Digest+`"`, "X-Request-Id", "delete-1").json(t, 204, nil)
	h.do("GET", "/v1/images/team%2Fdev:1.4", nil).problem(t, 404, "not-found", "")

	for rid, want := range map[string]string{"import-1": "image.import", "delete-1": "image.delete"} {
		var evs apiv1.List[apiv1.AuditEvent]
		h.do("GET", "/v1/audit-events?request_id="+rid, nil).json(t, 200, &evs)
		if len(evs.Items) != 1 || evs.Items[0].Action != want || evs.Items[0].Resource != (apiv1.ResourceRef{Type: "image", ID: "team/dev:1.4"}) || evs.Items[0].Changes == nil {
			t.Errorf("audit of %s: %+v, want one %s event of the image", rid, evs.Items, want)
		}
	}
}

func TestImages_OnlyAdminsChangeThemAndEveryoneReadsThem(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	editor := h.apiToken("editor", apiv1.RoleEditor, p.ID)
	viewer := h.apiToken("viewer", apiv1.RoleViewer, p.ID)
	pr := h.do("POST", "/v1/images?name=team/dev:1", imageArchive(t, "x"), tarBody(bearer(editor.Secret)...)...).problem(t, 403, "forbidden", "")
	if !strings.Contains(pr.Detail, "requires role admin") {
		t.Errorf("403 detail %q does not name the admin role", pr.Detail)
	}
	h.importImage("team/dev:1", imageArchive(t, "x"))
	h.do("DELETE", "/v1/images/team%2Fdev:1", nil, bearer(editor.Secret)...).problem(t, 403, "forbidden", "")
	var list apiv1.List[apiv1.Image]
	h.do("GET", "/v1/images", nil, bearer(viewer.Secret)...).json(t, 200, &list)
	if len(list.Items) != 1 {
		t.Errorf("the viewer lists %+v", list.Items)
	}
	h.do("GET", "/v1/images/team%2Fdev:1", nil, bearer(viewer.Secret)...).json(t, 200, nil)
}

func TestImages_DeletingAnImageInUseIsAConflictNamingTheEnvironment(t *testing.T) {
	h := newHarness(t)
	h.importImage("team/dev:1", imageArchive(t, "x"))
	p := h.project("payments")
	var env apiv1.Environment
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "api", Workload: &apiv1.WorkloadSpec{Image: "team/dev:1"}}).json(t, 202, &env)

	var img apiv1.Image
	h.do("GET", "/v1/images/team%2Fdev:1", nil).json(t, 200, &img)
	if img.InUse != 1 {
		t.Errorf("in_use %d, want 1", img.InUse)
	}
	pr := h.do("DELETE", "/v1/images/team%2Fdev:1", nil).problem(t, 409, "conflict", "")
	if !strings.Contains(pr.Detail, env.ID) || !strings.Contains(pr.Detail, "workload") {
		t.Errorf("409 detail %q does not name the environment %s", pr.Detail, env.ID)
	}
	h.do("GET", "/v1/images/team%2Fdev:1", nil).json(t, 200, nil)

	h.do("DELETE", "/v1/environments/"+env.ID, nil).json(t, 202, nil)
	h.wait(env.ID, "deleted")
	h.do("DELETE", "/v1/images/team%2Fdev:1", nil).json(t, 204, nil)
}

func TestImages_RefusalsNameWhatIsWrong(t *testing.T) {
	h := newHarness(t)
	archive := imageArchive(t, "x")
	h.do("GET", "/v1/images/team%2Fnone:1", nil).problem(t, 404, "not-found", "")
	h.do("DELETE", "/v1/images/team%2Fnone:1", nil).problem(t, 404, "not-found", "")
	h.do("POST", "/v1/images", archive, tarBody()...).problem(t, 400, "validation", "name")
	h.do("POST", "/v1/images?name=Team/Dev", archive, tarBody()...).problem(t, 400, "validation", "name")
	h.do("POST", "/v1/images?name=team/dev&tag=1", archive, tarBody()...).problem(t, 400, "validation", "tag")
	h.do("POST", "/v1/images?name=team/dev", archive, "Content-Type", "application/json").problem(t, 415, "unsupported-media-type", "")
	pr := h.do("POST", "/v1/images?name=team/dev", []byte("not a tar at all"), tarBody()...).problem(t, 400, "malformed-request", "")
	if !strings.Contains(pr.Detail, "not an image") {
		t.Errorf("400 detail %q", pr.Detail)
	}
	var list apiv1.List[apiv1.Image]
	h.do("GET", "/v1/images", nil).json(t, 200, &list)
	if len(list.Items) != 0 {
		t.Errorf("refused imports left %+v", list.Items)
	}
	// An octet-stream body is a tar too.
	h.do("POST", "/v1/images?name=team/dev", archive, "Content-Type", "application/octet-stream").json(t, 201, nil)
	if r := h.do("GET", "/v1/images/team%2Fdev", nil); r.status != http.StatusOK {
		t.Errorf("GET after an octet-stream import: %d", r.status)
	}
}
