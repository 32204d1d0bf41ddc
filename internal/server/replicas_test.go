package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
)

const replicaSecret = "replica-test-admin-token-0123456789"

// testLeaseTTL keeps failovers in the tests short.
const testLeaseTTL = 900 * time.Millisecond

// startReplica starts a replica on dsn for host "h1", with the simulate
// driver and a data directory of its own.
func startReplica(t *testing.T, dsn string) *Server {
	t.Helper()
	s, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Store: dsn, BootstrapToken: replicaSecret, Host: "h1", LeaseTTL: testLeaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.http != nil {
			_ = s.Shutdown(context.Background())
		}
	})
	return s
}

// call sends method path with body (JSON) and the secret, and returns
// the status, the Retry-After header and the body.
func call(t *testing.T, s *Server, method, path, secret string, body any) (int, string, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Retry-After"), b
}

// eventually polls cond every 20 ms for at most d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readyz(t *testing.T, s *Server) (int, map[string]any) {
	t.Helper()
	st, _, b := call(t, s, "GET", "/readyz", "", nil)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return st, out
}

func createEnv(t *testing.T, s *Server, projectID, name string) string {
	t.Helper()
	st, _, b := call(t, s, "POST", "/v1/environments", replicaSecret, apiv1.EnvironmentCreate{ProjectID: projectID, Name: name})
	if st != http.StatusAccepted {
		t.Fatalf("create environment %s: %d %s", name, st, b)
	}
	var e apiv1.Environment
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

// waitReady long-polls environment id on s until it is ready.
func waitReady(t *testing.T, s *Server, id string) {
	t.Helper()
	st, _, b := call(t, s, "GET", "/v1/environments/"+id+"?wait_for=ready&timeout=15s", replicaSecret, nil)
	var e apiv1.Environment
	if st != http.StatusOK || json.Unmarshal(b, &e) != nil || e.State != apiv1.StateReady {
		t.Fatalf("environment %s through %s: %d %s; want ready", id, s.ReplicaID(), st, b)
	}
}

// Two replicas on one database: exactly one leads (and says so in its
// metric and /readyz); an environment created through the follower is
// reconciled by the leader; when the leader stops, the follower takes
// over, adopts what exists, and reconciles what is created through it.
func TestReplicas_OneLeadsAndTheOtherTakesOverWhenItStops(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := startReplica(t, dsn)
	b := startReplica(t, dsn)
	if !a.Leading() || b.Leading() {
		t.Fatalf("leading: first replica %v, second %v; want the first alone", a.Leading(), b.Leading())
	}
	eventually(t, 5*time.Second, "the follower's /readyz names the leader and two replicas", func() bool {
		st, h := readyz(t, b)
		r, _ := h["replica"].(map[string]any)
		return st == 200 && r["leader"] == a.ReplicaID() && r["leading"] == false && r["replicas"] == float64(2) && r["replica_id"] == b.ReplicaID()
	})
	_, _, metrics := call(t, b, "GET", "/metrics", replicaSecret, nil)
	if want := fmt.Sprintf(`isolationd_leader{replica=%q} 0`, b.ReplicaID()); !strings.Contains(string(metrics), want) {
		t.Errorf("the follower's metrics lack %s", want)
	}
	_, _, metrics = call(t, a, "GET", "/metrics", replicaSecret, nil)
	if want := fmt.Sprintf(`isolationd_leader{replica=%q} 1`, a.ReplicaID()); !strings.Contains(string(metrics), want) {
		t.Errorf("the leader's metrics lack %s", want)
	}

	st, _, body := call(t, b, "POST", "/v1/projects", replicaSecret, apiv1.ProjectCreate{Name: "p"})
	if st != http.StatusCreated {
		t.Fatalf("create project: %d %s", st, body)
	}
	var p apiv1.Project
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	first := createEnv(t, b, p.ID, "through-the-follower")
	waitReady(t, b, first)
	// check answers from the enforcing driver's rules: the follower, whose
	// driver holds none, says to retry, never guesses.
	probe := apiv1.CheckRequest{Direction: apiv1.Egress, Address: "192.0.2.1", Port: 443}
	if st, retry, body := call(t, b, "POST", "/v1/environments/"+first+"/check", replicaSecret, probe); st != http.StatusServiceUnavailable || retry == "" || !strings.Contains(string(body), a.ReplicaID()) {
		t.Errorf("check on the follower: %d, Retry-After %q: %s; want 503 naming the leader", st, retry, body)
	}
	if st, _, body := call(t, a, "POST", "/v1/environments/"+first+"/check", replicaSecret, probe); st != http.StatusOK {
		t.Errorf("check on the leader: %d %s", st, body)
	}

	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The leader gave the lease back: the follower takes it at its next
	// renewal, well within the TTL.
	eventually(t, 3*testLeaseTTL, "the follower leads once the leader stopped", b.Leading)
	second := createEnv(t, b, p.ID, "after-the-failover")
	waitReady(t, b, second)
	waitReady(t, b, first)
	st, h := readyz(t, b)
	if r, _ := h["replica"].(map[string]any); st != 200 || r["leader"] != b.ReplicaID() || r["leading"] != true {
		t.Errorf("/readyz after the failover: %d %v", st, h)
	}
}

// A replica that lost the lease cannot write with its old fence: the
// write is refused (ErrFenced) and nothing of it is kept.
func TestFencedStore_AStaleLeadersWriteIsRefusedAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenPostgres(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const lease = "reconcile/h1"
	fence, held, err := st.Lease(ctx, lease, "rep_old", time.Minute)
	if err != nil || !held {
		t.Fatalf("lease: %v %v", held, err)
	}
	old := fencedStore{Store: st, name: lease, holder: "rep_old", fence: fence}
	create := func(s store.Store, name string) error {
		return s.Update(ctx, func(tx store.Tx) error {
			return tx.CreateProject(ctx, apiv1.Project{ID: "prj_" + name, Name: name, CreatedAt: time.Now().UTC(), Generation: 1, ETag: `"1"`})
		})
	}
	if err := create(old, "while-leading"); err != nil {
		t.Fatalf("a write under the current fence: %v", err)
	}
	if err := st.ReleaseLease(ctx, lease, "rep_old"); err != nil {
		t.Fatal(err)
	}
	newFence, held, err := st.Lease(ctx, lease, "rep_new", time.Minute)
	if err != nil || !held || newFence <= fence {
		t.Fatalf("the new leader's lease: fence %d held %v %v; want a fence above %d", newFence, held, err, fence)
	}
	if err := create(old, "stale"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the stale leader's write: %v, want ErrFenced", err)
	}
	if _, err := st.GetProject(ctx, "prj_stale"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the stale leader's refused write left its project: %v", err)
	}
	if err := create(fencedStore{Store: st, name: lease, holder: "rep_new", fence: newFence}, "new-leader"); err != nil {
		t.Errorf("the new leader's write: %v", err)
	}
}

// While PostgreSQL is down, requests get 503 with Retry-After and
// /readyz is not ready; once it is back the server serves again by
// itself, and leads again.
func TestReplica_PostgresDownIs503WithRetryAfterAndRecoversByItself(t *testing.T) {
	pg, dsn := pgtest.Private(t)
	s := startReplica(t, dsn)
	if st, _, b := call(t, s, "GET", "/v1/projects", replicaSecret, nil); st != 200 {
		t.Fatalf("before: %d %s", st, b)
	}
	if err := pg.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a request while PostgreSQL is down is 503 with Retry-After", func() bool {
		st, retry, _ := call(t, s, "GET", "/v1/projects", replicaSecret, nil)
		return st == http.StatusServiceUnavailable && retry != ""
	})
	st, retry, b := call(t, s, "POST", "/v1/projects", replicaSecret, apiv1.ProjectCreate{Name: "while-down"})
	if st != http.StatusServiceUnavailable || retry == "" {
		t.Errorf("a write while PostgreSQL is down: %d, Retry-After %q: %s", st, retry, b)
	}
	if st, h := readyz(t, s); st != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(h["detail"]), "not reachable") {
		t.Errorf("/readyz while PostgreSQL is down: %d %v", st, h)
	}
	eventually(t, 3*testLeaseTTL, "the replica stops leading when it cannot renew its lease", func() bool { return !s.Leading() })

	if err := pg.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "requests succeed again after PostgreSQL restarts", func() bool {
		st, _, _ := call(t, s, "GET", "/v1/projects", replicaSecret, nil)
		return st == 200
	})
	eventually(t, 15*time.Second, "/readyz is ready and the replica leads again", func() bool {
		st, _ := readyz(t, s)
		return st == 200 && s.Leading()
	})
	if st, _, b := call(t, s, "POST", "/v1/projects", replicaSecret, apiv1.ProjectCreate{Name: "after"}); st != http.StatusCreated {
		t.Errorf("a write after the restart: %d %s", st, b)
	}
}

