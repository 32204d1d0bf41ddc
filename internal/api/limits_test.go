package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Fixtures for the limits: objects written straight into the store, since
// reaching a limit through the API would take thousands of requests.

func labelsN(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%03d", i)] = "v"
	}
	return m
}

// longLabels is n labels of the longest kind: a 253-character prefix, a
// 63-character name and a 63-character value.
func longLabels(n int) map[string]string {
	prefix := strings.Repeat("p", 253) + "/"
	m := make(map[string]string, n)
	for i := range n {
		m[prefix+fmt.Sprintf("%s%03d", strings.Repeat("n", 60), i)] = strings.Repeat("v", 63)
	}
	return m
}

func cidrPeers(n int) []apiv1.Peer {
	out := make([]apiv1.Peer, n)
	for i := range out {
		out[i] = apiv1.Peer{CIDR: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)}
	}
	return out
}

func ingressRules(n int) []apiv1.IngressRule {
	out := make([]apiv1.IngressRule, n)
	for i := range out {
		out[i] = apiv1.IngressRule{From: []apiv1.Peer{}, Ports: []apiv1.Port{}}
	}
	return out
}

func (h *harness) seed(fn func(ctx context.Context, tx store.Tx) error) {
	h.t.Helper()
	ctx := context.Background()
	must(h.t, h.srv.Store().Update(ctx, func(tx store.Tx) error { return fn(ctx, tx) }))
}

