package client_test

import (
	"context"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// The provider shows a refused token's error as the client renders it, so
// the server's word for why (revoked, unknown) reaches the user, and never
// the secret.
func TestErrors_A401SaysWhyTheTokenWasRefused(t *testing.T) {
	srv := startServer(t, server.Config{})
	ctx := context.Background()
	admin := newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	tc, err := admin.Tokens().Create(ctx, apiv1.TokenCreate{Name: "ci", Role: apiv1.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Tokens().Delete(ctx, tc.ID, ""); err != nil {
		t.Fatal(err)
	}
	for secret, want := range map[string]string{
		tc.Secret: "token revoked",
		"isot_nobody-issued-this-secret-0123456789": "unknown token",
	} {
		_, err := newClient(t, client.Config{Endpoint: srv.URL(), Token: secret}).Projects().List(ctx, client.ListOptions{})
		if client.StatusCode(err) != 401 || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), secret) {
			t.Fatalf("error %v, want a 401 saying %q without the secret", err, want)
		}
	}
}
