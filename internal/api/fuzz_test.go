package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http/httpguts"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// The fuzz targets here send each input through a real isolationd (a
// loopback listener, a SQLite file), one request or a few per input, so
// the work per input is bounded. Every answer is checked against
// openapi.json by harness.do, and the audit chain must verify at the end.

// fuzzServer is one server for a whole fuzz target: fixtures are made on
// the first input and live as long as the server.
type fuzzServer struct {
	h     *harness
	setup func(h *harness)
	ready bool
}

func newFuzzServer(f *testing.F, setup func(h *harness)) *fuzzServer {
	return &fuzzServer{h: startHarness(f), setup: setup}
}

// on returns the harness reporting to t, the test of one input.
func (s *fuzzServer) on(t *testing.T) *harness {
	s.h.t = t
	if !s.ready {
		s.setup(s.h)
		s.ready = true
	}
	return s.h
}

// bodyFixtures are the objects the body routes patch and check; @P, @E and
// @Q in a path or body stand for their ids.
type bodyFixtures struct {
	project apiv1.Project
	env     apiv1.Environment
	policy  apiv1.Policy
}

func (fx *bodyFixtures) expand(s []byte) []byte {
	return []byte(strings.NewReplacer("@P", fx.project.ID, "@E", fx.env.ID, "@Q", fx.policy.ID).Replace(string(s)))
}

type validator interface{ Validate() []apiv1.FieldError }

var bodyRoutes = []struct {
	method, path string
	body         func() validator
}{
	{"POST", "/v1/projects", func() validator { return &apiv1.ProjectCreate{} }},
	{"PATCH", "/v1/projects/@P", func() validator { return &apiv1.ProjectPatch{} }},
	{"POST", "/v1/environments", func() validator { return &apiv1.EnvironmentCreate{} }},
	{"PATCH", "/v1/environments/@E", func() validator { return &apiv1.EnvironmentPatch{} }},
	{"PUT", "/environments/@E/configure", func() validator { return &apiv1.EnvironmentConfigure{} }},
	{"POST", "/v1/policies", func() validator { return &apiv1.PolicyCreate{} }},
	{"PATCH", "/v1/policies/@Q", func() validator { return &apiv1.PolicyPatch{} }},
	{"POST", "/v1/environments/@E/check", func() validator { return &apiv1.CheckRequest{} }},
	{"POST", "/v1/tokens", func() validator { return &apiv1.TokenCreate{} }},
	{"POST", "/environments/create", func() validator { return &apiv1.EnvironmentCreate{} }},
}