// seedEnvironments adds n ready environments to a project, with addresses
// from 198.18.0.0/15.
func (h *harness) seedEnvironments(projectID string, n int, labels map[string]string) {
	h.t.Helper()
	base := netip.MustParseAddr("198.18.0.1")
	h.seed(func(ctx context.Context, tx store.Tx) error {
		for i := range n {
			now := time.Now().UTC()
			addr := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
			if i == 0 {
				addr = base
			}
			id := control.NewID("env_")
			e := apiv1.Environment{
				ID: id, ProjectID: projectID, Name: strings.Repeat("e", 50) + "-" + id[len(id)-12:], Labels: labels,
				Resources: apiv1.Resources{CPUMillis: 1000, MemoryMB: 1024, DiskGB: 10}, State: apiv1.StateReady,
				Generation: 1, ETag: `"1"`, CreatedAt: now, UpdatedAt: now,
				Enforcement: apiv1.Enforcement{Driver: "simulate", Generation: 1, ObservedGeneration: 1, Enforced: true, Address: addr.String()},
			}
			if err := tx.CreateEnvironment(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// seedPolicies adds n policies to a project; spec(i) gives the i-th one's
// spec without its name.
func (h *harness) seedPolicies(projectID string, n int, spec func(i int) apiv1.PolicySpec) {
	h.t.Helper()
	h.seed(func(ctx context.Context, tx store.Tx) error {
		for i := range n {
			s := spec(i)
			s.Name = fmt.Sprintf("%s-%04d", strings.Repeat("p", 58), i)
			now := time.Now().UTC()
			p := apiv1.Policy{ID: control.NewID("pol_"), ProjectID: projectID, PolicySpec: s.Normalize(), Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: `"1"`}
			if err := tx.CreatePolicy(ctx, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// selectsNothing is an environment selector no environment carries, so
// that creating a policy re-enforces nothing.
var selectsNothing = apiv1.Selector{MatchLabels: map[string]string{"selects": "nothing"}}

func ingressSpec(rules []apiv1.IngressRule) apiv1.PolicySpec {
	return apiv1.PolicySpec{EnvironmentSelector: selectsNothing, PolicyTypes: []string{apiv1.Ingress}, Ingress: rules}
}

// limitCase is a rejected request and what its problem must say.
type limitCase struct {
	badRequest
	says string // the limit's number, in the field error's message
}

func runLimitCases(t *testing.T, h *harness, cases []limitCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Refusals earlier in the test are audited off the request path.
			h.flushDenials()
			before := h.snapshot()
			p := h.do(c.method, c.path, c.body, c.hdr...).problem(t, c.status, c.slug, c.field)
			found := false
			for _, fe := range p.Errors {
				found = found || (fe.Field == c.field && strings.Contains(fe.Message, c.says))
			}
			if !found {
				t.Errorf("problem errors %+v: no error on %s saying %q", p.Errors, c.field, c.says)
			}
			h.flushDenials()
			if after := h.snapshot(); before != after {
				t.Errorf("the rejected request changed the store:\nbefore %.2000s\nafter  %.2000s", before, after)
			}
		})
	}
}

func TestLimits_EachRequestLimitAnswers400NamingTheFieldAndTheNumberAndChangesNothing(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	env := h.environment(p.ID, "api", nil)
	h.wait(env.ID, "ready")
	var pol apiv1.Policy
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: apiv1.PolicySpec{Name: "web", PolicyTypes: []string{"ingress", "egress"}}}).json(t, 201, &pol)
	h.wait(env.ID, "enforced")

	policy := func(s apiv1.PolicySpec) apiv1.PolicyCreate {
		s.Name = "big"
		if s.PolicyTypes == nil {
			s.PolicyTypes = []string{"ingress", "egress"}
		}
		return apiv1.PolicyCreate{ProjectID: p.ID, PolicySpec: s}
	}
	ports := make([]apiv1.Port, 101)
	for i := range ports {
		ports[i] = apiv1.Port{Port: ptr(1000 + i)}
	}
	excepts := make([]string, 101)
	for i := range excepts {
		excepts[i] = fmt.Sprintf("10.%d.0.0/16", i)
	}
	twoRules := []apiv1.IngressRule{{From: cidrPeers(51)}, {From: cidrPeers(51)}}
	egress := make([]apiv1.EgressRule, 41)
	manyLabels := labelsN(apiv1.MaxLabels + 1)
	terms := func(n int) string {
		t := make([]string, n)
		for i := range t {
			t[i] = fmt.Sprintf("k%d=v", i)
		}
		return strings.Join(t, ",")
	}
	envPath, polPath := "/v1/environments/"+env.ID, "/v1/policies/"+pol.ID
	bad := func(name, method, path string, body any, field string) badRequest {
		return badRequest{name: name, method: method, path: path, body: body, status: 400, slug: "validation", field: field}
	}
	runLimitCases(t, h, []limitCase{
		{bad("project labels", "POST", "/v1/projects", apiv1.ProjectCreate{Name: "x", Labels: manyLabels}, "labels"), "limit of 64 labels per object: it has 65"},
		{bad("project labels patch", "PATCH", "/v1/projects/"+p.ID, apiv1.ProjectPatch{Labels: &manyLabels}, "labels"), "64"},
		{bad("environment labels", "POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "x", Labels: manyLabels}, "labels"), "64"},
		{bad("environment labels patch", "PATCH", envPath, apiv1.EnvironmentPatch{Labels: &manyLabels}, "labels"), "64"},
		{bad("label bytes", "POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "x", Labels: longLabels(11)}, "labels"), "limit of 4096 bytes of labels per object (keys and values together): it has 4180"},
		{bad("selector labels", "POST", "/v1/policies", policy(apiv1.PolicySpec{EnvironmentSelector: apiv1.Selector{MatchLabels: labelsN(17)}}), "environment_selector.match_labels"), "limit of 16 labels per selector: it has 17"},
		{bad("peer selector labels", "POST", "/v1/policies", policy(apiv1.PolicySpec{Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: labelsN(17)}}}}}}), "ingress[0].from[0].environment_selector.match_labels"), "16 labels per selector"},
		{bad("rules", "POST", "/v1/policies", policy(apiv1.PolicySpec{Ingress: ingressRules(101)}), "ingress[100]"), "limit of 100 rules per policy (ingress and egress together): it has 101"},
		{bad("rules of both directions", "POST", "/v1/policies", policy(apiv1.PolicySpec{Ingress: ingressRules(60), Egress: egress}), "egress[40]"), "it has 101"},
		{bad("peers", "POST", "/v1/policies", policy(apiv1.PolicySpec{Ingress: []apiv1.IngressRule{{From: cidrPeers(101)}}}), "ingress[0].from[100]"), "limit of 100 peers per policy"},
		{bad("peers over rules", "POST", "/v1/policies", policy(apiv1.PolicySpec{Ingress: twoRules}), "ingress[1].from[49]"), "it has 102"},
		{bad("ports", "POST", "/v1/policies", policy(apiv1.PolicySpec{Egress: []apiv1.EgressRule{{Ports: ports}}}), "egress[0].ports[100]"), "limit of 100 ports per policy"},
		{bad("except entries", "POST", "/v1/policies", policy(apiv1.PolicySpec{Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{CIDR: "10.0.0.0/8", Except: excepts}}}}}), "egress[0].to[0].except[100]"), "limit of 100 except entries per policy"},
		{bad("rules patch", "PATCH", polPath, apiv1.PolicyPatch{Ingress: ptr(ingressRules(101))}, "ingress[100]"), "100 rules"},
		{bad("rules configure", "PUT", "/environments/"+env.ID+"/configure", apiv1.EnvironmentConfigure{Policy: &apiv1.ConfigurePolicy{Ingress: ingressRules(101)}}, "policy.ingress[100]"), "100 rules"},
		{bad("label filter terms", "GET", "/v1/environments?label="+terms(17), nil, "label"), "limit of 16"},
		{bad("label filter of 998 terms", "GET", "/v1/environments?label="+terms(998), nil, "label"), "998 terms"},
		{bad("negative quota", "POST", "/v1/projects", apiv1.ProjectCreate{Name: "x", EnvironmentQuota: ptr[int64](-1)}, "environment_quota"), "between 0"},
		{bad("quota too large", "PATCH", "/v1/projects/"+p.ID, apiv1.ProjectPatch{EnvironmentQuota: ptr[int64](apiv1.MaxEnvironmentQuota + 1)}, "environment_quota"), "1048576"},
	})
}

func TestLimits_ProjectLimitsAnswer409NamingTheLimitAndChangeNothing(t *testing.T) {
	h := newHarness(t)
	policy := func(projectID, name string, rules []apiv1.IngressRule) apiv1.PolicyCreate {
		s := ingressSpec(rules)
		s.Name = name
		return apiv1.PolicyCreate{ProjectID: projectID, PolicySpec: s}
	}
	limit := func(name, method, path string, body any, field string) badRequest {
		return badRequest{name: name, method: method, path: path, body: body, status: 409, slug: "limit-exceeded", field: field}
	}

	policies := h.project("policies")
	h.seedPolicies(policies.ID, apiv1.MaxPoliciesPerProject, func(int) apiv1.PolicySpec { return ingressSpec(nil) })

	entries := h.project("entries")
	h.seedPolicies(entries.ID, apiv1.MaxPolicyEntriesPerProject/100, func(int) apiv1.PolicySpec { return ingressSpec(ingressRules(100)) })
	var some apiv1.List[apiv1.Policy]
	h.do("GET", "/v1/policies?limit=1&project_id="+entries.ID, nil).json(t, 200, &some)

	// Policies with the biggest selectors, up to just under the byte limit.
	bytes := h.project("bytes")
	big := []apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{MatchLabels: longLabels(10)}}}}}
	bigSpec := ingressSpec(big)
	bigSpec.Name = strings.Repeat("p", 58) + "-0000"
	raw, err := json.Marshal(bigSpec.Normalize())
	must(t, err)
	h.seedPolicies(bytes.ID, apiv1.MaxPolicyBytesPerProject/len(raw), func(int) apiv1.PolicySpec { return ingressSpec(big) })

	// 20 environment_selector peers and 100 environments make 2,000
	// resolved peers, the limit: one more of either is refused.
	resolved := h.project("resolved")
	h.seedEnvironments(resolved.ID, 100, map[string]string{"app": "api"})
	selectorPeers := make([]apiv1.Peer, 20)
	for i := range selectorPeers {
		selectorPeers[i] = apiv1.Peer{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"app": "api", "n": fmt.Sprint(i)}}}
	}
	h.do("POST", "/v1/policies", policy(resolved.ID, "selectors", []apiv1.IngressRule{{From: selectorPeers}})).json(t, 201, nil)

	runLimitCases(t, h, []limitCase{
		{limit("policies", "POST", "/v1/policies", policy(policies.ID, "one-more", nil), "project_id"), "limit of 1000 policies per project: project " + policies.ID + " has 1000"},
		{limit("policy entries", "POST", "/v1/policies", policy(entries.ID, "one-more", ingressRules(1)), "project_id"), "limit of 10000 policy entries per project (rules, peers, ports and except entries over all its policies): project " + entries.ID + " would have 10001"},
		{limit("policy bytes", "POST", "/v1/policies", policy(bytes.ID, "one-more", big), "project_id"), "limit of 1048576 bytes of policies per project"},
		{limit("resolved peers of a new policy", "POST", "/v1/policies", policy(resolved.ID, "one-more", []apiv1.IngressRule{{From: selectorPeers[:1]}}), "project_id"), "limit of 2000 resolved peers per project"},
		{limit("resolved peers of a new environment", "POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: resolved.ID, Name: "one-more"}, "project_id"), "101 environments would make 2020"},
	})

	// A project at a limit can still change what keeps it there, and shrink.
	h.do("PATCH", "/v1/policies/"+some.Items[0].ID, apiv1.PolicyPatch{Description: ptr("same size")}).json(t, 200, nil)
	h.do("PATCH", "/v1/policies/"+some.Items[0].ID, apiv1.PolicyPatch{Ingress: ptr(ingressRules(99))}).json(t, 200, nil)
	h.do("POST", "/v1/policies", policy(entries.ID, "one-more", ingressRules(1))).json(t, 201, nil)
	// Back at the limit, growing the shrunk policy again is refused.
	runLimitCases(t, h, []limitCase{
		{limit("policy entries of a patch", "PATCH", "/v1/policies/"+some.Items[0].ID, apiv1.PolicyPatch{Ingress: ptr(ingressRules(100))}, "ingress"), "would have 10001"},
	})
}

func TestQuota_IsSetByAnAdminReportedWithItsUsageAndEnforcedOnCreate(t *testing.T) {
	h := newHarness(t)
	var p apiv1.Project
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "payments", EnvironmentQuota: ptr[int64](2)}).json(t, 201, &p)
	if p.EnvironmentQuota != 2 || p.Usage.Environments != 0 {
		t.Fatalf("created project quota %d usage %+v, want 2 and 0", p.EnvironmentQuota, p.Usage)
	}
	editor := h.apiToken("editor", apiv1.RoleEditor, p.ID)
	h.do("PATCH", "/v1/projects/"+p.ID, apiv1.ProjectPatch{EnvironmentQuota: ptr[int64](100)}, bearer(editor.Secret)...).problem(t, 403, "forbidden", "")

	first := h.environment(p.ID, "one", nil)
	var second apiv1.Environment
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "two"}, bearer(editor.Secret)...).json(t, 202, &second)
	// Settle the reconciler, whose events would change the snapshot.
	h.wait(first.ID, "enforced")
	h.wait(second.ID, "enforced")
	h.do("GET", "/v1/projects/"+p.ID, nil).json(t, 200, &p)
	if p.Usage.Environments != 2 {
		t.Errorf("usage %+v after two creates", p.Usage)
	}
	var list apiv1.List[apiv1.Project]
	h.do("GET", "/v1/projects", nil, bearer(editor.Secret)...).json(t, 200, &list)
	if len(list.Items) != 1 || list.Items[0].Usage.Environments != 2 || list.Items[0].EnvironmentQuota != 2 {
		t.Errorf("listed %+v", list.Items)
	}

	runLimitCases(t, h, []limitCase{{
		badRequest{name: "over the quota", method: "POST", path: "/v1/environments", body: apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "three"}, hdr: bearer(editor.Secret), status: 409, slug: "limit-exceeded", field: "project_id"},
		"project " + p.ID + " is at its environment_quota of 2 environments (it has 2",
	}})

	// An environment being deleted still holds its address: it counts
	// until it is gone.
	h.do("DELETE", "/v1/environments/"+first.ID, nil).json(t, 202, nil)
	h.wait(first.ID, "deleted")
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "three"}, bearer(editor.Secret)...).json(t, 202, nil)

	// Lowering the quota below the usage is allowed and stops creates;
	// 0 lifts it.
	h.do("PATCH", "/v1/projects/"+p.ID, apiv1.ProjectPatch{EnvironmentQuota: ptr[int64](1)}).json(t, 200, &p)
	if p.EnvironmentQuota != 1 || p.Usage.Environments != 2 {
		t.Errorf("after lowering: quota %d usage %+v", p.EnvironmentQuota, p.Usage)
	}
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "four"}).problem(t, 409, "limit-exceeded", "project_id")
	h.do("PATCH", "/v1/projects/"+p.ID, apiv1.ProjectPatch{EnvironmentQuota: ptr[int64](0)}).json(t, 200, nil)
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "four"}).json(t, 202, nil)
}

