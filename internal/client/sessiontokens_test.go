package client_test

import (
	"net/http"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

func TestSessionTokens_MintedByADeveloperUsedAndRevoked(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	admin := adminClient(t, srv)
	ctx := t.Context()
	p, err := admin.Projects().Create(ctx, apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := admin.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	// The developer grant round-trips.
	granted, err := admin.Tokens().Create(ctx, apiv1.TokenCreate{Name: "bob", Role: apiv1.RoleViewer, ProjectID: p.ID, Developer: true})
	if err != nil || !granted.Developer {
		t.Fatalf("a viewer token granted developer: %+v, %v", granted, err)
	}
	if got, err := admin.Tokens().Get(ctx, granted.ID); err != nil || !got.Developer {
		t.Fatalf("read back: %+v, %v", got, err)
	}

	dev := newClient(t, client.Config{Endpoint: srv.URL(), Token: granted.Secret})
	s, err := dev.SessionTokens(env.ID).Create(ctx, apiv1.SessionTokenCreate{TTL: "10m"})
	if err != nil || s.Secret == "" || s.Role != apiv1.RoleSession || s.EnvironmentID != env.ID || s.ParentID != granted.ID {
		t.Fatalf("mint: %+v, %v", s, err)
	}
	session := newClient(t, client.Config{Endpoint: srv.URL(), Token: s.Secret, MaxRetries: -1})
	who, err := session.WhoAmI(ctx)
	if err != nil || who.TokenID != s.ID || who.EnvironmentID != env.ID || who.ProjectName != "payments" {
		t.Fatalf("whoami of the session token: %+v, %v", who, err)
	}
	if _, err := session.Environments().Get(ctx, env.ID); client.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("a session token reading its environment: %v, want 403", err)
	}
	if err := dev.SessionTokens(env.ID).Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := session.WhoAmI(ctx); client.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("a revoked session token: %v, want 401", err)
	}
	if err := dev.SessionTokens(env.ID).Delete(ctx, s.ID); !client.IsNotFound(err) {
		t.Fatalf("revoking it again: %v, want 404", err)
	}
}

func TestSessionTokens_CreateAfterALostAnswerRevokesTheSecretlessTokenAndMintsAnother(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	admin := adminClient(t, srv)
	p, err := admin.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := admin.Environments().Create(t.Context(), apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/environments/" + env.ID + "/session-tokens"
	proxy, c := losingFirstAnswer(t, srv, func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Path == path })
	s, err := c.SessionTokens(env.ID).Create(t.Context(), apiv1.SessionTokenCreate{})
	if err != nil || s.Secret == "" {
		t.Fatalf("mint through a lossy network: %+v %v", s, err)
	}
	all, err := admin.Tokens().List(t.Context(), client.ListOptions{ProjectID: p.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].ID != s.ID {
		t.Fatalf("live tokens of the project: %+v, want only %s (the secretless one revoked)", all, s.ID)
	}
	if lost := proxy.Lost(); len(lost) != 1 {
		t.Fatalf("lost %v: the test proved nothing", lost)
	}
}
