package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// storeToken writes a token straight into the store (an expiry in the
// past, which the API would refuse to create) and returns its secret.
func (h *harness) storeToken(name, role, projectID string, expiresAt *time.Time) (store.TokenRecord, string) {
	h.t.Helper()
	secret, err := auth.NewSecret()
	must(h.t, err)
	rec := store.TokenRecord{
		Token: apiv1.Token{ID: "tok_" + name, Name: name, Role: role, ProjectID: projectID, CreatedAt: time.Now().UTC(), ExpiresAt: expiresAt, ETag: `"1"`},
		Hash:  auth.HashSecret(secret),
	}
	must(h.t, h.srv.Store().Update(context.Background(), func(tx store.Tx) error { return tx.CreateToken(context.Background(), rec) }))
	return rec, secret
}

func TestAuth_A401SaysWhetherTheTokenIsUnknownRevokedOrExpiredAndNamesNoToken(t *testing.T) {
	h := newHarness(t)
	p := h.project("payments")
	revoked := h.apiToken("revoked-pipeline", apiv1.RoleEditor, p.ID)
	h.do("DELETE", "/v1/tokens/"+revoked.ID, nil).json(t, 204, nil)
	past := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	expired, expiredSecret := h.storeToken("expired-ci", apiv1.RoleViewer, p.ID, &past)
	live := h.apiToken("live-reader", apiv1.RoleAuditor, "")
	var all apiv1.List[apiv1.Token]
	h.do("GET", "/v1/tokens", nil).json(t, 200, &all)

	cases := []struct {
		name, header, want string
	}{
		{"no token", "", "no bearer token"},
		{"unknown", "Bearer isot_made-up-secret-of-nobody-0123456789", "unknown token"},
		// One character off a revoked or an expired secret is a stranger's
		// guess: it learns nothing about the token it resembles.
		{"unknown near a revoked one", "Bearer " + revoked.Secret[:len(revoked.Secret)-1] + "x", "unknown token"},
		{"unknown near an expired one", "Bearer " + expiredSecret + "x", "unknown token"},
		{"revoked", "Bearer " + revoked.Secret, "token revoked"},
		{"expired", "Bearer " + expiredSecret, "token expired"},
		{"malformed", "Bearer  " + live.Secret, "malformed Authorization header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("GET", "/v1/projects", nil, "Authorization", tc.header)
			prob := r.problem(t, 401, "unauthorized", "")
			if !strings.HasPrefix(prob.Detail, tc.want) {
				t.Fatalf("detail %q, want it to start with %q", prob.Detail, tc.want)
			}
			if r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("a 401 without WWW-Authenticate")
			}
			leaks := []string{p.ID, p.Name, expired.ID, expired.Name}
			for _, tok := range all.Items {
				leaks = append(leaks, tok.ID, tok.Name)
			}
			leaks = append(leaks, revoked.ID, revoked.Name)
			for _, leak := range leaks {
				if bytes.Contains(r.body, []byte(leak)) {
					t.Fatalf("the 401 names %q: %s", leak, r.body)
				}
			}
		})
	}
	// The expired token's answer says when, and only to its holder.
	prob := h.do("GET", "/v1/projects", nil, bearer(expiredSecret)...).problem(t, 401, "unauthorized", "")
	if !strings.Contains(prob.Detail, past.Format(time.RFC3339)) {
		t.Fatalf("expired detail %q does not say when", prob.Detail)
	}
	// The audit trail, for those who may read it, names the tokens.
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=auth.denied", nil).json(t, 200, &evs)
	reasons := ""
	for _, ev := range evs.Items {
		reasons += ev.Reason + "\n"
	}
	for _, want := range []string{"revoked token " + revoked.ID, "expired token " + expired.ID, "unknown token", "no bearer token", "malformed bearer token"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("no denial audited as %q in:\n%s", want, reasons)
		}
	}
}

func TestAuth_BearerTokensAreTakenExactlyAndWhitespaceAroundThemIsRefused(t *testing.T) {
	h := newHarness(t)
	tc := h.apiToken("exact", apiv1.RoleAuditor, "")
	h.do("GET", "/v1/projects", nil, "Authorization", "Bearer "+tc.Secret).json(t, 200, nil)
	h.do("GET", "/v1/projects", nil, "Authorization", "bearer "+tc.Secret).json(t, 200, nil)
	for _, header := range []string{
		"Bearer \u00a0" + tc.Secret, "Bearer " + tc.Secret + "\u00a0", // NBSP
		"Bearer \u2003" + tc.Secret, "Bearer " + tc.Secret + "\u2003", // EM SPACE
		"Bearer " + tc.Secret + "\u200b", "Bearer \u3000" + tc.Secret, // zero width, ideographic
		"Bearer\u00a0" + tc.Secret, "Bearer  " + tc.Secret, "Bearer\t" + tc.Secret,
	} {
		r := h.do("GET", "/v1/projects", nil, "Authorization", header)
		if r.status != 401 {
			t.Errorf("Authorization %q answered %d, want 401", header, r.status)
		}
	}
}

// timerClock is a fake clock that counts the timers started on it by the
// instant they are due, so that a test moves time only once a long request
// waits for the instant it moves to.
type timerClock struct {
	*clockwork.FakeClock
	mu      sync.Mutex
	due     map[int64]int // timers started, by their instant (Unix ns)
	started chan struct{} // a timer started since the last look
}

func newTimerClock() *timerClock {
	return &timerClock{
		FakeClock: clockwork.NewFakeClockAt(time.Now().UTC().Truncate(time.Second)),
		due:       map[int64]int{}, started: make(chan struct{}, 1),
	}
}