func TestQuota_ConcurrentCreatesAtTheBoundaryNeverExceedIt(t *testing.T) {
	h := newHarness(t)
	const quota, attempts = 5, 40
	var p apiv1.Project
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "race", EnvironmentQuota: ptr[int64](quota)}).json(t, 201, &p)
	statuses := make(chan int, attempts)
	start := make(chan struct{})
	for i := range attempts {
		go func() {
			<-start
			body := fmt.Sprintf(`{"project_id":%q,"name":"env-%d"}`, p.ID, i)
			req, err := http.NewRequest("POST", h.url+"/v1/environments", strings.NewReader(body))
			if err != nil {
				statuses <- 0
				return
			}
			req.Header.Set("Authorization", "Bearer "+h.token)
			req.Header.Set("Content-Type", "application/json")
			res, err := h.client.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			res.Body.Close()
			statuses <- res.StatusCode
		}()
	}
	close(start)
	got := map[int]int{}
	for range attempts {
		got[<-statuses]++
	}
	if got[202] != quota || got[409] != attempts-quota {
		t.Errorf("answers %v, want %d accepted and %d refused", got, quota, attempts-quota)
	}
	h.do("GET", "/v1/projects/"+p.ID, nil).json(t, 200, &p)
	if p.Usage.Environments != quota {
		t.Errorf("usage %d, want %d", p.Usage.Environments, quota)
	}
}