// A token revoked through one replica is refused by the other at its
// next request, though that replica had it cached.
func TestReplicas_ARevocationHoldsOnTheOtherReplicaAtTheNextRequest(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := startReplica(t, dsn)
	b := startReplica(t, dsn)
	st, _, body := call(t, a, "POST", "/v1/tokens", replicaSecret, apiv1.TokenCreate{Name: "ci", Role: apiv1.RoleAdmin})
	var tok apiv1.TokenCreated
	if st != http.StatusCreated || json.Unmarshal(body, &tok) != nil || tok.Secret == "" {
		t.Fatalf("create token: %d %s", st, body)
	}
	if st, _, b := call(t, b, "GET", "/v1/whoami", tok.Secret, nil); st != 200 {
		t.Fatalf("the new token on the other replica: %d %s", st, b)
	}
	// Revoke, and ask at once: no waiting for the announcement.
	if st, _, body := call(t, a, "DELETE", "/v1/tokens/"+tok.ID, replicaSecret, nil); st != http.StatusNoContent && st != http.StatusOK {
		t.Fatalf("revoke: %d %s", st, body)
	}
	if st, _, body := call(t, b, "GET", "/v1/whoami", tok.Secret, nil); st != http.StatusUnauthorized || !strings.Contains(string(body), "revoked") {
		t.Errorf("the revoked token on the other replica: %d %s; want 401 revoked", st, body)
	}
}

var _ api.Replicas = (*acting)(nil)

// A leader that dies without releasing its lease (kill -9) is replaced
// once the lease runs out: until then the replica follows, and names the
// dead holder as the leader.
func TestReplica_TakesOverTheLeaseOfALeaderThatStoppedRenewing(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	st, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, held, err := st.Lease(ctx, "reconcile/h1", "rep_dead", testLeaseTTL); err != nil || !held {
		t.Fatalf("the dead leader's lease: %v %v", held, err)
	}
	s := startReplica(t, dsn)
	if s.Leading() {
		t.Fatal("the replica leads while another holder's lease runs")
	}
	if _, h := readyz(t, s); h["replica"].(map[string]any)["leader"] != "rep_dead" {
		t.Errorf("/readyz while following: %v; want the leader rep_dead", h)
	}
	eventually(t, 3*testLeaseTTL, "the replica leads once the dead leader's lease ran out", s.Leading)
	if fence, held, err := st.Lease(ctx, "reconcile/h1", "rep_dead", testLeaseTTL); err != nil || held || fence != 0 {
		t.Errorf("the dead leader coming back: fence %d, held %v, %v; want the lease refused", fence, held, err)
	}
}
