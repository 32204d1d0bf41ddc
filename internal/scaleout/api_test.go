package scaleout

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/replicatest"
)

// wakeWait bounds how long a replica may take to see another's change.
const wakeWait = 10 * time.Second

// pair is the two replicas of a cluster: a, which does not reconcile (so
// that every change it sees comes from b), and b.
func pair(t *testing.T, c *replicatest.Cluster) (a, b *replicatest.Replica) {
	t.Helper()
	b = c.Leader(t)
	return c.Replicas[(b.Index+1)%len(c.Replicas)], b
}

// must sends req to r and fails the test unless the answer has status want.
func must(t *testing.T, r *replicatest.Replica, want int, req replicatest.Request) replicatest.Response {
	t.Helper()
	res, err := r.Do(t.Context(), req)
	if err != nil {
		t.Fatalf("%s %s through replica %d: %v", req.Method, req.Path, r.Index, err)
	}
	if res.Status != want {
		t.Fatalf("%s %s through replica %d: %d %s, want %d", req.Method, req.Path, r.Index, res.Status, res.Body, want)
	}
	return res
}

// project creates a project through r.
func project(t *testing.T, r *replicatest.Replica, name string) apiv1.Project {
	t.Helper()
	var prj apiv1.Project
	must(t, r, http.StatusCreated, replicatest.Request{Method: http.MethodPost, Path: "/v1/projects", Body: apiv1.ProjectCreate{Name: name}}).Decode(t, &prj)
	return prj
}

// readyEnvironment creates a project and an environment in it through r,
// and waits for it to be ready.
func readyEnvironment(t *testing.T, r *replicatest.Replica, name string) apiv1.Environment {
	t.Helper()
	prj := project(t, r, name)
	var env apiv1.Environment
	must(t, r, http.StatusAccepted, replicatest.Request{Method: http.MethodPost, Path: "/v1/environments",
		Body: apiv1.EnvironmentCreate{ProjectID: prj.ID, Name: name}}).Decode(t, &env)
	must(t, r, http.StatusOK, replicatest.Request{Method: http.MethodGet, Path: "/v1/environments/" + env.ID + "?wait_for=ready&timeout=30s"}).Decode(t, &env)
	if env.State != apiv1.StateReady {
		t.Fatalf("environment %s is %s, not ready", env.ID, env.State)
	}
	return env
}

// sseEvents reads a Server-Sent Events stream into a channel, one event
// (its name and data) at a time, until the stream ends.
type sseEvent struct{ name, data string }

func watch(t *testing.T, r *replicatest.Replica, path string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+r.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		t.Fatalf("GET %s through replica %d: %d", path, r.Index, res.StatusCode)
	}
	events := make(chan sseEvent, 16)
	go func() {
		defer res.Body.Close()
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			}
		}
	}()
	return events
}

// next is the stream's next event, failing the test after wakeWait.
func next(t *testing.T, events <-chan sseEvent, what string) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatalf("the stream ended before %s", what)
		}
		return ev
	case <-time.After(wakeWait):
		t.Fatalf("no %s within %s", what, wakeWait)
	}
	return sseEvent{}
}

func TestWatch_AStreamOnOneReplicaWakesOnAChangeCommittedThroughTheOther(t *testing.T) {
	c := startCluster(t, 2)
	a, b := pair(t, c)
	env := readyEnvironment(t, b, "watched")
	events := watch(t, a, "/v1/environments/"+env.ID+"/watch")
	// The first event is sent once the stream listens for changes.
	if ev := next(t, events, "the first event"); ev.name != "environment" {
		t.Fatalf("first event %q %s, want the environment", ev.name, ev.data)
	}
	must(t, b, http.StatusOK, replicatest.Request{Method: http.MethodPatch, Path: "/v1/environments/" + env.ID,
		Body: apiv1.EnvironmentPatch{Labels: &map[string]string{"changed-through": "the-other-replica"}}})
	for range 20 { // the reconciler's own updates may come first
		ev := next(t, events, "the event of the change through the other replica")
		var got apiv1.Environment
		if err := json.Unmarshal([]byte(ev.data), &got); err != nil {
			t.Fatalf("event %q: %v", ev.name, err)
		}
		if got.Labels["changed-through"] == "the-other-replica" {
			return
		}
	}
	t.Fatal("20 events, none with the change")
}

