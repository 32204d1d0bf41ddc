package client

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func intp(i int) *int { return &i }

var testPolicy = apiv1.Policy{
	ID:        "pol-1",
	ProjectID: "prj-1",
	PolicySpec: apiv1.PolicySpec{
		Name:                "db",
		EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{"app": "db"}},
		PolicyTypes:         []string{apiv1.Ingress},
		Ingress: []apiv1.IngressRule{{
			From:  []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"app": "api"}}}},
			Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: intp(5432)}},
		}},
		Egress: []apiv1.EgressRule{},
	},
	Generation: 1,
	ETag:       `"1"`,
}

func TestPolicies_CreateSendsTheSpecWithAnIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, reply{status: http.StatusCreated, body: testPolicy})
	c := newTestClient(t, f)
	in := apiv1.PolicyCreate{ProjectID: testPolicy.ProjectID, PolicySpec: testPolicy.PolicySpec}
	got, err := c.Policies().Create(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&testPolicy, got); diff != "" {
		t.Errorf("Create() (-want +got):\n%s", diff)
	}
	r := f.recorded()[0]
	if r.Method != http.MethodPost || r.Path != "/v1/policies" {
		t.Errorf("request = %s %s, want POST /v1/policies", r.Method, r.Path)
	}
	if r.Header.Get(apiv1.HeaderIdempotencyKey) == "" {
		t.Error("create carries no Idempotency-Key")
	}
	var sent apiv1.PolicyCreate
	if err := json.Unmarshal([]byte(r.Body), &sent); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, sent); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

func TestPolicies_UpdateAndDeleteSendIfMatchAndReportAStaleETag(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(http.StatusPreconditionFailed, "Precondition Failed"))
	c := newTestClient(t, f)
	name := "db2"
	_, err := c.Policies().Update(t.Context(), "pol-1", apiv1.PolicyPatch{Name: &name}, `"1"`)
	if !IsPreconditionFailed(err) {
		t.Fatalf("Update() error = %v, want a 412", err)
	}
	if err := c.Policies().Delete(t.Context(), "pol-1", `"1"`); !IsPreconditionFailed(err) {
		t.Fatalf("Delete() error = %v, want a 412", err)
	}
	reqs := f.recorded()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 (a 412 is not retried)", len(reqs))
	}
	for i, want := range []string{http.MethodPatch, http.MethodDelete} {
		if reqs[i].Method != want || reqs[i].Path != "/v1/policies/pol-1" || reqs[i].Header.Get("If-Match") != `"1"` {
			t.Errorf("request %d = %s %s If-Match %q, want %s /v1/policies/pol-1 If-Match \"1\"",
				i, reqs[i].Method, reqs[i].Path, reqs[i].Header.Get("If-Match"), want)
		}
	}
	if reqs[0].Body != `{"name":"db2"}` {
		t.Errorf("patch body = %s, want only the changed field", reqs[0].Body)
	}
}

func TestPolicies_GetOfAMissingPolicyIsNotFound(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(http.StatusNotFound, "Not Found"))
	_, err := newTestClient(t, f).Policies().Get(t.Context(), "pol-x")
	if !IsNotFound(err) {
		t.Fatalf("Get() error = %v, want a 404", err)
	}
}

func TestPolicies_ListFiltersByProjectAndFollowsPages(t *testing.T) {
	t.Parallel()
	second := testPolicy
	second.ID = "pol-2"
	f := newFakeAPI(t,
		reply{status: http.StatusOK, body: apiv1.List[apiv1.Policy]{Items: []apiv1.Policy{testPolicy}, NextCursor: "c1"}},
		reply{status: http.StatusOK, body: apiv1.List[apiv1.Policy]{Items: []apiv1.Policy{second}}},
	)
	got, err := newTestClient(t, f).Policies().List(t.Context(), ListOptions{ProjectID: "prj-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "pol-1" || got[1].ID != "pol-2" {
		t.Fatalf("List() = %+v, want pol-1 and pol-2", got)
	}
	reqs := f.recorded()
	if reqs[0].Query != "project_id=prj-1" || reqs[1].Query != "cursor=c1&project_id=prj-1" {
		t.Errorf("queries = %q, %q", reqs[0].Query, reqs[1].Query)
	}
}

func enforcementEnv(id, state string, gen, observed int64) apiv1.Environment {
	return apiv1.Environment{ID: id, ProjectID: "prj-1", State: state, Labels: map[string]string{},
		Enforcement: apiv1.Enforcement{Generation: gen, ObservedGeneration: observed, Enforced: gen == observed}}
}

func TestPolicies_WaitEnforcedLongPollsOnlyTheEnvironmentsNotYetEnforced(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t,
		reply{status: http.StatusOK, body: apiv1.List[apiv1.Environment]{Items: []apiv1.Environment{
			enforcementEnv("env-done", apiv1.StateReady, 2, 2),
			enforcementEnv("env-failed", apiv1.StateFailed, 2, 1),
			enforcementEnv("env-pending", apiv1.StateReady, 3, 2),
		}}},
		reply{status: http.StatusOK, body: enforcementEnv("env-pending", apiv1.StateReady, 3, 3)},
	)
	if err := newTestClient(t, f).Policies().WaitEnforced(t.Context(), "prj-1"); err != nil {
		t.Fatal(err)
	}
	reqs := f.recorded()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want a list and one long poll: %+v", len(reqs), reqs)
	}
	if reqs[0].Path != "/v1/environments" || reqs[0].Query != "project_id=prj-1" {
		t.Errorf("first request %s?%s, want the project's environments", reqs[0].Path, reqs[0].Query)
	}
	if reqs[1].Path != "/v1/environments/env-pending" || !strings.Contains(reqs[1].Query, "wait_for=enforced") {
		t.Errorf("second request %s?%s, want a long poll of env-pending for enforced", reqs[1].Path, reqs[1].Query)
	}
}

func TestPolicies_WaitEnforcedSkipsAnEnvironmentThatIsGone(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t,
		reply{status: http.StatusOK, body: apiv1.List[apiv1.Environment]{Items: []apiv1.Environment{enforcementEnv("env-x", apiv1.StateReady, 3, 2)}}},
		problem(http.StatusNotFound, "Not Found"),
	)
	if err := newTestClient(t, f).Policies().WaitEnforced(t.Context(), "prj-1"); err != nil {
		t.Fatalf("an environment deleted meanwhile must not fail the wait: %v", err)
	}
}

func TestPolicies_WaitEnforcedReportsTheEnforcementMessageAtTheDeadline(t *testing.T) {
	t.Parallel()
	stuck := enforcementEnv("env-stuck", apiv1.StateReady, 3, 2)
	stuck.Enforcement.Message = "nft: table busy"
	f := newFakeAPI(t,
		reply{status: http.StatusOK, body: apiv1.List[apiv1.Environment]{Items: []apiv1.Environment{stuck}}},
		reply{status: http.StatusOK, header: map[string]string{"X-Wait-Timeout": "true"}, body: stuck},
	)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err := newTestClient(t, f).Policies().WaitEnforced(ctx, "prj-1")
	if err == nil || !strings.Contains(err.Error(), "env-stuck") || !strings.Contains(err.Error(), "nft: table busy") {
		t.Fatalf("WaitEnforced() error = %v, want one naming the environment and its enforcement message", err)
	}
}
