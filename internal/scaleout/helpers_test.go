package scaleout

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/replicatest"
)

// auditChainIntact verifies the audit chain end to end, through r's API
// and with `isolationd audit verify` on the database, and checks that it
// is one unbroken sequence: seq 1 to the last, each once.
func auditChainIntact(t *testing.T, c *replicatest.Cluster, r *replicatest.Replica) {
	t.Helper()
	if code, out := replicatest.Isolationd(t, "audit", "verify", "--store", c.Store); code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("isolationd audit verify --store: exit %d: %s", code, out)
	} else {
		t.Logf("isolationd audit verify: %s", strings.TrimSpace(out))
	}
	res, err := r.Do(t.Context(), replicatest.Request{Method: http.MethodGet, Path: "/v1/audit-events/verify"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("audit verify: %d %s", res.Status, res.Body)
	}
	var v apiv1.AuditVerification
	res.Decode(t, &v)
	if !v.OK || v.Broken != nil || v.FromSeq != 1 || v.Events != v.ToSeq {
		t.Fatalf("audit chain does not verify end to end: %s", res.Body)
	}
	evs, err := r.Client().Audit().List(t.Context(), client.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("audit event %d of the list has seq %d: the sequence has a gap or a repeat", i+1, ev.Seq)
		}
	}
	if int64(len(evs)) < v.Events {
		t.Fatalf("the audit list has %d events, the verification %d", len(evs), v.Events)
	}
	t.Logf("audit chain intact: %d events, seq 1 to %d", v.Events, v.ToSeq)
}

// lockedBuilder collects a command's output while the test may read it.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