// FuzzRequestBodies sends arbitrary bodies to every route that takes one.
// The server never answers 5xx; it accepts only what apiv1 decodes
// strictly and validates, and refuses what apiv1 refuses; a refused
// request commits nothing (no audit event), an accepted one is audited
// and answers the object as sent, normalized.
func FuzzRequestBodies(f *testing.F) {
	for i, s := range []string{
		`{"name":"payments","description":"d","labels":{"team":"payments"}}`,
		`{"name":"renamed","labels":{"example.com/tier":"dev"}}`,
		`{"project_id":"@P","name":"web","labels":{"tier":"web"},"resources":{"cpu_millis":500},"ttl_seconds":3600}`,
		`{"description":"x","labels":{"tier":"db"},"resources":{"memory_mb":128}}`,
		`{"description":"c","policy":{"ingress":[{"from":[{"cidr":"198.18.0.0/15"}],"ports":[{"port":22}]}],"egress":[]}}`,
		`{"project_id":"@P","name":"db","environment_selector":{"match_labels":{"tier":"db"}},"policy_types":["ingress"],"ingress":[{"from":[{"environment_selector":{"match_labels":{"tier":"web"}}}],"ports":[{"port":5432}]}]}`,
		`{"policy_types":["egress"],"egress":[{"to":[{"cidr":"2001:db8::/32","except":["2001:db8:1::/48"]}]}]}`,
		`{"direction":"ingress","protocol":"tcp","address":"198.18.0.1","port":22}`,
		`{"name":"ci","role":"editor","project_id":"@P","expires_at":"2030-01-02T03:04:05Z"}`,
		`{"project_id":"@P","name":"legacy"}`,
		`{"project_id":"@P","name":"x","unknown":1}`,
		`{"project_id":"missing","name":"web"}`,
		`[]`, ``, `{"name":"a"} {}`, `{"name":1}`,
		`{"name":"old","role":"viewer","project_id":"@P","expires_at":"2001-01-01T00:00:00Z"}`,
		`{"name":"far","role":"admin","expires_at":"9999-12-31T23:59:59-23:59"}`,
	} {
		f.Add(uint8(i), []byte(s))
	}
	fx := &bodyFixtures{}
	s := newFuzzServer(f, func(h *harness) {
		fx.project = h.project("fuzz-bodies")
		h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: fx.project.ID, PolicySpec: apiv1.PolicySpec{
			Name: "fuzz", PolicyTypes: []string{apiv1.Ingress}}}).json(h.t, 201, &fx.policy)
	})
	var envs int
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		h := s.on(t)
		route := bodyRoutes[int(kind)%len(bodyRoutes)]
		if strings.Contains(route.path, "@E") {
			// A patch may have given it a TTL, or a name taken since.
			if r := h.do("GET", "/v1/environments/"+fx.env.ID, nil); fx.env.ID == "" || r.status != http.StatusOK {
				envs++
				fx.env = h.environment(fx.project.ID, "fuzz-target-"+strconv.Itoa(envs), nil)
			}
		}
		body = fx.expand(body)
		in := route.body()
		accepted := strictDecode(body, in) == nil && in.Validate() == nil
		r := h.do(route.method, string(fx.expand([]byte(route.path))), body)
		switch r.status {
		case 200, 201, 202:
			if !accepted {
				t.Fatalf("%s %s accepted (%d) a body apiv1 refuses: %s", route.method, route.path, r.status, body)
			}
		case 400:
			anyProblem(t, r, 400)
			if accepted && route.method != "PATCH" && !strings.HasSuffix(route.path, "/configure") {
				// Patches are validated again once merged with the object.
				t.Fatalf("%s %s refused a body apiv1 accepts: %s\n%s", route.method, route.path, body, r.body)
			}
		case 404, 409, 412, 413, 422:
			anyProblem(t, r, r.status)
		default:
			t.Fatalf("%s %s answered %d: %s\nbody: %s", route.method, route.path, r.status, r.body, body)
		}
		events := auditOf(t, h, r)
		if r.status >= 300 || strings.HasSuffix(route.path, "/check") {
			if len(events) != 0 {
				t.Fatalf("%s %s answered %d but committed %+v", route.method, route.path, r.status, events)
			}
			return
		}
		if len(events) == 0 {
			t.Fatalf("%s %s answered %d without an audit event", route.method, route.path, r.status)
		}
		if route.path != "/environments/create" { // answers an id and a status
			checkEcho(t, in, r.body)
		}
	})
}

// strictDecode decodes as the server promises to: one JSON value of v's
// type, no unknown fields (field names are case-sensitive), nothing after it.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON value")
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil || !exactKeys(doc) {
		return fmt.Errorf("a field name that is not exactly one of the type's")
	}
	return nil
}

// fieldName is every JSON field name of apiv1: encoding/json would also
// take "NAME" or "nAme" for name.
var fieldName = regexp.MustCompile(`^[a-z_]+$`)

// exactKeys reports whether every key of doc, outside label maps, is
// written as apiv1 writes field names.
func exactKeys(doc any) bool {
	switch v := doc.(type) {
	case map[string]any:
		for k, el := range v {
			if !fieldName.MatchString(k) {
				return false
			}
			if m, ok := el.(map[string]any); ok && (k == "labels" || k == "match_labels") {
				for _, lv := range m {
					if !exactKeys(lv) {
						return false
					}
				}
			} else if !exactKeys(el) {
				return false
			}
		}
	case []any:
		for _, el := range v {
			if !exactKeys(el) {
				return false
			}
		}
	}
	return true
}