func TestQuota_ADefaultQuotaIsStoredOnProjectsCreatedWithoutOne(t *testing.T) {
	h := newHarness(t, func(c *server.Config) { c.DefaultEnvironmentQuota = 1 })
	var dflt, unlimited apiv1.Project
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "default"}).json(t, 201, &dflt)
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "unlimited", EnvironmentQuota: ptr[int64](0)}).json(t, 201, &unlimited)
	if dflt.EnvironmentQuota != 1 || unlimited.EnvironmentQuota != 0 {
		t.Fatalf("quotas %d and %d, want 1 (the default) and 0 (asked for)", dflt.EnvironmentQuota, unlimited.EnvironmentQuota)
	}
	h.environment(dflt.ID, "one", nil)
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: dflt.ID, Name: "two"}).problem(t, 409, "limit-exceeded", "project_id")
	h.environment(unlimited.ID, "one", nil)
	h.environment(unlimited.ID, "two", nil)
}

func TestQueryStrings_ThatDoNotParseOrRepeatAParameterAnswer400(t *testing.T) {
	h := newHarness(t)
	a, b := h.project("alpha"), h.project("beta")
	env := h.environment(a.ID, "a1", nil)
	h.environment(b.ID, "b1", nil)
	malformed := func(name, path string) badRequest {
		return badRequest{name: name, method: "GET", path: path, status: 400, slug: "malformed-request"}
	}
	cases := []badRequest{
		// r.URL.Query() drops "project_id=...;x" whole: this listed both projects.
		malformed("semicolon in a filter", "/v1/environments?project_id="+a.ID+";x"),
		malformed("semicolon separator", "/v1/environments?project_id="+a.ID+";limit=1"),
		malformed("bad escape", "/v1/environments?project_id=%zz"),
		malformed("semicolon on a read", "/v1/environments/"+env.ID+"?wait_for=ready;x"),
		malformed("semicolon on the audit trail", "/v1/audit-events?action=x;y"),
		{name: "repeated filter", method: "GET", path: "/v1/environments?project_id=" + a.ID + "&project_id=" + b.ID, status: 400, slug: "validation", field: "project_id"},
		{name: "repeated label", method: "GET", path: "/v1/environments?label=a=b&label=c=d", status: 400, slug: "validation", field: "label"},
		{name: "unknown parameter", method: "GET", path: "/v1/policies?state=ready", status: 400, slug: "validation", field: "state"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := h.do(c.method, c.path, nil).problem(t, c.status, c.slug, c.field)
			if c.slug == "malformed-request" && !strings.Contains(p.Detail, "query string") {
				t.Errorf("detail %q does not say the query string is the problem", p.Detail)
			}
		})
	}
}

