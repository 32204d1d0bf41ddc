package api_test

import (
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// assertionWorld is two projects under assertions: in shop, web and db,
// every environment's egress open and db's ingress open on tcp/5432 to
// shop's app=shop environments and to every environment of projects
// labelled stage=trusted; in ci, a runner. Three assertions hold:
// web reaches db, nothing of shop but web reaches db, and ci's runner
// does not reach shop's db.
type assertionWorld struct {
	h               *harness
	shop, ci        apiv1.Project
	web, db         apiv1.Environment
	dbIngress, open apiv1.Policy
}

func sel(labels map[string]string) *apiv1.Selector { return &apiv1.Selector{MatchLabels: labels} }

func newAssertionWorld(t *testing.T) *assertionWorld {
	h := newHarness(t)
	w := &assertionWorld{h: h}
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "shop", Labels: map[string]string{"team": "shop"}}).json(t, 201, &w.shop)
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "ci", Labels: map[string]string{"stage": "test"}}).json(t, 201, &w.ci)
	w.web = h.environment(w.shop.ID, "web", map[string]string{"tier": "web", "app": "shop"})
	w.db = h.environment(w.shop.ID, "db", map[string]string{"tier": "db", "app": "shop"})
	runner := h.environment(w.ci.ID, "runner", nil)
	for _, e := range []apiv1.Environment{w.web, w.db, runner} {
		h.wait(e.ID, "ready")
	}
	w.open = w.policy(w.shop.ID, "open-egress", apiv1.PolicySpec{PolicyTypes: []string{apiv1.Egress}, Egress: []apiv1.EgressRule{{}}})
	w.policy(w.ci.ID, "open-egress", apiv1.PolicySpec{PolicyTypes: []string{apiv1.Egress}, Egress: []apiv1.EgressRule{{}}})
	w.dbIngress = w.policy(w.shop.ID, "db-ingress", apiv1.PolicySpec{
		EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{"tier": "db"}},
		PolicyTypes:         []string{apiv1.Ingress},
		Ingress: []apiv1.IngressRule{{
			From:  []apiv1.Peer{{EnvironmentSelector: sel(map[string]string{"app": "shop"})}, {ProjectSelector: sel(map[string]string{"stage": "trusted"})}},
			Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: ptr(5432)}},
		}},
	})
	w.assertion(w.shop.ID, apiv1.AssertionSpec{Name: "web-reaches-db", From: apiv1.AssertionSource{Environment: "web"},
		To: apiv1.AssertionTarget{Environment: "db"}, Port: 5432, Expect: apiv1.ExpectAllow}).json(t, 201, nil)
	w.assertion(w.shop.ID, apiv1.AssertionSpec{Name: "only-web-reaches-db",
		From: apiv1.AssertionSource{EnvironmentSelector: &apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{{Key: "tier", Operator: apiv1.OpNotIn, Values: []string{"web"}}}}},
		To:   apiv1.AssertionTarget{EnvironmentSelector: sel(map[string]string{"tier": "db"})}, Port: 5432, Expect: apiv1.ExpectDeny}).json(t, 201, nil)
	w.assertion(w.ci.ID, apiv1.AssertionSpec{Name: "ci-not-in-shop-db", From: apiv1.AssertionSource{Environment: "runner"},
		To:   apiv1.AssertionTarget{EnvironmentSelector: sel(map[string]string{"tier": "db"}), ProjectSelector: sel(map[string]string{"team": "shop"})},
		Port: 5432, Expect: apiv1.ExpectDeny}).json(t, 201, nil)
	return w
}

func (w *assertionWorld) policy(projectID, name string, spec apiv1.PolicySpec) apiv1.Policy {
	w.h.t.Helper()
	spec.Name = name
	var p apiv1.Policy
	w.h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: projectID, PolicySpec: spec}).json(w.h.t, 201, &p)
	return p
}

func (w *assertionWorld) assertion(projectID string, spec apiv1.AssertionSpec) resp {
	w.h.t.Helper()
	return w.h.do("POST", "/v1/projects/"+projectID+"/assertions", apiv1.AssertionCreate{AssertionSpec: spec})
}

// refused checks that r is the 422 of a broken assertion naming it and
// the packet, and that the store is as it was in before.
func (w *assertionWorld) refused(r resp, before, assertion, packet string) {
	w.h.t.Helper()
	p := r.problem(w.h.t, 422, "assertion-broken", "")
	if !strings.Contains(p.Detail, `"`+assertion+`"`) || !strings.Contains(p.Detail, packet) {
		w.h.t.Errorf("detail %q does not name assertion %q and packet %q", p.Detail, assertion, packet)
	}
	if after := w.h.snapshot(); after != before {
		w.h.t.Errorf("a refused write changed the store:\nbefore %s\nafter  %s", before, after)
	}
}

func TestAssertions_EveryWriteThatBreaksOneIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	w := newAssertionWorld(t)
	h := w.h
	webToDB := "tcp/5432 from web (" + w.web.ID + ") to db (" + w.db.ID + ")"
	cases := []struct {
		name, assertion, packet string
		write                   func() resp
	}{
		{"PolicyPatch", "web-reaches-db", webToDB, func() resp {
			return h.do("PATCH", "/v1/policies/"+w.dbIngress.ID, apiv1.PolicyPatch{Ingress: &[]apiv1.IngressRule{{
				From: w.dbIngress.Ingress[0].From, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: ptr(5433)}},
			}}})
		}},
		{"EnvironmentLabelChange", "web-reaches-db", webToDB, func() resp {
			return h.do("PATCH", "/v1/environments/"+w.db.ID, apiv1.EnvironmentPatch{Labels: &map[string]string{"tier": "cache", "app": "shop"}})
		}},
		{"NewEnvironment", "only-web-reaches-db", "tcp/5432 from batch (", func() resp {
			return h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: w.shop.ID, Name: "batch", Labels: map[string]string{"tier": "batch", "app": "shop"}})
		}},
		{"DeletedPolicy", "web-reaches-db", webToDB, func() resp {
			return h.do("DELETE", "/v1/policies/"+w.open.ID, nil)
		}},
		{"ProjectRelabel", "ci-not-in-shop-db", "tcp/5432 from runner (", func() resp {
			return h.do("PATCH", "/v1/projects/"+w.ci.ID, apiv1.ProjectPatch{Labels: &map[string]string{"stage": "trusted"}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot()
			w.refused(tc.write(), before, tc.assertion, tc.packet)
		})
	}
}

func TestAssertions_WritesThatKeepThemPass(t *testing.T) {
	t.Parallel()
	w := newAssertionWorld(t)
	h := w.h
	h.do("PATCH", "/v1/policies/"+w.dbIngress.ID, apiv1.PolicyPatch{Ingress: &[]apiv1.IngressRule{{
		From: w.dbIngress.Ingress[0].From, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: ptr(5432)}, {Protocol: apiv1.ProtocolTCP, Port: ptr(5433)}},
	}}}).json(t, 200, nil)
	h.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: w.shop.ID, Name: "web-2", Labels: map[string]string{"tier": "web", "app": "shop"}}).json(t, 202, nil)
	h.do("PATCH", "/v1/projects/"+w.ci.ID, apiv1.ProjectPatch{Labels: &map[string]string{"stage": "test", "owner": "ci"}}).json(t, 200, nil)
	h.do("PATCH", "/v1/environments/"+w.web.ID, apiv1.EnvironmentPatch{Labels: &map[string]string{"tier": "web", "app": "shop", "v": "2"}}).json(t, 200, nil)
	w.policy(w.shop.ID, "extra", apiv1.PolicySpec{PolicyTypes: []string{apiv1.Ingress}})
}

func TestAssertions_CreateGetListDeleteWithETags(t *testing.T) {
	t.Parallel()
	w := newAssertionWorld(t)
	h := w.h
	base := "/v1/projects/" + w.shop.ID + "/assertions"
	var list apiv1.List[apiv1.Assertion]
	h.do("GET", base, nil).json(t, 200, &list)
	if len(list.Items) != 2 {
		t.Fatalf("shop lists %d assertions, want 2", len(list.Items))
	}
	a := list.Items[0]
	r := h.do("GET", base+"/"+a.ID, nil)
	var got apiv1.Assertion
	r.json(t, 200, &got)
	if r.header.Get("ETag") != a.ETag || got.Name != a.Name {
		t.Fatalf("get = %+v with ETag %q, want %+v", got, r.header.Get("ETag"), a)
	}
	// Another project's path does not reach it.
	h.do("GET", "/v1/projects/"+w.ci.ID+"/assertions/"+a.ID, nil).problem(t, 404, "not-found", "")
	h.do("DELETE", base+"/"+a.ID, nil, "If-Match", `"7"`).problem(t, 412, "precondition-failed", "")
	h.do("DELETE", base+"/"+a.ID, nil, "If-Match", a.ETag).json(t, 204, nil)
	h.do("GET", base+"/"+a.ID, nil).problem(t, 404, "not-found", "")

	// An Idempotency-Key replays the first answer.
	spec := apiv1.AssertionCreate{AssertionSpec: apiv1.AssertionSpec{Name: "no-ssh", From: apiv1.AssertionSource{Environment: "web"},
		To: apiv1.AssertionTarget{Environment: "db"}, Port: 22, Expect: apiv1.ExpectDeny}}
	var first, replay apiv1.Assertion
	h.do("POST", base, spec, "Idempotency-Key", "ast-1").json(t, 201, &first)
	h.do("POST", base, spec, "Idempotency-Key", "ast-1").json(t, 201, &replay)
	if first.ID != replay.ID {
		t.Fatalf("replay created %s, want the first answer's %s", replay.ID, first.ID)
	}
	h.do("POST", base, spec).problem(t, 409, "conflict", "name")
}