// auditOf is the audit trail of one request, read from the store, less
// what the reconciler did on its behalf.
func auditOf(t *testing.T, h *harness, r resp) []apiv1.AuditEvent {
	t.Helper()
	id := r.header.Get(apiv1.HeaderRequestID)
	evs, _, err := h.srv.Store().ListAudit(context.Background(), store.AuditQuery{RequestID: id, Limit: store.MaxLimit})
	must(t, err)
	var own []apiv1.AuditEvent
	for _, ev := range evs {
		if ev.Actor != control.ServerActor {
			own = append(own, ev)
		}
	}
	return own
}

// anyProblem checks that r is a well-formed problem of status.
func anyProblem(t *testing.T, r resp, status int) {
	t.Helper()
	var p apiv1.Problem
	_ = json.Unmarshal(r.body, &p)
	r.problem(t, status, strings.TrimPrefix(p.Type, api.ProblemBase), "")
}

// checkEcho compares an accepted body with the object answered: what the
// client sent comes back, normalized.
func checkEcho(t *testing.T, in validator, answer []byte) {
	t.Helper()
	var got struct {
		apiv1.Policy
		Labels map[string]string `json:"labels"`
		Role   string            `json:"role"`
		Secret string            `json:"secret"`
	}
	if err := json.Unmarshal(answer, &got); err != nil {
		t.Fatalf("answer %s: %v", answer, err)
	}
	type echo struct {
		Name, Description, ProjectID, Role *string
		Labels                             *map[string]string
		Spec                               *apiv1.PolicySpec
	}
	var want echo
	labels := func(m map[string]string) *map[string]string { n := apiv1.NormalizeLabels(m); return &n }
	switch b := in.(type) {
	case *apiv1.ProjectCreate:
		want = echo{Name: &b.Name, Description: &b.Description, Labels: labels(b.Labels)}
	case *apiv1.ProjectPatch:
		want = echo{Name: b.Name, Description: b.Description, Labels: b.Labels}
	case *apiv1.EnvironmentCreate:
		want = echo{Name: &b.Name, Description: &b.Description, ProjectID: &b.ProjectID, Labels: labels(b.Labels)}
	case *apiv1.EnvironmentPatch:
		want = echo{Name: b.Name, Description: b.Description, Labels: b.Labels}
	case *apiv1.EnvironmentConfigure:
		want = echo{Description: b.Description, Labels: b.Labels}
	case *apiv1.PolicyCreate:
		spec := b.PolicySpec.Normalize()
		want = echo{ProjectID: &b.ProjectID, Spec: &spec}
	case *apiv1.PolicyPatch:
		want = echo{Name: b.Name, Description: b.Description}
	case *apiv1.TokenCreate:
		want = echo{Name: &b.Name, Role: &b.Role, ProjectID: &b.ProjectID}
		if !strings.HasPrefix(got.Secret, auth.SecretPrefix) {
			t.Fatalf("created token answered without its secret: %s", answer)
		}
	}
	for _, c := range []struct {
		field     string
		want, got any
	}{
		{"name", want.Name, got.Name}, {"description", want.Description, got.Description},
		{"project_id", want.ProjectID, got.ProjectID}, {"role", want.Role, got.Role},
	} {
		if w, ok := c.want.(*string); ok && w != nil && *w != c.got {
			t.Fatalf("%s: sent %q, answered %q: %s", c.field, *w, c.got, answer)
		}
	}
	if want.Labels != nil && !maps.Equal(*want.Labels, got.Labels) {
		t.Fatalf("labels: sent %v, answered %v", *want.Labels, got.Labels)
	}
	if want.Spec != nil {
		if diff := cmp.Diff(*want.Spec, got.PolicySpec); diff != "" {
			t.Fatalf("policy answered is not the one sent, normalized (-sent +answered):\n%s", diff)
		}
	}
}