func TestLists_FilteredByAProjectTheTokenCannotSeeAnswer404LikeReadingIt(t *testing.T) {
	h := newHarness(t)
	a, b := h.project("alpha"), h.project("beta")
	h.environment(a.ID, "a1", nil)
	h.environment(b.ID, "b1", nil)
	viewer := h.apiToken("alpha-viewer", apiv1.RoleViewer, a.ID)
	auditor := h.apiToken("auditor", apiv1.RoleAuditor, "")
	for _, path := range []string{"/v1/environments", "/v1/policies"} {
		missing := h.do("GET", path+"?project_id=prj_nope", nil).problem(t, 404, "not-found", "project_id")
		other := h.do("GET", path+"?project_id="+b.ID, nil, bearer(viewer.Secret)...).problem(t, 404, "not-found", "project_id")
		if strings.ReplaceAll(other.Detail, b.ID, "ID") != strings.ReplaceAll(missing.Detail, "prj_nope", "ID") {
			t.Errorf("%s: another project %q and a missing one %q answer differently", path, other.Detail, missing.Detail)
		}
		h.do("GET", path+"?project_id="+a.ID, nil, bearer(viewer.Secret)...).json(t, 200, nil)
	}
	h.do("GET", "/v1/tokens?project_id=prj_nope", nil, bearer(auditor.Secret)...).problem(t, 404, "not-found", "project_id")
}

