package client_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/client/clienttest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

func TestTokens_CreateUseListRevoke(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	admin := newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	ctx := t.Context()
	p, err := admin.Projects().Create(ctx, apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := admin.Tokens().Create(ctx, apiv1.TokenCreate{Name: "ci", Role: apiv1.RoleViewer, ProjectID: p.ID})
	if err != nil || tc.Secret == "" || tc.ETag == "" {
		t.Fatalf("create: %+v %v", tc, err)
	}
	viewer := newClient(t, client.Config{Endpoint: srv.URL(), Token: tc.Secret, MaxRetries: -1})
	if _, err := viewer.Projects().Get(ctx, p.ID); err != nil {
		t.Fatalf("the new token cannot read its project: %v", err)
	}
	// Lacking the role, the error says which role is needed.
	_, err = viewer.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"})
	if client.StatusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "requires role editor") {
		t.Fatalf("viewer creating an environment: %v", err)
	}
	if strings.Contains(err.Error(), tc.Secret) {
		t.Fatal("the error holds the secret")
	}
	got, err := admin.Tokens().Get(ctx, tc.ID)
	if err != nil || got.Name != "ci" || got.ProjectID != p.ID {
		t.Fatalf("get: %+v %v", got, err)
	}
	list, err := admin.Tokens().List(ctx, client.ListOptions{ProjectID: p.ID})
	if err != nil || len(list) != 1 || list[0].ID != tc.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := admin.Tokens().Delete(ctx, tc.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := viewer.Projects().Get(ctx, p.ID); client.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("revoked token: %v, want 401", err)
	}
	if _, err := admin.Tokens().Get(ctx, tc.ID); !client.IsNotFound(err) {
		t.Fatalf("get revoked: %v, want 404", err)
	}
}

func TestTokens_CreateAfterALostAnswerRevokesTheSecretlessTokenAndMakesAnother(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy := clienttest.NewLossyProxy(t, srv.URL(), clienttest.First(func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Path == "/v1/tokens"
	}))
	c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond})
	tc, err := c.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: "pipeline", Role: apiv1.RoleAuditor})
	if err != nil || tc.Secret == "" {
		t.Fatalf("create through a lossy network: %+v %v", tc, err)
	}
	all, err := c.Tokens().List(t.Context(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, tok := range all {
		if tok.Name == "pipeline" {
			named = append(named, tok.ID)
		}
	}
	if len(named) != 1 || named[0] != tc.ID {
		t.Fatalf("live tokens named pipeline: %v, want only %s (the secretless one revoked)", named, tc.ID)
	}
	works := newClient(t, client.Config{Endpoint: srv.URL(), Token: tc.Secret})
	if _, err := works.Projects().List(t.Context(), client.ListOptions{}); err != nil {
		t.Fatalf("the secret returned does not work: %v", err)
	}
	if lost := proxy.Lost(); len(lost) != 1 {
		t.Fatalf("lost %v: the test proved nothing", lost)
	}
}