func (c *timerClock) NewTimer(d time.Duration) clockwork.Timer {
	at := c.Now().Add(d)
	t := c.FakeClock.NewTimer(d)
	c.mu.Lock()
	c.due[at.UnixNano()]++
	c.mu.Unlock()
	select {
	case c.started <- struct{}{}:
	default:
	}
	return t
}

// awaitTimers returns once n timers due at instant at have started.
func (c *timerClock) awaitTimers(t *testing.T, at time.Time, n int) {
	t.Helper()
	bound := time.After(20 * time.Second) // a failure bound
	for {
		c.mu.Lock()
		got := c.due[at.UnixNano()]
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-c.started:
		case <-bound:
			t.Fatalf("%d of %d timers due at %v started", got, n, at)
		}
	}
}

// Long requests end when their token expires, as they do on revocation:
// the wait answers 401 "token expired" and the watch stream ends. Both
// wait on the server's clock, which the test moves to the expiry once
// they do.
func TestAuth_WaitsAndWatchesEndWhenTheirTokenExpires(t *testing.T) {
	clock := newTimerClock()
	h := newHarness(t, func(c *server.Config) { c.Clock = clock })
	p := h.project("payments")
	env := h.environment(p.ID, "web", nil)
	h.wait(env.ID, "ready")
	exp := clock.Now().Add(time.Hour)
	var brief apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "brief-watcher", Role: apiv1.RoleViewer, ProjectID: p.ID, ExpiresAt: &exp}).json(t, 201, &brief)
	clock.Advance(time.Hour - 300*time.Millisecond)
	watchEnded, waited := h.openLongRequests(env.ID, brief.Secret)
	clock.awaitTimers(t, exp, 2) // the watch's and the wait's
	select {
	case a := <-waited:
		t.Fatalf("the wait ended before its token expired: %d %s", a.status, a.body)
	case err := <-watchEnded:
		t.Fatalf("the watch ended before its token expired: %v", err)
	default:
	}
	clock.Advance(300 * time.Millisecond)
	bound := time.After(20 * time.Second) // a failure bound
	select {
	case a := <-waited:
		if a.status != http.StatusUnauthorized || !bytes.Contains(a.body, []byte("token expired")) {
			t.Fatalf("the wait of an expiring token answered %d %s, want 401 token expired", a.status, a.body)
		}
	case <-bound:
		t.Fatal("the wait did not end when its token expired")
	}
	select {
	case err := <-watchEnded:
		if err != nil {
			t.Fatalf("the watch of the expired token did not end cleanly: %v", err)
		}
	case <-bound:
		t.Fatal("the watch did not end when its token expired")
	}
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?action=auth.denied", nil).json(t, 200, &evs)
	if len(evs.Items) != 1 || evs.Items[0].Reason != "token expired while waiting" {
		t.Fatalf("denials %+v, want the wait's expiry", evs.Items)
	}
	// The server's clock says when the wait ended: at the expiry, not before.
	if at := evs.Items[0].Time; at.Before(exp) {
		t.Fatalf("the wait ended at %v, before the token's expiry %v", at, exp)
	}
}

func TestAuth_ATokenIsRefusedFromItsExpiryOnByTheServersClock(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().UTC())
	h := newHarness(t, func(c *server.Config) { c.Clock = clock })
	exp := clock.Now().Add(24 * time.Hour)
	var tc apiv1.TokenCreated
	h.do("POST", "/v1/tokens", apiv1.TokenCreate{Name: "day-pass", Role: apiv1.RoleAuditor, ExpiresAt: &exp}).json(t, 201, &tc)
	h.do("GET", "/v1/projects", nil, bearer(tc.Secret)...).json(t, 200, nil) // and now cached
	clock.Advance(24*time.Hour - time.Second)
	h.do("GET", "/v1/projects", nil, bearer(tc.Secret)...).json(t, 200, nil)
	clock.Advance(time.Second)
	prob := h.do("GET", "/v1/projects", nil, bearer(tc.Secret)...).problem(t, 401, "unauthorized", "")
	if !strings.HasPrefix(prob.Detail, "token expired") {
		t.Fatalf("detail %q, want token expired", prob.Detail)
	}
}

// longAnswer is how a long request ended.
type longAnswer struct {
	status int
	body   []byte
	at     time.Time
}

// openLongRequests opens a watch and a wait_for=deleted of environment
// envID with secret, and returns once both are under way (the watch has
// sent its first event, the wait's request is written): what ends them is
// then up to the test.
func (h *harness) openLongRequests(envID, secret string) (watchEnded <-chan error, waited <-chan longAnswer) {
	h.t.Helper()
	long := &http.Client{Timeout: time.Minute}
	watchReq, _ := http.NewRequest("GET", h.url+"/v1/environments/"+envID+"/watch", nil)
	watchReq.Header.Set("Authorization", "Bearer "+secret)
	watch, err := long.Do(watchReq)
	must(h.t, err)
	h.t.Cleanup(func() { watch.Body.Close() })
	first := make([]byte, 64)
	if _, err := watch.Body.Read(first); err != nil || !bytes.HasPrefix(first, []byte("event: environment")) {
		h.t.Fatalf("watch's first event: %q %v", first, err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(watch.Body)
		ended <- err
	}()

	answered := make(chan longAnswer, 1)
	sent := make(chan struct{})
	go func() {
		req, _ := http.NewRequest("GET", h.url+"/v1/environments/"+envID+"?wait_for=deleted&timeout=50s", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) }}))
		res, err := long.Do(req)
		if err != nil {
			h.t.Error(err)
			answered <- longAnswer{}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		answered <- longAnswer{res.StatusCode, b, time.Now()}
	}()
	<-sent
	return ended, answered
}
