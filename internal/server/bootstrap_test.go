package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// TestBootstrap_RotationRevokesEveryOldBootstrapTokenBeyondTheFirstPage is
// the reproduction: S1, then 1,000 tokens, then S2, then S3. The token of
// S2 sorts after the first page of 1,000; it must be revoked all the same.
func TestBootstrap_RotationRevokesEveryOldBootstrapTokenBeyondTheFirstPage(t *testing.T) {
	dir := t.TempDir()
	s1, s2, s3 := "isot_bootstrap-secret-one-0123456789", "isot_bootstrap-secret-two-0123456789", "isot_bootstrap-secret-three-012345678"
	srv := startWithSecret(t, dir, s1)
	ctx := context.Background()
	err := srv.Store().Update(ctx, func(tx store.Tx) error {
		for i := range 1000 {
			secret, err := auth.NewSecret()
			if err != nil {
				return err
			}
			tok := store.TokenRecord{
				Token: apiv1.Token{ID: control.NewID("tok_"), Name: fmt.Sprintf("pipeline-%04d", i), Role: apiv1.RoleAuditor, CreatedAt: time.Now().UTC(), ETag: `"1"`},
				Hash:  auth.HashSecret(secret),
			}
			if err := tx.CreateToken(ctx, tok); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop(t, srv)
	stop(t, startWithSecret(t, dir, s2))
	srv = startWithSecret(t, dir, s3)
	defer stop(t, srv)

	for _, old := range []string{s1, s2} {
		status, body := get(t, srv, "/v1/projects", old)
		if status != http.StatusUnauthorized || !strings.Contains(string(body), "token revoked") {
			t.Fatalf("an old bootstrap secret answered %d %s, want 401 token revoked", status, body)
		}
	}
	if status, body := get(t, srv, "/v1/projects", s3); status != http.StatusOK {
		t.Fatalf("the current bootstrap secret answered %d %s", status, body)
	}
	live := 0
	for cursor := ""; ; {
		status, body := get(t, srv, "/v1/tokens?limit=1000&cursor="+cursor, s3)
		var page apiv1.List[apiv1.Token]
		if status != http.StatusOK || json.Unmarshal(body, &page) != nil {
			t.Fatalf("list tokens: %d %s", status, body)
		}
		for _, tok := range page.Items {
			if tok.Name == BootstrapTokenName {
				live++
			}
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if live != 1 {
		t.Fatalf("%d live %s tokens listed, want exactly 1", live, BootstrapTokenName)
	}
	// Each rotation is audited as the revocation it is.
	status, body := get(t, srv, "/v1/audit-events?action=token.revoke&limit=1000", s3)
	var evs apiv1.List[apiv1.AuditEvent]
	if status != http.StatusOK || json.Unmarshal(body, &evs) != nil || len(evs.Items) != 2 {
		t.Fatalf("revocation events: %d %s, want 2", status, body)
	}
}

func TestBootstrap_ASecretThatCouldNeverBeSentIsRefused(t *testing.T) {
	for _, secret := range []string{"a long secret with spaces", "isot_trailing-nbsp-0123456789\u00a0"} {
		_, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), BootstrapToken: secret})
		if err == nil || !strings.Contains(err.Error(), "visible ASCII") || strings.Contains(err.Error(), secret) {
			t.Fatalf("Start with bootstrap token %q: %v, want the visible ASCII rule without the secret", secret, err)
		}
	}
}