// listFixtures are what the list routes list: two projects, environments
// with labels from a small vocabulary, policies, and a viewer of the first
// project. want holds every object of each route, read from the store.
type listFixtures struct {
	projects [2]apiv1.Project
	viewer   string
	all      map[string][]listed
}

// sees reports whether the caller (the admin, or the viewer of the first
// project) may see the project id.
func (fx *listFixtures) sees(id string, viewer bool) bool {
	if viewer {
		return id == fx.projects[0].ID
	}
	return id == fx.projects[0].ID || id == fx.projects[1].ID
}

// listed is what a list filter looks at in an item.
type listed struct {
	ID        string            `json:"id"`
	ProjectID string            `json:"project_id"`
	Labels    map[string]string `json:"labels"`
	State     string            `json:"state"`
}

var listRoutes = []struct {
	path    string
	filters []string
}{
	{"/v1/projects", []string{"limit", "cursor", "label"}},
	{"/v1/environments", []string{"limit", "cursor", "project_id", "label", "state"}},
	{"/v1/policies", []string{"limit", "cursor", "project_id", "label"}},
	{"/v1/tokens", []string{"limit", "cursor", "project_id"}},
	{"/v1/audit-events", []string{"limit", "cursor", "project_id", "action", "resource_type", "resource_id", "outcome", "request_id", "since"}},
}

