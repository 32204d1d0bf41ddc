package client_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/client/clienttest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

func TestFaultProxy_CreatesThroughEveryKindOfFaultLandOnceEach(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy := clienttest.NewFaultProxy(t, srv.URL(), 7, clienttest.Mixed(0.35))
	c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), RetryWaitMin: time.Millisecond, RetryWaitMax: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const n = 60
	for i := range n {
		if _, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: fmt.Sprintf("p-%d", i)}); err != nil {
			t.Fatalf("create %d through the fault proxy: %v", i, err)
		}
	}
	direct := newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	all, err := direct.Projects().List(ctx, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("server holds %d projects after %d creates: duplicates or losses", len(all), n)
	}
	got := proxy.Counts()
	if got.Unavailable == 0 || got.RateLimited == 0 || got.LostAnswers == 0 || got.Delayed == 0 {
		t.Fatalf("counts %+v: every kind of fault must have been injected", got)
	}
	if got.Requests < n+got.Faulty() {
		t.Fatalf("counts %+v: fewer requests than creates plus their faulty attempts", got)
	}
	t.Logf("%d creates: %+v", n, got)
}

func TestFaultProxy_TheSameSeedDealsTheSameFaults(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	run := func(seed uint64) clienttest.FaultCounts {
		proxy := clienttest.NewFaultProxy(t, srv.URL(), seed, clienttest.Mixed(0.5))
		// No retries: one request per call, in order, so the faults line up.
		c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken(), MaxRetries: -1})
		for range 40 {
			_, _ = c.Projects().List(t.Context(), client.ListOptions{})
		}
		return proxy.Counts()
	}
	a, b, other := run(11), run(11), run(12)
	if a != b {
		t.Fatalf("seed 11 dealt %+v, then %+v", a, b)
	}
	if a == other {
		t.Fatalf("seeds 11 and 12 dealt the same faults %+v: the seed does nothing", a)
	}
}

func TestFaultProxy_HoldKeepsTheAnswerUntilTheClientGivesUp(t *testing.T) {
	t.Parallel()
	srv := startServer(t, server.Config{})
	proxy := clienttest.NewFaultProxy(t, srv.URL(), 1, clienttest.Faults{Hold: func(r *http.Request) bool { return r.Method == http.MethodPost }})
	c := newClient(t, client.Config{Endpoint: proxy.URL, Token: srv.AdminToken()})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "held"})
	key, unknown := client.UnknownOutcome(err)
	if !unknown {
		t.Fatalf("create = %v, want an unknown outcome", err)
	}
	// The server did it: the key says so, with the project made.
	direct := newClient(t, client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	rec, err := direct.IdempotencyKeys().WaitSettled(t.Context(), key)
	if err != nil || rec.State != apiv1.IdempotencyCommitted || rec.ResourceID == "" {
		t.Fatalf("key %s: %+v, %v; want committed with the project", key, rec, err)
	}
	if p, err := direct.Projects().Get(t.Context(), rec.ResourceID); err != nil || p.Name != "held" {
		t.Fatalf("project %s = %+v, %v", rec.ResourceID, p, err)
	}
	if got := proxy.Counts(); got.Held != 1 {
		t.Fatalf("counts %+v, want one held answer", got)
	}
}
