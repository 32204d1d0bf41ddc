package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/logbuf"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// Requests commit together and report their events from their own
// goroutines; the JSON-lines sink still gets the chain in seq order, each
// event once: creates, denials and the reconciler's events alike.
func TestAuditSink_WritesTheChainInSeqOrderUnderConcurrency(t *testing.T) {
	var sink logbuf.Buffer
	h := newHarness(t, func(c *server.Config) { c.AuditLog = &sink })
	const workers, each = 8, 15
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				p := h.project(fmt.Sprintf("p-%d-%d", w, i))
				h.do("GET", "/v1/projects/"+p.ID, nil, bearer("isot_wrong-token-so-a-denial-is-audited")...)
			}
		})
	}
	wg.Wait()
	// Denials are appended off the request path, the repeated ones of a
	// minute as one aggregate: flushing puts them all on the chain.
	h.flushDenials()
	var evs apiv1.List[apiv1.AuditEvent]
	h.do("GET", "/v1/audit-events?limit=1000", nil).json(t, 200, &evs)
	lines := strings.Split(strings.TrimSpace(sink.String()), "\n")
	if len(lines) != len(evs.Items) || len(lines) < workers*each {
		t.Fatalf("%d lines in the sink, %d events in the chain (want at least %d)", len(lines), len(evs.Items), workers*each)
	}
	if n := refusals(evs.Items, "auth.denied")[401]; n != workers*each {
		t.Fatalf("the chain stands for %d denials, want %d", n, workers*each)
	}
	for i, l := range lines {
		var ev apiv1.AuditEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq != int64(i+1) || ev.Hash != evs.Items[i].Hash {
			t.Fatalf("line %d is seq %d (hash %s), want seq %d (hash %s)", i+1, ev.Seq, ev.Hash, i+1, evs.Items[i].Hash)
		}
	}
}