func TestLists_APageStopsAtItsByteBudgetWithACursor(t *testing.T) {
	h := newHarness(t)
	p := h.project("big")
	// The biggest environments the limits allow, about 9 KB each: 600 of
	// them are 5 MB, past the 4 MiB budget.
	const n = 600
	h.seedEnvironments(p.ID, n, longLabels(10))
	h.seed(func(ctx context.Context, tx store.Tx) error {
		envs, _, err := tx.ListEnvironments(ctx, store.ListQuery{ProjectID: p.ID, Limit: store.MaxLimit})
		for _, e := range envs {
			e.Description = strings.Repeat("\U0001D11E", apiv1.MaxDescriptionLength)
			if err == nil {
				err = tx.UpdateEnvironment(ctx, e)
			}
		}
		return err
	})
	seen := map[string]bool{}
	pages, cursor := 0, ""
	for {
		r := h.do("GET", "/v1/environments?limit=1000&project_id="+p.ID+"&cursor="+cursor, nil)
		var page apiv1.List[apiv1.Environment]
		r.json(t, 200, &page)
		if len(r.body) > apiv1.MaxListPageBytes+4096 {
			t.Errorf("page %d is %d bytes, past the budget of %d", pages, len(r.body), apiv1.MaxListPageBytes)
		}
		for _, e := range page.Items {
			if seen[e.ID] {
				t.Fatalf("%s listed twice", e.ID)
			}
			seen[e.ID] = true
		}
		pages++
		if page.NextCursor == "" || pages > n {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != n || pages < 2 {
		t.Errorf("listed %d environments in %d pages, want %d in at least 2", len(seen), pages, n)
	}
}

// TestEffectivePolicy_TheLargestATenantCanBuildWithinTheLimitsIsBoundedAndCheap
// builds the worst cases the limits allow: the project's policies use up
// its policy entries, all select one environment, and their
// environment_selector peers (the biggest selectors) times the
// environments (the most label bytes) use up the resolved peers, with
// many selectors over few environments or one selector over many. Each
// rule costs one entry but repeats its policy's id and name in the
// effective policy, so the other entries are rules.
func TestEffectivePolicy_TheLargestATenantCanBuildWithinTheLimitsIsBoundedAndCheap(t *testing.T) {
	for _, selectors := range []int{20, 1} {
		t.Run(fmt.Sprintf("%d selectors", selectors), func(t *testing.T) {
			worstEffectivePolicy(t, selectors)
		})
	}
}

func worstEffectivePolicy(t *testing.T, selectorPeers int) {
	h := newHarness(t)
	p := h.project("worst")
	envs := apiv1.MaxResolvedPeersPerProject / selectorPeers
	labels := longLabels(10) // 3,800 bytes: the most long labels within MaxLabelBytes
	h.seedEnvironments(p.ID, envs, labels)

	keys := slices.Sorted(maps.Keys(labels))
	peers := make([]apiv1.Peer, selectorPeers)
	for i := range peers {
		// Distinct selectors, each picking every environment.
		sel := maps.Clone(labels)
		delete(sel, keys[i%len(keys)])
		if i >= len(keys) {
			delete(sel, keys[(i+1)%len(keys)])
		}
		peers[i] = apiv1.Peer{EnvironmentSelector: &apiv1.Selector{MatchLabels: sel}}
	}
	var specs []apiv1.PolicySpec
	var size apiv1.PolicySize
	bytes := 0
	add := func(s apiv1.PolicySpec) bool {
		s.Name = fmt.Sprintf("%s-%04d", strings.Repeat("p", 58), len(specs))
		if fe := s.Validate(); fe != nil {
			t.Fatalf("the fixture breaks a limit: %+v", fe)
		}
		raw, err := json.Marshal(s.Normalize())
		must(t, err)
		next := size.Add(s.Size())
		if next.Entries() > apiv1.MaxPolicyEntriesPerProject || bytes+len(raw) > apiv1.MaxPolicyBytesPerProject {
			return false
		}
		specs, size, bytes = append(specs, s), next, bytes+len(raw)
		return true
	}
	all := func(rules []apiv1.IngressRule) apiv1.PolicySpec {
		return apiv1.PolicySpec{EnvironmentSelector: apiv1.Selector{}, PolicyTypes: []string{apiv1.Ingress}, Ingress: rules}
	}
	if !add(all([]apiv1.IngressRule{{From: peers}})) {
		t.Fatal("the selector policy alone is past a limit")
	}
	for n := apiv1.MaxRulesPerPolicy; n > 0 && len(specs) < apiv1.MaxPoliciesPerProject; {
		if !add(all(ingressRules(n))) {
			n /= 2
		}
	}
	if got := size.SelectorPeers * envs; got > apiv1.MaxResolvedPeersPerProject {
		t.Fatalf("the fixture has %d resolved peers, past the limit", got)
	}
	h.seedPolicies(p.ID, len(specs), func(i int) apiv1.PolicySpec { return specs[i] })

	var list apiv1.List[apiv1.Environment]
	h.do("GET", "/v1/environments?limit=1&project_id="+p.ID, nil).json(t, 200, &list)
	env := list.Items[0]

	ctx := context.Background()
	best := time.Duration(1 << 62)
	var eff apiv1.EffectivePolicy
	for range 3 {
		start := time.Now()
		var err error
		eff, err = control.Effective(ctx, h.srv.Store(), env)
		must(t, err)
		best = min(best, time.Since(start))
	}
	raw, err := json.Marshal(eff)
	must(t, err)
	start := time.Now()
	r := h.do("GET", "/v1/environments/"+env.ID+"/effective-policy", nil)
	served := time.Since(start)
	r.json(t, 200, nil)

	resolved := 0
	for _, rule := range eff.Ingress {
		for _, peer := range rule.Peers {
			resolved += len(peer.Environments)
		}
	}
	t.Logf("worst case within the limits: %d policies, %d rules, %d entries, %d policy bytes, %d environments, %d selector peers, %d resolved peers",
		len(specs), len(eff.Ingress), size.Entries(), bytes, envs, size.SelectorPeers, resolved)
	t.Logf("effective policy: %d bytes; built in %v (best of 3), served in %v", len(raw), best, served)
	if len(eff.Policies) != len(specs) || resolved != size.SelectorPeers*envs {
		t.Fatalf("the fixture is not the worst case: %d policies select the environment, %d resolved peers", len(eff.Policies), resolved)
	}
	if len(raw) > 4<<20 {
		t.Errorf("the effective policy is %d bytes, past 4 MiB", len(raw))
	}
	if best > 2*time.Second { // about 120 ms of CPU on an idle machine; the bound leaves room for a loaded one
		t.Errorf("building it took %v", best)
	}
}