// FuzzListParameters sends arbitrary query strings to every list route, as
// the admin or as a viewer of one project. A query that does not parse, an
// unknown or repeated parameter or a bad value is a 400 naming it, never a
// 5xx and never a filter silently dropped; a project_id the caller cannot
// see is the 404 of reading it; a page answered is exactly the
// reference's: the objects the caller may see that pass every filter, in
// id order after the cursor, at most limit, and next_cursor set when more
// follow. Audit pages hold only events that pass the filters, in sequence
// order after the cursor.
func FuzzListParameters(f *testing.F) {
	for _, s := range []struct {
		route  uint8
		query  string
		viewer bool
	}{
		{1, "label=team=payments,tier=prod&limit=2", false},
		{1, "project_id=@A&state=ready&cursor=env_", true},
		{1, "project_id=@B", true},
		{1, "label=team=payments;project_id=@B", false},
		{1, "label=team%3Dsearch&limit=1&cursor=@E", false},
		{1, "state=bogus&limit=0", false},
		{0, "label=example.com/owner=&limit=1", false},
		{0, "cursor=zzz", true},
		{2, "project_id=@A&limit=1000", false},
		{2, "label=tier=dev", false},
		{3, "project_id=@A&limit=1", false},
		{4, "outcome=success&limit=3&cursor=2&action=project.create", false},
		{4, "since=2026-01-02T15:04:05Z&resource_type=environment", false},
		{4, "since=yesterday&cursor=-1", false},
		{1, "limit=%zz", false},
		{1, "limit=+2&label=+team=payments", false},
	} {
		f.Add(s.route, s.query, s.viewer)
	}
	fx := &listFixtures{all: map[string][]listed{}}
	s := newFuzzServer(f, func(h *harness) {
		ctx := context.Background()
		for i, name := range []string{"fuzz-list-a", "fuzz-list-b"} {
			var p apiv1.Project
			h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: name, Labels: map[string]string{"team": []string{"payments", "search"}[i]}}).json(h.t, 201, &p)
			fx.projects[i] = p
		}
		for i := range 12 {
			labels := map[string]string{"team": []string{"payments", "search"}[i%2], "tier": []string{"dev", "prod", "prod"}[i%3]}
			if i%4 == 0 {
				labels["example.com/owner"] = ""
			}
			e := h.environment(fx.projects[i%3/2].ID, "env-"+strconv.Itoa(i), labels)
			h.wait(e.ID, "ready")
		}
		for i := range 3 {
			h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: fx.projects[i%2].ID, PolicySpec: apiv1.PolicySpec{
				Name: "pol-" + strconv.Itoa(i), PolicyTypes: []string{apiv1.Ingress}}}).json(h.t, 201, nil)
		}
		fx.viewer = h.apiToken("fuzz-viewer", apiv1.RoleViewer, fx.projects[0].ID).Secret
		st := h.srv.Store()
		for path, list := range map[string]func() (any, error){
			"/v1/projects": func() (any, error) {
				v, _, err := st.ListProjects(ctx, store.ListQuery{Limit: store.MaxLimit})
				return v, err
			},
			"/v1/environments": func() (any, error) {
				v, _, err := st.ListEnvironments(ctx, store.ListQuery{Limit: store.MaxLimit})
				return v, err
			},
			"/v1/policies": func() (any, error) {
				v, _, err := st.ListPolicies(ctx, store.ListQuery{Limit: store.MaxLimit})
				return v, err
			},
			"/v1/tokens": func() (any, error) {
				v, _, err := st.ListTokens(ctx, store.ListQuery{Limit: store.MaxLimit})
				return v, err
			},
		} {
			v, err := list()
			must(h.t, err)
			b, err := json.Marshal(v)
			must(h.t, err)
			var items []listed
			must(h.t, json.Unmarshal(b, &items))
			if path == "/v1/projects" {
				for i := range items {
					items[i].ProjectID = items[i].ID
				}
			}
			fx.all[path] = items
		}
	})
	f.Fuzz(func(t *testing.T, route uint8, query string, viewer bool) {
		h := s.on(t)
		rt := listRoutes[int(route)%len(listRoutes)]
		raw := asQuery(strings.NewReplacer("@A", fx.projects[0].ID, "@B", fx.projects[1].ID, "@E", fx.all["/v1/environments"][5].ID).Replace(query))
		token := h.token
		if viewer {
			token = fx.viewer
		}
		r := h.do("GET", rt.path+"?"+raw, nil, "Authorization", "Bearer "+token)
		if viewer && (rt.path == "/v1/tokens" || rt.path == "/v1/audit-events") {
			r.problem(t, http.StatusForbidden, "forbidden", "")
			return
		}
		q, bad := referenceQuery(rt.path, rt.filters, raw)
		if bad != "" {
			if r.status != http.StatusBadRequest {
				t.Fatalf("GET %s?%s answered %d, want 400 (%s): %s", rt.path, raw, r.status, bad, r.body)
			}
			anyProblem(t, r, 400)
			return
		}
		if p := q.Get("project_id"); rt.path != "/v1/audit-events" && p != "" && !fx.sees(p, viewer) {
			// Like reading that project: it does not exist for the caller.
			r.problem(t, http.StatusNotFound, "not-found", "project_id")
			return
		}
		if r.status != http.StatusOK {
			t.Fatalf("GET %s?%s answered %d, want 200: %s", rt.path, raw, r.status, r.body)
		}
		if rt.path == "/v1/audit-events" {
			checkAuditPage(t, q, r.body)
			return
		}
		var page apiv1.List[listed]
		r.json(t, 200, &page)
		if rt.path == "/v1/projects" {
			for i := range page.Items {
				page.Items[i].ProjectID = page.Items[i].ID
			}
		}
		scope := ""
		if viewer {
			scope = fx.projects[0].ID
		}
		want, next := referencePage(fx.all[rt.path], q, scope)
		if rt.path == "/v1/projects" && viewer {
			next = "" // a viewer's project list is one page
		}
		if diff := cmp.Diff(want, page.Items); diff != "" || page.NextCursor != next {
			t.Fatalf("GET %s?%s: page differs from the reference (-want +got):\n%s\nnext_cursor %q, want %q", rt.path, raw, diff, page.NextCursor, next)
		}
	})
}

