package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestIdempotencyKeys_ACommittedCreateAnswersWhatItMade(t *testing.T) {
	h := newHarness(t)
	p := h.project("keys")
	var env apiv1.Environment
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"}, apiv1.HeaderIdempotencyKey, "key-web").json(t, 202, &env)

	var got apiv1.IdempotencyKey
	h.do("GET", "/v1/idempotency-keys/key-web", nil).json(t, 200, &got)
	if got.Key != "key-web" || got.State != apiv1.IdempotencyCommitted || got.Method != "POST" || got.Path != "/v1/environments" ||
		got.StatusCode != 202 || got.ResourceID != env.ID || got.CreatedAt == nil || got.ExpiresAt == nil {
		t.Fatalf("answer %+v, want committed POST /v1/environments 202 naming %s", got, env.ID)
	}
}

func TestIdempotencyKeys_AnotherTokensKeyLooksExactlyLikeAnUnusedOne(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "mine"}, apiv1.HeaderIdempotencyKey, "admin-key").json(t, 201, nil)
	var other apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "other-admin", Role: apiv1.RoleAdmin}).json(t, 201, &other)

	theirs := h.do("GET", "/v1/idempotency-keys/admin-key", nil, "Authorization", "Bearer "+other.Secret).problem(t, 404, "not-found", "")
	unused := h.do("GET", "/v1/idempotency-keys/never-used", nil, "Authorization", "Bearer "+other.Secret).problem(t, 404, "not-found", "")
	if theirs.Detail != unused.Detail || strings.Contains(theirs.Detail, "admin-key") {
		t.Fatalf("another token's key answers %q, an unused key %q: they must not differ", theirs.Detail, unused.Detail)
	}
}

func TestIdempotencyKeys_ARefusedWriteCommittedNothing(t *testing.T) {
	h := newHarness(t)
	h.project("taken")
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "taken"}, apiv1.HeaderIdempotencyKey, "dup-key").problem(t, 409, "conflict", "name")
	h.do("GET", "/v1/idempotency-keys/dup-key", nil).problem(t, 404, "not-found", "")
}

func TestIdempotencyKeys_AMalformedKeyIsRefusedNamingTheRule(t *testing.T) {
	h := newHarness(t)
	p := h.do("GET", "/v1/idempotency-keys/"+strings.Repeat("k", 256), nil).problem(t, 400, "malformed-request", apiv1.HeaderIdempotencyKey)
	if !strings.Contains(p.Detail, "1-255 visible ASCII") {
		t.Fatalf("detail %q does not state the rule", p.Detail)
	}
}

func TestIdempotencyKeys_AWriteStillRunningIsInProgressThenCommitted(t *testing.T) {
	h := newHarness(t)
	// A create whose body is still arriving holds its key in flight.
	body, feed := io.Pipe()
	req, err := http.NewRequest("POST", h.url+"/v1/projects", body)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(apiv1.HeaderIdempotencyKey, "slow-key")
	done := make(chan *http.Response, 1)
	go func() {
		res, err := h.client.Do(req)
		if err != nil {
			t.Errorf("slow create: %v", err)
			close(done)
			return
		}
		done <- res
	}()
	_, _ = io.WriteString(feed, `{"name":`)

	// The server takes the mark once it has the headers; ask until it has.
	var got apiv1.IdempotencyKey
	deadline := time.Now().Add(10 * time.Second)
	for got.State != apiv1.IdempotencyInProgress {
		if time.Now().After(deadline) {
			t.Fatal("the create never showed as in progress")
		}
		r := h.do("GET", "/v1/idempotency-keys/slow-key", nil)
		if r.status == 200 {
			r.json(t, 200, &got)
		}
	}
	_, _ = io.WriteString(feed, `"slow"}`)
	feed.Close()
	res := <-done
	if res == nil {
		t.FailNow()
	}
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("slow create answered %d", res.StatusCode)
	}
	h.do("GET", "/v1/idempotency-keys/slow-key", nil).json(t, 200, &got)
	if got.State != apiv1.IdempotencyCommitted || got.ResourceID == "" {
		t.Fatalf("after the create: %+v, want committed with its project", got)
	}
}

func TestNameConflict_The409NamesTheObjectHoldingTheName(t *testing.T) {
	h := newHarness(t)
	p := h.project("holder")
	env := h.environment(p.ID, "web", nil)
	var pol apiv1.Policy
	body := apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: apiv1.PolicySpec{Name: "db", PolicyTypes: []string{"egress"}}}
	h.do("POST", "/v1/policies", body).json(t, 201, &pol)
	for _, tc := range []struct {
		path string
		body any
		want string
	}{
		{"/v1/projects", apiv1.ProjectCreate{Name: "holder"}, p.ID},
		{"/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"}, env.ID},
		{"/v1/policies", body, pol.ID},
	} {
		got := h.do("POST", tc.path, tc.body).problem(t, 409, "conflict", "name")
		if got.ExistingID != tc.want || !strings.Contains(got.Detail, tc.want) {
			t.Errorf("POST %s: 409 %+v, want existing_id %s", tc.path, got, tc.want)
		}
	}
	// A rename onto a taken name says which object holds it too.
	other := h.environment(p.ID, "api", nil)
	got := h.do("PATCH", "/v1/environments/"+other.ID, apiv1.EnvironmentPatch{Name: ptr("web")}).problem(t, 409, "conflict", "name")
	if got.ExistingID != env.ID {
		t.Errorf("rename: existing_id %q, want %s", got.ExistingID, env.ID)
	}
}