func TestWaitFor_ALongPollOnOneReplicaWakesOnADeleteThroughTheOther(t *testing.T) {
	c := startCluster(t, 2)
	a, b := pair(t, c)
	env := readyEnvironment(t, b, "awaited")
	type answer struct {
		res replicatest.Response
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		res, err := a.Do(t.Context(), replicatest.Request{Method: http.MethodGet, Path: "/v1/environments/" + env.ID + "?wait_for=deleting,deleted&timeout=30s"})
		answered <- answer{res, err}
	}()
	must(t, b, http.StatusAccepted, replicatest.Request{Method: http.MethodDelete, Path: "/v1/environments/" + env.ID})
	// Had the wait missed the change, it would answer ready at its timeout,
	// with X-Wait-Timeout.
	var got answer
	select {
	case got = <-answered:
	case <-time.After(wakeWait):
		t.Fatalf("the long poll on replica %d did not wake within %s of the delete through replica %d", a.Index, wakeWait, b.Index)
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	if got.res.Header.Get("X-Wait-Timeout") != "" || (got.res.Status != http.StatusNotFound && !strings.Contains(string(got.res.Body), `"state":"deleting"`)) {
		t.Fatalf("the long poll answered %d %s (X-Wait-Timeout %q), want the environment deleting or gone", got.res.Status, got.res.Body, got.res.Header.Get("X-Wait-Timeout"))
	}
}

func TestTokens_RevokedThroughOneReplicaIsRefusedByTheOtherAtTheNextRequest(t *testing.T) {
	c := startCluster(t, 2)
	prj := project(t, c.Replicas[0], "revocations")
	for i, revoker := range c.Replicas {
		user := c.Replicas[(i+1)%len(c.Replicas)]
		var tok apiv1.TokenCreated
		must(t, revoker, http.StatusCreated, replicatest.Request{Method: http.MethodPost, Path: "/v1/tokens",
			Body: apiv1.TokenCreate{Name: fmt.Sprintf("revoked-%d", i), Role: "viewer", ProjectID: prj.ID}}).Decode(t, &tok)
		asUser := replicatest.Request{Method: http.MethodGet, Path: "/v1/whoami", Header: map[string]string{"Authorization": "Bearer " + tok.Secret}}
		// Used (and so known) on the other replica before it is revoked.
		must(t, user, http.StatusOK, asUser)
		must(t, revoker, http.StatusNoContent, replicatest.Request{Method: http.MethodDelete, Path: "/v1/tokens/" + tok.ID})
		res, err := user.Do(t.Context(), asUser)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusUnauthorized {
			t.Fatalf("the token revoked through replica %d: replica %d answered its next request %d, want 401 (%s)",
				revoker.Index, user.Index, res.Status, refusedWhen(t, user, asUser))
		}
	}
}

// refusedWhen says how long after a revocation a replica took to refuse
// the token, if it did within wakeWait, for the failure's report.
func refusedWhen(t *testing.T, r *replicatest.Replica, req replicatest.Request) string {
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < wakeWait {
		if res, err := r.Do(t.Context(), req); err == nil && res.Status == http.StatusUnauthorized {
			return fmt.Sprintf("it refused the token %s later", time.Since(start).Round(time.Millisecond))
		}
		<-tick.C
	}
	return fmt.Sprintf("it still accepted the token %s later", wakeWait)
}

// race sends reqs at once, reqs[i] through rs[i], and returns the answers.
func race(t *testing.T, rs []*replicatest.Replica, reqs []replicatest.Request) []replicatest.Response {
	t.Helper()
	out := make([]replicatest.Response, len(reqs))
	errs := make([]error, len(reqs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			<-start
			out[i], errs[i] = rs[i].Do(t.Context(), reqs[i])
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s %s through replica %d: %v", reqs[i].Method, reqs[i].Path, rs[i].Index, err)
		}
	}
	return out
}

// problemIs reports whether res is the problem of kind (its type's last
// path segment) with status.
func problemIs(res replicatest.Response, status int, kind string) bool {
	var p apiv1.Problem
	return res.Status == status && json.Unmarshal(res.Body, &p) == nil && strings.HasSuffix(p.Type, "/"+kind)
}

// settle retries req through r while the first request with its key is
// still in flight elsewhere, and returns the answer after it.
func settle(t *testing.T, r *replicatest.Replica, req replicatest.Request, res replicatest.Response) replicatest.Response {
	t.Helper()
	for range 50 {
		if !problemIs(res, http.StatusConflict, "idempotency-in-flight") {
			return res
		}
		var err error
		if res, err = r.Do(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("still in flight after 50 retries: %d %s", res.Status, res.Body)
	return res
}

// rounds is how many races each cross-replica test runs.
const rounds = 20

func TestIdempotency_OneKeyOnBothReplicasAtOnceCreatesOneObject(t *testing.T) {
	c := startCluster(t, 2)
	prj := project(t, c.Replicas[0], "idempotency")
	for i := range rounds {
		// A token: its name is not unique, so two creations would make two.
		name := fmt.Sprintf("idem-%02d", i)
		req := replicatest.Request{Method: http.MethodPost, Path: "/v1/tokens", Body: apiv1.TokenCreate{Name: name, Role: "viewer", ProjectID: prj.ID},
			Header: map[string]string{apiv1.HeaderIdempotencyKey: "same-key-" + name}}
		res := race(t, c.Replicas, []replicatest.Request{req, req})
		var ids []string
		for k := range res {
			res[k] = settle(t, c.Replicas[k], req, res[k])
			if res[k].Status != http.StatusCreated {
				t.Fatalf("round %d, replica %d: %d %s, want 201 (created or replayed)", i, k, res[k].Status, res[k].Body)
			}
			var tok apiv1.TokenCreated
			res[k].Decode(t, &tok)
			ids = append(ids, tok.ID)
		}
		if ids[0] != ids[1] {
			t.Fatalf("round %d: the same request with the same key created two tokens, %s and %s", i, ids[0], ids[1])
		}
		if replayed := res[0].Header.Get("Idempotent-Replayed") + res[1].Header.Get("Idempotent-Replayed"); replayed != "true" {
			t.Fatalf("round %d: Idempotent-Replayed %q and %q, want it on exactly one answer", i,
				res[0].Header.Get("Idempotent-Replayed"), res[1].Header.Get("Idempotent-Replayed"))
		}
	}
	var list apiv1.List[apiv1.Token]
	must(t, c.Replicas[0], http.StatusOK, replicatest.Request{Method: http.MethodGet, Path: "/v1/tokens?limit=100"}).Decode(t, &list)
	byName := map[string]int{}
	for _, tok := range list.Items {
		byName[tok.Name]++
	}
	for i := range rounds {
		if n := byName[fmt.Sprintf("idem-%02d", i)]; n != 1 {
			t.Errorf("token idem-%02d exists %d times, want once", i, n)
		}
	}
}

func TestIdempotency_OneKeyWithTwoBodiesOnBothReplicasAtOnceHasOneWinner(t *testing.T) {
	c := startCluster(t, 2)
	for i := range rounds {
		key := fmt.Sprintf("contested-%02d", i)
		var reqs []replicatest.Request
		for k := range c.Replicas {
			reqs = append(reqs, replicatest.Request{Method: http.MethodPost, Path: "/v1/projects",
				Body: apiv1.ProjectCreate{Name: fmt.Sprintf("p%02d-via-%d", i, k)}, Header: map[string]string{apiv1.HeaderIdempotencyKey: key}})
		}
		res := race(t, c.Replicas, reqs)
		winners := 0
		for k := range res {
			res[k] = settle(t, c.Replicas[k], reqs[k], res[k])
			switch {
			case res[k].Status == http.StatusCreated && res[k].Header.Get("Idempotent-Replayed") == "":
				winners++
			case problemIs(res[k], http.StatusUnprocessableEntity, "idempotency-mismatch"):
			default:
				t.Fatalf("round %d, replica %d: %d %s, want 201 or 422 (the key used with another body)", i, k, res[k].Status, res[k].Body)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d requests won the key, want 1", i, winners)
		}
	}
	var list apiv1.List[apiv1.Project]
	must(t, c.Replicas[0], http.StatusOK, replicatest.Request{Method: http.MethodGet, Path: "/v1/projects?limit=100"}).Decode(t, &list)
	if len(list.Items) != rounds {
		t.Fatalf("%d projects, want %d: one a key", len(list.Items), rounds)
	}
}

func TestIfMatch_TwoPatchesWithOneETagAcrossReplicasOneSucceedsTheOtherGets412(t *testing.T) {
	c := startCluster(t, 2)
	prj := project(t, c.Replicas[0], "contested")
	path := "/v1/projects/" + prj.ID
	for i := range rounds {
		etag := must(t, c.Replicas[i%2], http.StatusOK, replicatest.Request{Method: http.MethodGet, Path: path}).Header.Get("ETag")
		var reqs []replicatest.Request
		for k := range c.Replicas {
			reqs = append(reqs, replicatest.Request{Method: http.MethodPatch, Path: path,
				Body:   apiv1.ProjectPatch{Labels: &map[string]string{"round": fmt.Sprint(i), "writer": fmt.Sprint(k)}},
				Header: map[string]string{"If-Match": etag}})
		}
		res := race(t, c.Replicas, reqs)
		winner := -1
		for k, r := range res {
			switch r.Status {
			case http.StatusOK:
				if winner >= 0 {
					t.Fatalf("round %d: both PATCHes with ETag %s succeeded: an update was lost", i, etag)
				}
				winner = k
			case http.StatusPreconditionFailed:
			default:
				t.Fatalf("round %d, replica %d: %d %s, want 200 or 412", i, k, r.Status, r.Body)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: neither PATCH succeeded", i)
		}
		var got apiv1.Project
		must(t, c.Replicas[(i+1)%2], http.StatusOK, replicatest.Request{Method: http.MethodGet, Path: path}).Decode(t, &got)
		if got.Labels["round"] != fmt.Sprint(i) || got.Labels["writer"] != fmt.Sprint(winner) {
			t.Fatalf("round %d: labels %v, want the winner's (replica %d)", i, got.Labels, winner)
		}
	}
}
