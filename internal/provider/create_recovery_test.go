package provider

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/client/clienttest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// heldCreate is a client whose first POST /v1/projects reaches the server
// and whose answer is held until the client gives up.
func heldCreate(t *testing.T) (viaProxy, direct *client.Client) {
	t.Helper()
	srv := startServerWith(t, server.Config{})
	isCreate := func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Path == "/v1/projects" }
	proxy := clienttest.NewFaultProxy(t, srv.URL(), 1, clienttest.Faults{Hold: clienttest.First(isCreate)})
	var err error
	if viaProxy, err = client.New(client.Config{Endpoint: proxy.URL, Token: srv.AdminToken()}); err != nil {
		t.Fatal(err)
	}
	if direct, err = client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()}); err != nil {
		t.Fatal(err)
	}
	return viaProxy, direct
}

func createProject(ctx context.Context, t *testing.T, c *client.Client, diags *diag.Diagnostics, name string) *apiv1.Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	projects := c.Projects()
	return createOrRecover(ctx, c, diags, "project", name,
		func(ctx context.Context) (*apiv1.Project, error) {
			return projects.Create(ctx, apiv1.ProjectCreate{Name: name})
		}, projects.Get)
}

func TestCreateOrRecover_ACreateCommittedWhileItsAnswerWasHeldIsReturnedWithAWarning(t *testing.T) {
	t.Parallel()
	c, direct := heldCreate(t)
	var diags diag.Diagnostics
	got := createProject(t.Context(), t, c, &diags, "held")
	all, err := direct.Projects().List(t.Context(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(all) != 1 || got.ID != all[0].ID {
		t.Fatalf("recovered %+v, the server holds %+v: want the one project made", got, all)
	}
	if diags.HasError() || diags.WarningsCount() != 1 || !strings.Contains(diags.Warnings()[0].Detail(), got.ID) {
		t.Fatalf("diagnostics %+v, want one warning naming %s", diags, got.ID)
	}
	// The warning says why the answer was missing: the create's own error.
	if d := diags.Warnings()[0].Detail(); !strings.Contains(d, "gave up after") || strings.Contains(d, "%!") {
		t.Fatalf("warning %q does not carry the create's failure", d)
	}
}

func TestCreateOrRecover_ACreateThatCommittedNothingReportsTheFailure(t *testing.T) {
	t.Parallel()
	c, direct := heldCreate(t)
	taken, err := direct.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "taken"})
	if err != nil {
		t.Fatal(err)
	}
	// The held create is refused (409) by the server: the key committed nothing.
	var diags diag.Diagnostics
	if got := createProject(t.Context(), t, c, &diags, "taken"); got != nil {
		t.Fatalf("recovered %+v from a create the server refused", got)
	}
	if !diags.HasError() || !strings.Contains(diags.Errors()[0].Detail(), "gave up after 1 attempt") {
		t.Fatalf("diagnostics %+v, want the create's own failure", diags)
	}
	if all, err := direct.Projects().List(t.Context(), client.ListOptions{}); err != nil || len(all) != 1 || all[0].ID != taken.ID {
		t.Fatalf("the server holds %+v (%v), want only %s", all, err, taken.ID)
	}
}

func TestAddCreateError_ANameConflictNamesTheHolderAndTheImportCommand(t *testing.T) {
	t.Parallel()
	_, direct := heldCreate(t)
	taken, err := direct.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "taken"})
	if err != nil {
		t.Fatal(err)
	}
	var diags diag.Diagnostics
	createProject(t.Context(), t, direct, &diags, "taken")
	if !diags.HasError() {
		t.Fatal("no error for a name already taken")
	}
	detail := diags.Errors()[0].Detail()
	for _, part := range []string{"already taken", "existing project " + taken.ID, "terraform import isolation_project.NAME " + taken.ID} {
		if !strings.Contains(detail, part) {
			t.Errorf("detail %q lacks %q", detail, part)
		}
	}
}

func TestCreate_NameConflictSaysOnceWhichObjectHoldsTheName(t *testing.T) {
	t.Parallel()
	srv := startServerWith(t, server.Config{})
	c, err := client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "taken"})
	if err != nil {
		t.Fatal(err)
	}
	var diags diag.Diagnostics
	if got := createOrRecover(t.Context(), c, &diags, "project", "taken", func(ctx context.Context) (*apiv1.Project, error) {
		return c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "taken"})
	}, c.Projects().Get); got != nil || len(diags) != 1 {
		t.Fatalf("created %+v with diagnostics %v, want one error", got, diags)
	}
	detail := diags[0].Detail()
	for part, want := range map[string]int{
		"taken by":   1,
		first.ID:     2, // the sentence naming the holder, and the import command
		"409":        0,
		"request id": 1,
		"terraform import isolation_project.NAME " + first.ID: 1,
	} {
		if got := strings.Count(detail, part); got != want {
			t.Errorf("%q appears %d times, want %d, in:\n%s", part, got, want, detail)
		}
	}
}
