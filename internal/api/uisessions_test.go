package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// signIn signs in with secret and returns the session's cookie header
// value, checking the cookie's attributes.
func (h *harness) signIn(secret string) (cookie string, ses apiv1.UISession) {
	h.t.Helper()
	r := h.do("POST", "/v1/ui/sessions", nil, "Authorization", "Bearer "+secret)
	r.json(h.t, 201, &ses)
	res := http.Response{Header: r.header}
	for _, c := range res.Cookies() {
		if c.Name != api.SessionCookie {
			continue
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" || c.Value == "" || c.Value == secret {
			h.t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, Path=/, a secret of its own", c)
		}
		return api.SessionCookie + "=" + c.Value, ses
	}
	h.t.Fatalf("sign-in set no %s cookie: %v", api.SessionCookie, r.header)
	return "", ses
}

// asSession sends a request with the session's cookie and no token.
func asSession(cookie string, more ...string) []string {
	return append([]string{"Authorization", "", "Cookie", cookie}, more...)
}

// A console session is its token, reading: it sees what the token sees
// and nothing of other projects, and is refused every change.
func TestUISession_SeesExactlyWhatItsTokenSeesAndOnlyReads(t *testing.T) {
	h := newHarness(t)
	a, b := h.project("a"), h.project("b")
	envA := h.environment(a.ID, "a-env", nil)
	envB := h.environment(b.ID, "b-env", nil)
	h.do("GET", "/v1/environments/"+envB.ID+"?wait_for=ready&timeout=30s", nil).json(t, 200, nil) // check answers a ready one
	viewer := h.apiToken("b-viewer", apiv1.RoleViewer, b.ID)
	cookie, ses := h.signIn(viewer.Secret)
	if ses.TokenID != viewer.ID || !ses.ExpiresAt.After(time.Now()) {
		t.Fatalf("session %+v: want token %s and an expiry ahead", ses, viewer.ID)
	}

	var list apiv1.List[apiv1.Environment]
	h.do("GET", "/v1/environments", nil, asSession(cookie)...).json(t, 200, &list)
	if len(list.Items) != 1 || list.Items[0].ID != envB.ID {
		t.Fatalf("B's session lists %+v, want only %s", list.Items, envB.ID)
	}
	h.do("GET", "/v1/environments/"+envA.ID, nil, asSession(cookie)...).problem(t, 404, "not-found", "")
	var who apiv1.WhoAmI
	h.do("GET", "/v1/whoami", nil, asSession(cookie)...).json(t, 200, &who)
	if who.TokenID != viewer.ID {
		t.Fatalf("whoami as the session: %+v, want token %s", who, viewer.ID)
	}

	// Reading with POST (check) is allowed from the console's origin.
	check := apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: "tcp", Address: "203.0.113.7", Port: 443}
	h.do("POST", "/v1/environments/"+envB.ID+"/check", check, asSession(cookie, "Sec-Fetch-Site", "same-origin")...).json(t, 200, nil)

	// Changes are refused even where the token may not make them anyway,
	// and an admin's session may not make them either.
	p := h.do("PATCH", "/v1/environments/"+envB.ID, apiv1.EnvironmentPatch{Description: ptr("x")}, asSession(cookie, "Sec-Fetch-Site", "same-origin")...).problem(t, 403, "forbidden", "")
	if !strings.Contains(p.Detail, "console session only reads") {
		t.Fatalf("403 detail %q does not say a console session only reads", p.Detail)
	}
	adminCookie, _ := h.signIn(h.token)
	h.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "c"}, asSession(adminCookie, "Sec-Fetch-Site", "same-origin")...).problem(t, 403, "forbidden", "")
	h.do("POST", "/v1/ui/sessions", nil, asSession(adminCookie, "Sec-Fetch-Site", "same-origin")...).problem(t, 403, "forbidden", "")
}

