package provider

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// memPrivate is private state in memory.
type memPrivate map[string][]byte

func (m memPrivate) GetKey(_ context.Context, key string) ([]byte, diag.Diagnostics) {
	return m[key], nil
}

func TestPrivateETag_RoundTripsAndIsEmptyWhenNeverStored(t *testing.T) {
	t.Parallel()
	var diags diag.Diagnostics
	if got := privateETagOf(context.Background(), memPrivate{}, &diags); got != "" {
		t.Errorf("no stored ETag: got %q, want none (the request goes without If-Match)", got)
	}
	stored := memPrivate{privateETag: etagJSON(`"7"`)}
	if got := privateETagOf(context.Background(), stored, &diags); got != `"7"` {
		t.Errorf("stored ETag: got %q, want %q", got, `"7"`)
	}
	if diags.HasError() {
		t.Errorf("diagnostics: %v", diags)
	}
}

func TestConflictHint_TurnsA412IntoRefreshAndRetry(t *testing.T) {
	t.Parallel()
	stale := fmt.Errorf("updating: %w", &client.Error{StatusCode: http.StatusPreconditionFailed, Problem: apiv1.Problem{Title: "Precondition Failed"}})
	got := conflictHint(stale, "policy", "pol-1")
	for _, want := range []string{"policy pol-1 was changed outside Terraform", "nothing was overwritten", "terraform plan -refresh-only", "Precondition Failed"} {
		if !strings.Contains(got, want) {
			t.Errorf("hint %q lacks %q", got, want)
		}
	}
	other := &client.Error{StatusCode: http.StatusConflict, Problem: apiv1.Problem{Title: "Conflict"}}
	if got := conflictHint(other, "policy", "pol-1"); got != other.Error() {
		t.Errorf("a 409 became %q, want the server's error as it is", got)
	}
}