func TestAssertions_OneThatDoesNotHoldOrIsInvalidIsRefused(t *testing.T) {
	t.Parallel()
	w := newAssertionWorld(t)
	base := "/v1/projects/" + w.shop.ID + "/assertions"
	before := w.h.snapshot()
	p := w.assertion(w.shop.ID, apiv1.AssertionSpec{Name: "web-ssh-db", From: apiv1.AssertionSource{Environment: "web"},
		To: apiv1.AssertionTarget{Environment: "db"}, Port: 22, Expect: apiv1.ExpectAllow}).problem(t, 422, "assertion-broken", "")
	if !strings.Contains(p.Detail, "tcp/22 from web") || !strings.Contains(p.Detail, "receiver's ingress") {
		t.Errorf("detail %q does not name the packet and the side that denies it", p.Detail)
	}
	for field, spec := range map[string]apiv1.AssertionSpec{
		"from":    {Name: "x", To: apiv1.AssertionTarget{CIDR: "10.0.0.0/8"}, Port: 1, Expect: apiv1.ExpectDeny},
		"to":      {Name: "x", From: apiv1.AssertionSource{Environment: "web"}, To: apiv1.AssertionTarget{CIDR: "10.0.0.0/8", FQDN: "a.example"}, Port: 1, Expect: apiv1.ExpectDeny},
		"to.cidr": {Name: "x", From: apiv1.AssertionSource{Environment: "web"}, To: apiv1.AssertionTarget{CIDR: "10.0.0.1/8"}, Port: 1, Expect: apiv1.ExpectDeny},
		"port":    {Name: "x", From: apiv1.AssertionSource{Environment: "web"}, To: apiv1.AssertionTarget{CIDR: "10.0.0.0/8"}, Expect: apiv1.ExpectDeny},
		"expect":  {Name: "x", From: apiv1.AssertionSource{Environment: "web"}, To: apiv1.AssertionTarget{CIDR: "10.0.0.0/8"}, Port: 1, Expect: "maybe"},
	} {
		w.h.do("POST", base, apiv1.AssertionCreate{AssertionSpec: spec}).problem(t, 400, "validation", field)
	}
	if after := w.h.snapshot(); after != before {
		t.Errorf("refused creates changed the store")
	}
}

func TestAssertions_AWriteBreakingAnotherProjectsAssertionNamesNothingOfIt(t *testing.T) {
	t.Parallel()
	w := newAssertionWorld(t)
	before := w.h.snapshot()
	// Letting every project labelled stage=test into db breaks ci's
	// assertion that its runner does not reach shop's db.
	from := append(w.dbIngress.Ingress[0].From, apiv1.Peer{ProjectSelector: sel(map[string]string{"stage": "test"})})
	r := w.h.do("PATCH", "/v1/policies/"+w.dbIngress.ID, apiv1.PolicyPatch{Ingress: &[]apiv1.IngressRule{{From: from, Ports: w.dbIngress.Ingress[0].Ports}}})
	p := r.problem(t, 422, "assertion-broken", "")
	for _, secret := range []string{"ci-not-in-shop-db", "runner", w.ci.ID} {
		if strings.Contains(p.Detail, secret) {
			t.Errorf("detail %q names %q, of a project the writer may not see", p.Detail, secret)
		}
	}
	if !strings.Contains(p.Detail, "another project") {
		t.Errorf("detail %q does not say the assertion is another project's", p.Detail)
	}
	if after := w.h.snapshot(); after != before {
		t.Errorf("a refused write changed the store")
	}
}