// The cookie never travels on another site's requests (SameSite=Strict);
// should a browser send it anyway, a request that is not GET or HEAD is
// refused unless it comes from the server's own origin.
func TestUISession_CrossOriginRequestsAreRefused(t *testing.T) {
	h := newHarness(t)
	prj := h.project("a")
	env := h.environment(prj.ID, "e", nil)
	h.do("GET", "/v1/environments/"+env.ID+"?wait_for=ready&timeout=30s", nil).json(t, 200, nil) // check answers a ready one
	cookie, _ := h.signIn(h.token)
	check := apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: "tcp", Address: "203.0.113.7", Port: 443}
	path := "/v1/environments/" + env.ID + "/check"
	h.do("POST", path, check, asSession(cookie, "Sec-Fetch-Site", "cross-site")...).problem(t, 403, "forbidden", "")
	h.do("POST", path, check, asSession(cookie, "Origin", "https://evil.example")...).problem(t, 403, "forbidden", "")
	h.do("DELETE", "/v1/ui/sessions/current", nil, asSession(cookie, "Sec-Fetch-Site", "same-site")...).problem(t, 403, "forbidden", "")
	h.do("POST", path, check, asSession(cookie, "Origin", h.url)...).json(t, 200, nil)
	// Reads are not state-changing: a top-level navigation may carry the cookie.
	h.do("GET", "/v1/environments", nil, asSession(cookie, "Sec-Fetch-Site", "cross-site")...).json(t, 200, nil)
}

// Signing out revokes the session: its cookie gets 401 from then on, its
// open watch ends, and both are on the audit trail. Revoking the token
// ends its sessions too.
func TestUISession_SignOutRevokesTheSessionAndIsAudited(t *testing.T) {
	h := newHarness(t)
	prj := h.project("a")
	env := h.environment(prj.ID, "e", nil)
	tok := h.apiToken("viewer", apiv1.RoleViewer, prj.ID)
	cookie, ses := h.signIn(tok.Secret)

	req, _ := http.NewRequest("GET", h.url+"/v1/environments/"+env.ID+"/watch", nil)
	req.Header.Set("Cookie", cookie)
	watch, err := (&http.Client{Timeout: time.Minute}).Do(req)
	must(t, err)
	defer watch.Body.Close()
	first := bufio.NewReader(watch.Body)
	if line, err := first.ReadString('\n'); err != nil || !strings.HasPrefix(line, "event: environment") {
		t.Fatalf("watch with the cookie: %q %v", line, err)
	}
	ended := make(chan struct{})
	go func() { _, _ = io.ReadAll(first); close(ended) }()

	r := h.do("DELETE", "/v1/ui/sessions/current", nil, asSession(cookie, "Sec-Fetch-Site", "same-origin")...)
	r.json(t, 204, nil)
	if sc := r.header.Get("Set-Cookie"); !strings.Contains(sc, api.SessionCookie+"=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Fatalf("sign-out's Set-Cookie %q does not clear the cookie", sc)
	}
	p := h.do("GET", "/v1/environments", nil, asSession(cookie)...).problem(t, 401, "unauthorized", "")
	if !strings.Contains(p.Detail, "signed out") {
		t.Fatalf("401 detail %q does not say the session was signed out", p.Detail)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the session's watch is still open 20 s after it signed out")
	}

	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?resource_type=ui_session&resource_id="+ses.ID, nil).json(t, 200, &evs)
	var actions []string
	for _, ev := range evs.Items {
		actions = append(actions, ev.Action)
		if ev.Actor.TokenID != tok.ID || ev.ProjectID != prj.ID || strings.Contains(string(mustJSON(t, ev)), strings.TrimPrefix(cookie, api.SessionCookie+"=")) {
			t.Errorf("event %+v: want actor %s, project %s, and never the cookie's secret", ev, tok.ID, prj.ID)
		}
	}
	if strings.Join(actions, ",") != "ui.sign_in,ui.sign_out" {
		t.Fatalf("audit trail of the session: %v, want ui.sign_in then ui.sign_out", actions)
	}

	again, _ := h.signIn(tok.Secret)
	h.do("DELETE", "/v1/tokens/"+tok.ID, nil).json(t, 204, nil)
	p = h.do("GET", "/v1/environments", nil, asSession(again)...).problem(t, 401, "unauthorized", "")
	if !strings.Contains(p.Detail, "revoked") {
		t.Fatalf("401 after the token's revocation: %q, want it to say the token was revoked", p.Detail)
	}
	h.do("GET", "/v1/environments", nil, asSession(api.SessionCookie+"=iso_nonsense")...).problem(t, 401, "unauthorized", "")
}

