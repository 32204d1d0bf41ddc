package api_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/version"
)

func TestWhoAmI_AnswersTheTokensIdentityScopeAndExpiryAndTheServerAndItsDriverNeverTheSecret(t *testing.T) {
	h := newHarness(t)
	p := h.project("scoped")
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var editor apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "ci-editor", Role: apiv1.RoleEditor, ProjectID: p.ID, ExpiresAt: &expires}).json(t, 201, &editor)

	r := h.do("GET", "/v1/whoami", nil, "Authorization", "Bearer "+editor.Secret)
	var who apiv1.WhoAmI
	r.json(t, 200, &who)
	want := apiv1.WhoAmI{
		TokenID: editor.ID, Name: "ci-editor", Role: apiv1.RoleEditor, ProjectID: p.ID, ExpiresAt: &expires,
		Server: apiv1.ServerInfo{Name: "isolationd", Version: version.String(), Driver: "simulate", Runtime: "simulate"},
	}
	if who.TokenID != want.TokenID || who.Name != want.Name || who.Role != want.Role || who.ProjectID != want.ProjectID ||
		who.ExpiresAt == nil || !who.ExpiresAt.Equal(expires) || who.Server != want.Server {
		t.Errorf("whoami = %+v, want %+v", who, want)
	}
	if bytes.Contains(r.body, []byte(editor.Secret)) || bytes.Contains(r.body, []byte("secret")) {
		t.Errorf("whoami shows the secret: %s", r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store: an identity must not be cached by a proxy", cc)
	}

	// The admin's token spans the organization: no project, no expiry.
	var admin apiv1.WhoAmI
	h.do("GET", "/v1/whoami", nil).json(t, 200, &admin)
	if admin.Role != apiv1.RoleAdmin || admin.ProjectID != "" || admin.ExpiresAt != nil || admin.TokenID == "" {
		t.Errorf("admin whoami = %+v", admin)
	}
}

func TestWhoAmI_WithoutAValidTokenIs401(t *testing.T) {
	h := newHarness(t)
	h.do("GET", "/v1/whoami", nil, "Authorization", "").problem(t, 401, "unauthorized", "")
	h.do("GET", "/v1/whoami", nil, "Authorization", "Bearer isot_made-up").problem(t, 401, "unauthorized", "")
}

func TestHealthz_NamesTheServerVersion(t *testing.T) {
	h := newHarness(t)
	var body struct{ Status, Version string }
	h.do("GET", "/healthz", nil, "Authorization", "").json(t, 200, &body)
	if body.Status != "ok" || body.Version != version.String() || strings.TrimSpace(body.Version) == "" {
		t.Errorf("/healthz = %+v, want status ok and version %q", body, version.String())
	}
}
