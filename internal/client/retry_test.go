package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestDo_RetriesUntilTheDeadlineWhenMaxRetriesIsUnset(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(503, "Service Unavailable"))
	c := newTestClient(t, f, func(cfg *Config) { cfg.MaxRetries = 0 })
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "payments"})
	elapsed := time.Since(start)

	var gaveUp *GaveUpError
	if !errors.As(err, &gaveUp) {
		t.Fatalf("error %T %v, want a *GaveUpError", err, err)
	}
	// The deadline may cut the last attempt before the server sees it.
	n := len(f.recorded())
	if n <= 4 || gaveUp.Attempts < n || gaveUp.Attempts > n+1 {
		t.Fatalf("%d attempts reported, the server saw %d: want every attempt counted and more than a fixed budget of 4", gaveUp.Attempts, n)
	}
	if !errors.Is(err, context.DeadlineExceeded) || StatusCode(err) != 503 {
		t.Fatalf("error %v: want it to unwrap to the deadline and the last 503", err)
	}
	for _, part := range []string{"POST /v1/projects: gave up after", "attempts in", "last answer 503 Service Unavailable"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
	if elapsed > 2*time.Second {
		t.Fatalf("gave up after %s, want about the 300ms deadline", elapsed)
	}
}

func TestDo_WithoutADeadlineTheRequestTimeoutBoundsTheRetries(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, reply{drop: true})
	c := newTestClient(t, f, func(cfg *Config) { cfg.MaxRetries = 0; cfg.RequestTimeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := c.Projects().Get(context.Background(), "prj-1")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("a read without a deadline retried for %s, want it bounded by the 200ms request timeout", elapsed)
	}
	var gaveUp *GaveUpError
	if !errors.As(err, &gaveUp) || gaveUp.Attempts < 2 || !strings.Contains(err.Error(), "last attempt got no answer") {
		t.Fatalf("error %v: want a *GaveUpError after several attempts saying the last got no answer", err)
	}
}

func TestDo_MaxRetriesStillCapsTheAttempts(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, problem(429, "Too Many Requests"))
	c := newTestClient(t, f, func(cfg *Config) { cfg.MaxRetries = 2 })
	_, err := c.Projects().Get(t.Context(), "prj-1")
	if n := len(f.recorded()); n != 3 {
		t.Fatalf("server saw %d attempts, want 1 + 2 retries", n)
	}
	if !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), "max_retries 2") {
		t.Fatalf("error %q does not say it gave up after 3 attempts at max_retries 2", err)
	}
}

func TestDo_GivesUpAtOnceWhenRetryAfterWouldPassTheDeadline(t *testing.T) {
	t.Parallel()
	limited := problem(429, "Too Many Requests")
	limited.header = map[string]string{"Retry-After": "30"}
	f := newFakeAPI(t, limited)
	c := newTestClient(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Projects().Get(ctx, "prj-1")
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("waited %s for nothing: a 30s Retry-After cannot end before a 5s deadline", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "would pass the deadline") || StatusCode(err) != 429 {
		t.Fatalf("error %v: want a deadline error naming the 429 and the wait", err)
	}
}

func TestDo_RetriesWhileTheSameIdempotencyKeyIsInFlight(t *testing.T) {
	t.Parallel()
	inFlight := reply{status: 409, body: apiv1.Problem{
		Type: "https://isolationhq.dev/problems/idempotency-in-flight", Title: "Request with this Idempotency-Key in progress", Status: 409,
	}}
	f := newFakeAPI(t, inFlight, reply{status: 201, body: testProject})
	if _, err := newTestClient(t, f).Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"}); err != nil {
		t.Fatalf("create answered in flight, then created: %v", err)
	}
	if n := len(f.recorded()); n != 2 {
		t.Fatalf("server saw %d attempts, want 2", n)
	}
}

func TestUnknownOutcome_OnlyWhenAnAttemptMayHaveBeenDoneUnheard(t *testing.T) {
	t.Parallel()
	t.Run("answer lost, then 503 until the deadline", func(t *testing.T) {
		t.Parallel()
		f := newFakeAPI(t, reply{drop: true}, problem(503, "Service Unavailable"))
		c := newTestClient(t, f)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "payments"})
		key, unknown := UnknownOutcome(err)
		if !unknown || key == "" || key != f.recorded()[0].Header.Get("Idempotency-Key") {
			t.Fatalf("UnknownOutcome(%v) = %q, %v; want the key the POST carried", err, key, unknown)
		}
	})
	t.Run("every attempt answered 503", func(t *testing.T) {
		t.Parallel()
		f := newFakeAPI(t, problem(503, "Service Unavailable"))
		_, err := newTestClient(t, f).Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
		if _, unknown := UnknownOutcome(err); unknown || err == nil {
			t.Fatalf("UnknownOutcome(%v) = true: every attempt was refused, so nothing was done", err)
		}
	})
	t.Run("a definitive answer", func(t *testing.T) {
		t.Parallel()
		f := newFakeAPI(t, problem(422, "Invalid"))
		_, err := newTestClient(t, f).Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
		if _, unknown := UnknownOutcome(err); unknown {
			t.Fatalf("UnknownOutcome(%v) = true for a 422", err)
		}
	})
	t.Run("no connection", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c, err := New(Config{Endpoint: "http://" + addr, Token: testToken, MaxRetries: 2, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "payments"})
		if _, unknown := UnknownOutcome(err); unknown || err == nil {
			t.Fatalf("UnknownOutcome(%v) = true, but the request never left: the connection was refused", err)
		}
	})
}

func TestDelete_LostAnswerThenNotFoundIsTheFirstAttemptsSuccess(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, reply{drop: true}, problem(404, "Not Found"))
	if err := newTestClient(t, f).Projects().Delete(t.Context(), "prj-1", `"1"`); err != nil {
		t.Fatalf("Delete after a lost answer, then 404: %v; want success, the first attempt deleted it", err)
	}
	// Without a lost answer, a 404 is the caller's to handle.
	f = newFakeAPI(t, problem(404, "Not Found"))
	if err := newTestClient(t, f).Projects().Delete(t.Context(), "prj-1", ""); !IsNotFound(err) {
		t.Fatalf("Delete = %v, want the 404", err)
	}
}

func TestDelete_LostAnswerThenPreconditionFailedSettlesByLooking(t *testing.T) {
	t.Parallel()
	precondition := problem(412, "Precondition Failed")
	t.Run("being deleted: success", func(t *testing.T) {
		t.Parallel()
		f := newFakeAPI(t, reply{drop: true}, precondition, reply{status: 200, body: apiv1.Environment{ID: "env-1", State: apiv1.StateDeleting}})
		if err := newTestClient(t, f).Environments().Delete(t.Context(), "env-1", `"1"`); err != nil {
			t.Fatalf("Delete = %v, want success: the environment is being deleted by the first attempt", err)
		}
		reqs := f.recorded()
		if len(reqs) != 3 || reqs[2].Method != "GET" || reqs[2].Header.Get("If-Match") != "" {
			t.Fatalf("requests %+v, want DELETE, DELETE, then a plain GET", reqs)
		}
	})
	t.Run("changed by someone else: the 412 stands", func(t *testing.T) {
		t.Parallel()
		f := newFakeAPI(t, reply{drop: true}, precondition, reply{status: 200, body: apiv1.Environment{ID: "env-1", State: apiv1.StateReady}})
		if err := newTestClient(t, f).Environments().Delete(t.Context(), "env-1", `"1"`); !IsPreconditionFailed(err) {
			t.Fatalf("Delete = %v, want the 412: the environment is still there, changed", err)
		}
	})
}