// The list watch starts with the list and follows it: an environment
// created, changed and deleted arrives as it happens, and nothing of a
// project outside the token's scope ever does.
func TestWatchEnvironments_FollowsTheScopedList(t *testing.T) {
	h := newHarness(t)
	a, b := h.project("a"), h.project("b")
	first := h.environment(b.ID, "first", map[string]string{"tier": "dev"})
	viewer := h.apiToken("b-viewer", apiv1.RoleViewer, b.ID)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/v1/environments/watch?label=tier%3Ddev", nil)
	req.Header.Set("Authorization", "Bearer "+viewer.Secret)
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	type event struct{ name, data string }
	events := make(chan event, 64)
	go func() {
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "event: "); ok {
				name = n
			} else if d, ok := strings.CutPrefix(line, "data: "); ok {
				events <- event{name, d}
			}
		}
		close(events)
	}()
	next := func(want func(event) bool, what string) event {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("the watch ended before %s", what)
				}
				if strings.Contains(ev.data, a.ID) {
					t.Fatalf("project B's watch shows project A: %s %s", ev.name, ev.data)
				}
				if want(ev) {
					return ev
				}
			case <-deadline:
				t.Fatalf("no %s within 20 s", what)
			}
		}
	}
	ev := next(func(ev event) bool { return ev.name == "list" }, "list event")
	var list apiv1.List[apiv1.Environment]
	must(t, json.Unmarshal([]byte(ev.data), &list))
	if len(list.Items) != 1 || list.Items[0].ID != first.ID {
		t.Fatalf("first list %s, want %s alone", ev.data, first.ID)
	}

	h.environment(a.ID, "other-project", map[string]string{"tier": "dev"})
	h.environment(b.ID, "unlabelled", nil)
	second := h.environment(b.ID, "second", map[string]string{"tier": "dev"})
	next(func(ev event) bool { return ev.name == "environment" && strings.Contains(ev.data, second.ID) }, "event of the created environment")
	h.do("DELETE", "/v1/environments/"+first.ID, nil).json(t, 202, nil)
	next(func(ev event) bool { return ev.name == "deleted" && strings.Contains(ev.data, first.ID) }, "deleted event")
}

// The chain verifies over any range, linked to the event before it.
func TestVerifyAudit_ARangeVerifiesLinkedToTheEventBeforeIt(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"a", "b", "c"} {
		h.project(n)
	}
	var all apiv1.AuditVerification
	h.do("GET", "/v1/audit-events/verify", nil).json(t, 200, &all)
	if !all.OK || all.FromSeq != 1 || all.Events < 3 || all.ToSeq != all.Events {
		t.Fatalf("whole chain: %+v", all)
	}
	var part apiv1.AuditVerification
	h.do("GET", "/v1/audit-events/verify?from_seq=2&to_seq=3", nil).json(t, 200, &part)
	if !part.OK || part.FromSeq != 2 || part.ToSeq != 3 || part.Events != 2 {
		t.Fatalf("seq 2 to 3: %+v", part)
	}
	var past apiv1.AuditVerification
	h.do("GET", "/v1/audit-events/verify?from_seq=1000", nil).json(t, 200, &past)
	if past.OK && past.Events != 0 {
		t.Fatalf("a range past the head: %+v", past)
	}
	h.do("GET", "/v1/audit-events/verify?from_seq=3&to_seq=2", nil).problem(t, 400, "validation", "to_seq")
}

// A policy's environments are those of its project its selector picks.
func TestPolicyEnvironments_AreThoseItsSelectorPicksInItsProject(t *testing.T) {
	h := newHarness(t)
	a, b := h.project("a"), h.project("b")
	web := h.environment(a.ID, "web", map[string]string{"app": "web"})
	h.environment(a.ID, "db", map[string]string{"app": "db"})
	h.environment(b.ID, "web", map[string]string{"app": "web"})
	var pol apiv1.Policy
	h.do("POST", "/v1/policies", apiv1.PolicyCreate{ProjectID: a.ID, PolicySpec: apiv1.PolicySpec{
		Name: "web", PolicyTypes: []string{apiv1.Ingress}, EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{"app": "web"}},
	}}).json(t, 201, &pol)
	var got apiv1.List[apiv1.Environment]
	h.do("GET", "/v1/policies/"+pol.ID+"/environments", nil).json(t, 200, &got)
	if len(got.Items) != 1 || got.Items[0].ID != web.ID {
		t.Fatalf("policy %s selects %+v, want %s alone", pol.ID, got.Items, web.ID)
	}
	viewerB := h.apiToken("b", apiv1.RoleViewer, b.ID)
	h.do("GET", "/v1/policies/"+pol.ID+"/environments", nil, "Authorization", "Bearer "+viewerB.Secret).problem(t, 404, "not-found", "")
}
