package client_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

func TestWhoAmI_NamesTheTokensRoleAndScopeAndTheServer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	admin := newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	who, err := admin.WhoAmI(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if who.Role != apiv1.RoleAdmin || who.ProjectID != "" || who.Server.Name != "isolationd" || who.Server.Version == "" {
		t.Errorf("admin whoami = %+v", who)
	}

	p, err := admin.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "scope"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: "viewer", Role: apiv1.RoleViewer, ProjectID: p.ID})
	if err != nil {
		t.Fatal(err)
	}
	viewer := newClient(t, client.Config{Endpoint: srv.URL(), Token: tok.Secret})
	if who, err = viewer.WhoAmI(t.Context()); err != nil || who.TokenID != tok.ID || who.ProjectID != p.ID || who.Role != apiv1.RoleViewer {
		t.Errorf("viewer whoami = %+v, %v; want token %s of project %s", who, err, tok.ID, p.ID)
	}
}

func TestWhoAmI_ARefusedTokenIs401(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	c := newClient(t, client.Config{Endpoint: srv.URL(), Token: "isot_nobody-was-given-this", MaxRetries: -1})
	_, err := c.WhoAmI(t.Context())
	if client.StatusCode(err) != http.StatusUnauthorized || errors.Is(err, client.ErrNotIsolationd) {
		t.Fatalf("err = %v, want a 401 from isolationd", err)
	}
}

func TestWhoAmI_AnEndpointThatIsNotIsolationdIsErrNotIsolationd(t *testing.T) {
	t.Parallel()
	const secret = "isot_secret-that-must-not-leak"
	site := t.TempDir()
	if err := os.MkdirAll(filepath.Join(site, "v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("<html><body>hello</body></html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The handlers ignore write errors: what reaches the client is what the
	// test judges.
	cases := map[string]http.Handler{
		// A plain file server: its 404 is text, not a problem document.
		"static file server": http.FileServer(http.Dir(site)),
		// A site whose every page is the same HTML with 200.
		"HTML for every path": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<!doctype html><title>Welcome</title>"))
		}),
		// Another JSON API.
		"another JSON API": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"42","status":"ok"}`))
		}),
		// An endpoint that echoes the request, token included, in its 404.
		"echoing 404": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "not found: "+r.Header.Get("Authorization"), http.StatusNotFound)
		}),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := httptest.NewServer(h)
			t.Cleanup(fake.Close)
			c := newClient(t, client.Config{Endpoint: fake.URL, Token: secret, MaxRetries: -1})
			who, err := c.WhoAmI(t.Context())
			if !errors.Is(err, client.ErrNotIsolationd) {
				t.Fatalf("WhoAmI = %+v, %v; want ErrNotIsolationd", who, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error shows the token: %v", err)
			}
			t.Log(err)
		})
	}
}
