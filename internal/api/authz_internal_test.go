package api

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// Each refusal of package auth answers with one status and problem kind;
// the audit event records the same status.
func TestRefusalProblem_AnswersEachRefusalWithItsStatus(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest("GET", "/v1/policies/pol_x", nil)
	r.SetPathValue("id", "pol_x")
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, &requestInfo{perm: permPolicyRead}))
	for why, want := range map[auth.Refusal]int{
		auth.Unauthenticated: 401,
		auth.Forbidden:       403,
		auth.OutOfScope:      404,
		auth.RateLimited:     429,
	} {
		e := refusalProblem(r, why, "requires role editor: role viewer may not write policies")
		if got := httpStatus(e); got != want {
			t.Errorf("%s: status %d, want %d", why, got, want)
		}
		if missing := problem.NoSuch("policy", "pol_x"); why == auth.OutOfScope && (e.Kind != missing.Kind || e.Detail != missing.Detail) {
			t.Errorf("out of scope: %s %q, want the answer of a missing policy: %s %q", e.Kind, e.Detail, missing.Kind, missing.Detail)
		}
	}
}