// asQuery percent-encodes the bytes a URL's query may not hold, and
// leaves the rest (including '%', ';' and '&') for the server to judge.
func asQuery(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c > 0x20 && c < 0x7f && !strings.ContainsRune(`"#<>\^`+"`{|}", rune(c)) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// rfc3339DateTime is the date-time format of openapi.json.
var rfc3339DateTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$`)

// referenceQuery reads a list query by the rules the API documents and
// says what is wrong with it, if anything.
func referenceQuery(path string, filters []string, raw string) (url.Values, string) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, "the query does not parse"
	}
	for k, vs := range q {
		if !slices.Contains(filters, k) {
			return nil, "unknown parameter " + k
		}
		if len(vs) > 1 {
			return nil, "repeated parameter " + k
		}
	}
	if q.Has("limit") {
		if n, err := strconv.Atoi(q.Get("limit")); err != nil || n < 1 || n > store.MaxLimit {
			return nil, "bad limit"
		}
	}
	if s := q.Get("label"); s != "" {
		if _, err := apiv1.ParseLabelSelector(s); err != nil {
			return nil, "bad label"
		}
		if path == "/v1/policies" {
			return nil, "policies have no labels"
		}
	}
	if s := q.Get("state"); q.Has("state") && !slices.Contains(apiv1.States, s) {
		return nil, "bad state"
	}
	if path != "/v1/audit-events" {
		return q, ""
	}
	if s := q.Get("cursor"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err != nil || n < 0 {
			return nil, "bad audit cursor"
		}
	}
	if q.Has("since") {
		if _, err := time.Parse(time.RFC3339Nano, q.Get("since")); err != nil || !rfc3339DateTime.MatchString(q.Get("since")) {
			return nil, "bad since"
		}
	}
	if o := q.Get("outcome"); q.Has("outcome") && o != apiv1.OutcomeSuccess && o != apiv1.OutcomeDenied && o != apiv1.OutcomeFailure {
		return nil, "bad outcome"
	}
	return q, ""
}

// referencePage filters every object the slow way: scope, project,
// labels term by term, state, then the cursor and the limit.
func referencePage(all []listed, q url.Values, scope string) ([]listed, string) {
	project := q.Get("project_id")
	if scope != "" {
		if project != "" && project != scope {
			return []listed{}, ""
		}
		project = scope
	}
	want := map[string]string{}
	if s := q.Get("label"); strings.TrimSpace(s) != "" {
		for term := range strings.SplitSeq(s, ",") {
			k, v, _ := strings.Cut(term, "=")
			want[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	limit := store.DefaultLimit
	if n, err := strconv.Atoi(q.Get("limit")); err == nil {
		limit = n
	}
	out := []listed{}
	for _, it := range all {
		ok := it.ID > q.Get("cursor") && (project == "" || it.ProjectID == project) &&
			(q.Get("state") == "" || it.State == q.Get("state"))
		for k, v := range want {
			if got, has := it.Labels[k]; !has || got != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		if len(out) == limit {
			return out, out[limit-1].ID
		}
		out = append(out, it)
	}
	return out, ""
}

func checkAuditPage(t *testing.T, q url.Values, body []byte) {
	t.Helper()
	var page apiv1.List[apiv1.AuditEvent]
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	after, _ := strconv.ParseInt(q.Get("cursor"), 10, 64)
	since, _ := time.Parse(time.RFC3339Nano, q.Get("since"))
	limit := store.DefaultLimit
	if n, err := strconv.Atoi(q.Get("limit")); err == nil {
		limit = n
	}
	if len(page.Items) > limit {
		t.Fatalf("%d events on a page of limit %d", len(page.Items), limit)
	}
	for _, ev := range page.Items {
		for _, c := range [][2]string{
			{"project_id", ev.ProjectID}, {"action", ev.Action}, {"resource_type", ev.Resource.Type},
			{"resource_id", ev.Resource.ID}, {"outcome", ev.Outcome}, {"request_id", ev.RequestID},
		} {
			if w := q.Get(c[0]); w != "" && w != c[1] {
				t.Fatalf("event %d has %s %q, filter %q", ev.Seq, c[0], c[1], w)
			}
		}
		if ev.Seq <= after || ev.Time.Before(since) {
			t.Fatalf("event %d at %s is not after cursor %d and since %s", ev.Seq, ev.Time, after, since)
		}
		after = ev.Seq
	}
	if want := ""; len(page.Items) < limit && page.NextCursor != want {
		t.Fatalf("a short page has next_cursor %q", page.NextCursor)
	}
}

// FuzzIdempotencyKey sends a create twice with an arbitrary
// Idempotency-Key, then with the same key and another body. A key that is
// not 1-255 visible ASCII characters is a 400 naming the header and
// creates nothing; a valid key creates once, replays the same answer byte
// for byte, and refuses another body with 422.
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{"k1", "0195b0f4-7c1e-7f5e-a5b4-1b2c3d4e5f60", strings.Repeat("k", 255), strings.Repeat("k", 256),
		"with space", "tab\tinside", "é", "\x7f", "!~", "  padded  "} {
		f.Add(s)
	}
	s := newFuzzServer(f, func(*harness) {})
	invalid := 0
	f.Fuzz(func(t *testing.T, key string) {
		h := s.on(t)
		if !httpguts.ValidHeaderFieldValue(key) {
			return // no HTTP client sends it
		}
		sent := strings.Trim(key, " \t") // as every HTTP server reads a header value
		if sent == "" {
			return
		}
		sum := sha256.Sum256([]byte(sent))
		name := "idem-" + hex.EncodeToString(sum[:8])
		valid := len(sent) <= 255 && !strings.ContainsFunc(sent, func(c rune) bool { return c < 0x21 || c > 0x7e })
		if !valid {
			invalid++
			name += "-" + strconv.Itoa(invalid)
		}
		body := apiv1.ProjectCreate{Name: name}
		first := h.do("POST", "/v1/projects", body, apiv1.HeaderIdempotencyKey, key)
		if !valid {
			first.problem(t, http.StatusBadRequest, "malformed-request", apiv1.HeaderIdempotencyKey)
			if evs := auditOf(t, h, first); len(evs) != 0 {
				t.Fatalf("a refused key committed %+v", evs)
			}
			h.do("POST", "/v1/projects", body).json(t, http.StatusCreated, nil) // the name is still free
			return
		}
		var p apiv1.Project
		first.json(t, http.StatusCreated, &p)
		second := h.do("POST", "/v1/projects", body, apiv1.HeaderIdempotencyKey, key)
		if second.status != first.status || !bytes.Equal(second.body, first.body) || second.header.Get("Idempotent-Replayed") != "true" ||
			second.header.Get("ETag") != first.header.Get("ETag") || second.header.Get("Location") != first.header.Get("Location") {
			t.Fatalf("retry with key %q answered %d %s %v, want the replay of %d %s", key, second.status, second.body, second.header, first.status, first.body)
		}
		h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: name + "-other"}, apiv1.HeaderIdempotencyKey, key).problem(t, http.StatusUnprocessableEntity, "idempotency-mismatch", "")
		h.do("GET", "/v1/projects/"+p.ID, nil).json(t, http.StatusOK, nil)
	})
}

// FuzzAuthorizationHeader sends arbitrary Authorization headers, some near
// the admin's (@T stands for its secret). Only the exact "Bearer <secret>"
// (the scheme in any case) is let in; everything else is a 401 with
// WWW-Authenticate, never a 5xx, and neither the answer nor the audit
// trail holds what was presented.
func FuzzAuthorizationHeader(f *testing.F) {
	for _, s := range []string{"Bearer @T", "bearer @T", "Bearer  @T", "Bearer @T\u00a0", "Bearer \u2003@T", "Bearer\t@T",
		"Bearer @Tx", "Basic @T", "@T", "Bearer isot_made-up-token-of-some-length", "Bearer "} {
		f.Add(s)
	}
	s := newFuzzServer(f, func(*harness) {})
	f.Fuzz(func(t *testing.T, header string) {
		h := s.on(t)
		header = strings.ReplaceAll(header, "@T", h.token)
		if header == "" || !httpguts.ValidHeaderFieldValue(header) {
			return
		}
		sent := strings.Trim(header, " \t")
		scheme, secret, _ := strings.Cut(sent, " ")
		r := h.do("GET", "/v1/projects?limit=1", nil, "Authorization", header)
		if strings.EqualFold(scheme, "Bearer") && secret == h.token {
			r.json(t, http.StatusOK, nil)
			return
		}
		r.problem(t, http.StatusUnauthorized, "unauthorized", "")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
		if len(secret) >= 12 {
			trail, err := json.Marshal(auditOf(t, h, r))
			must(t, err)
			if bytes.Contains(r.body, []byte(secret)) || bytes.Contains(trail, []byte(secret)) {
				t.Fatalf("the presented secret %q is in the answer %s or the audit trail %s", secret, r.body, trail)
			}
		}
	})
}

// FuzzWaitParameters sends arbitrary wait_for and timeout values for a
// ready, enforced environment. What the documented rules refuse is a 400
// naming the parameter (a timeout beyond the maximum included, however it
// is written); a wait the environment satisfies answers at once; one it
// cannot satisfy answers at its timeout with X-Wait-Timeout. Waits longer
// than a fraction of a second are not sent, to bound the work per input.
func FuzzWaitParameters(f *testing.F) {
	for _, s := range [][2]string{{"ready", ""}, {"enforced", "1s"}, {"pending", "10ms"}, {"deleted, updating", "0"},
		{"ready,bogus", "1s"}, {"", "1s"}, {" , ", ""}, {"pending", "-1s"}, {"pending", "11m"}, {"pending", "601"},
		{"pending", "18446744074"}, {"pending", "9223372037"}, {"failed", "1e3"}, {"expired", "+0"}} {
		f.Add(s[0], s[1])
	}
	var env apiv1.Environment
	s := newFuzzServer(f, func(h *harness) {
		p := h.project("fuzz-wait")
		env = h.environment(p.ID, "waiter", nil)
		env, _ = h.wait(env.ID, "enforced")
		h.client = &http.Client{Timeout: 5 * time.Second}
	})
	const maxWait = 10 * time.Minute // the server's default bound
	f.Fuzz(func(t *testing.T, waitFor, timeout string) {
		h := s.on(t)
		var want []string
		bad := ""
		for w := range strings.SplitSeq(waitFor, ",") {
			switch w = strings.TrimSpace(w); {
			case w == "":
			case slices.Contains(apiv1.States, w) || w == "deleted" || w == "enforced":
				want = append(want, w)
			default:
				bad = "wait_for"
			}
		}
		if len(want) == 0 {
			bad = "wait_for"
		}
		d := 30 * time.Second
		if timeout != "" && bad == "" {
			var err error
			if d, err = time.ParseDuration(timeout); err != nil {
				n, nerr := strconv.ParseInt(timeout, 10, 64)
				d, err = time.Duration(n)*time.Second, nerr
				if n > int64(maxWait/time.Second) || n < 0 {
					err = fmt.Errorf("out of range")
				}
			}
			if err != nil || d < 0 || d > maxWait {
				bad = "timeout"
			}
		}
		satisfied := slices.Contains(want, env.State) || slices.Contains(want, "enforced")
		if bad == "" && !satisfied && d > 200*time.Millisecond {
			return
		}
		q := url.Values{"wait_for": {waitFor}}
		if timeout != "" {
			q.Set("timeout", timeout)
		}
		r := h.do("GET", "/v1/environments/"+env.ID+"?"+q.Encode(), nil)
		if bad != "" {
			r.problem(t, http.StatusBadRequest, "validation", bad)
			return
		}
		var got apiv1.Environment
		r.json(t, http.StatusOK, &got)
		if timedOut := r.header.Get("X-Wait-Timeout") == "true"; timedOut == satisfied || got.ID != env.ID {
			t.Fatalf("wait_for=%q timeout=%q: X-Wait-Timeout %v, want %v", waitFor, timeout, timedOut, !satisfied)
		}
	})
}
