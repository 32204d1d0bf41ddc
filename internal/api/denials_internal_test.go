package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func TestTruncateField_CutsToValidUTF8WithAMarkAndKeepsShortValues(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 40000) // 80,000 bytes of two-byte characters
	for _, tc := range []struct {
		name, in  string
		want      string // "" when only the properties are checked
		truncated bool
	}{
		{name: "short value kept", in: "terraform-provider-isolation/1.2 (go1.26)", want: "terraform-provider-isolation/1.2 (go1.26)"},
		{name: "exactly the limit kept", in: strings.Repeat("a", MaxFieldBytes), want: strings.Repeat("a", MaxFieldBytes)},
		{name: "one byte over is cut", in: strings.Repeat("a", MaxFieldBytes+1), truncated: true},
		{name: "60 KB user agent", in: strings.Repeat("x", 60<<10), truncated: true},
		{name: "multi-byte characters cut on a boundary", in: long, truncated: true},
		{name: "invalid bytes replaced", in: "ok\xff\xfeok", want: "ok\uFFFDok"},
		{name: "long and invalid", in: strings.Repeat("\xff", 5000), truncated: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := truncateField(tc.in)
			if tc.want != "" && got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if len(got) > MaxFieldBytes || !utf8.ValidString(got) {
				t.Fatalf("%d bytes, valid UTF-8 %v: want at most %d bytes of valid UTF-8", len(got), utf8.ValidString(got), MaxFieldBytes)
			}
			if strings.HasSuffix(got, truncatedMark) != tc.truncated {
				t.Fatalf("marked truncated %v, want %v: %q", !tc.truncated, tc.truncated, got)
			}
			if tc.truncated && utf8.ValidString(tc.in) && len(got) < MaxFieldBytes-utf8.UTFMax {
				t.Fatalf("cut to %d bytes: more was kept than needed", len(got))
			}
		})
	}
}

// denialRig is the aggregator on a real SQLite store with a fake clock.
type denialRig struct {
	t       *testing.T
	st      *store.SQLite
	d       *denials
	clock   *clockwork.FakeClock
	mu      sync.Mutex
	audited []apiv1.AuditEvent
}

func newDenialRig(t *testing.T) *denialRig {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "isolationd.db"))
	if err != nil {
		t.Fatal(err)
	}
	rig := &denialRig{t: t, st: st, clock: clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 5, 0, time.UTC))}
	// The sink's view: what the store announces it appended.
	st.Subscribe(func(c store.Commit) {
		rig.mu.Lock()
		defer rig.mu.Unlock()
		rig.audited = append(rig.audited, c.Events...)
	})
	rig.d = newDenials(control.New(control.Options{Store: st, Clock: rig.clock}), slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		if err := rig.d.stop(context.Background()); err != nil {
			t.Errorf("stop the denial audit: %v", err)
		}
		st.Close()
	})
	return rig
}

func (rig *denialRig) deny(ip, reason string, status int) {
	rig.d.record(apiv1.AuditEvent{
		ID: fmt.Sprintf("evt_%d", rig.clock.Now().UnixNano()) + ip + reason, Time: rig.clock.Now(), RequestID: "req_" + ip,
		Actor: apiv1.Actor{Name: "anonymous"}, Source: apiv1.Source{IP: ip, UserAgent: "ua"},
		Action: actionDenied, Outcome: apiv1.OutcomeDenied, StatusCode: status, Reason: reason,
	})
	rig.clock.Advance(time.Millisecond)
}

func (rig *denialRig) events() []apiv1.AuditEvent {
	rig.t.Helper()
	evs, _, err := rig.st.ListAudit(context.Background(), store.AuditQuery{Limit: store.MaxLimit})
	if err != nil {
		rig.t.Fatal(err)
	}
	return evs
}

func (rig *denialRig) sync() {
	rig.t.Helper()
	if err := rig.d.sync(context.Background()); err != nil {
		rig.t.Fatal(err)
	}
}

// total adds up the refusals the events stand for.
func total(t *testing.T, evs []apiv1.AuditEvent) int {
	n := 0
	for _, ev := range evs {
		if strings.HasSuffix(ev.Action, AggregateSuffix) {
			n += aggregateOf(t, ev).Count
		} else {
			n++
		}
	}
	return n
}

func aggregateOf(t *testing.T, ev apiv1.AuditEvent) apiv1.DenialAggregate {
	t.Helper()
	raw, _ := json.Marshal(ev.Changes.After)
	var agg apiv1.DenialAggregate
	if err := json.Unmarshal(raw, &agg); err != nil || agg.Count == 0 {
		t.Fatalf("aggregate event without a count: %+v (%v)", ev, err)
	}
	return agg
}

func TestDenials_FirstOfAMinuteIsAppendedAloneTheRestCountedUntilTheMinuteCloses(t *testing.T) {
	t.Parallel()
	rig := newDenialRig(t)
	for range 10 {
		rig.deny("198.18.0.1", "no bearer token", 401)
	}
	rig.deny("198.18.0.2", "no bearer token", 401)
	rig.deny("198.18.0.1", "unknown token", 401)
	rig.sync()
	evs := rig.events()
	if len(evs) != 3 {
		t.Fatalf("%d events within the minute, want the 3 firsts: %+v", len(evs), evs)
	}
	for _, ev := range evs {
		if strings.HasSuffix(ev.Action, AggregateSuffix) {
			t.Fatalf("an aggregate before its minute closed: %+v", ev)
		}
	}

	// The next minute's first refusal closes the last minute's windows.
	rig.clock.Advance(time.Minute)
	rig.deny("198.18.0.1", "no bearer token", 401)
	rig.sync()
	evs = rig.events()
	if len(evs) != 5 {
		t.Fatalf("%d events after the minute closed, want 3 firsts, 1 aggregate, 1 first: %+v", len(evs), evs)
	}
	agg := evs[3]
	got := aggregateOf(t, agg)
	if agg.Action != "auth.denied.aggregate" || got.Count != 9 || agg.Source.IP != "198.18.0.1" || agg.Reason != "no bearer token" || agg.StatusCode != 401 {
		t.Fatalf("aggregate %+v %+v, want 9 more no-bearer-token 401s of 198.18.0.1", agg, got)
	}
	start := time.Date(2026, 12, 1, 10, 0, 5, int(time.Millisecond), time.UTC)
	if !got.WindowStart.Equal(start) || !got.WindowEnd.Equal(start.Add(8*time.Millisecond)) {
		t.Fatalf("window %v to %v, want the second to the tenth refusal (%v to %v)", got.WindowStart, got.WindowEnd, start, start.Add(8*time.Millisecond))
	}
	if n := total(t, evs); n != 13 {
		t.Fatalf("the trail stands for %d refusals, want 13", n)
	}
	rig.mu.Lock()
	sunk := len(rig.audited)
	rig.mu.Unlock()
	if sunk != len(evs) {
		t.Fatalf("%d events handed to the sink, %d appended", sunk, len(evs))
	}
}

func TestDenials_AMinuteWithNoLaterRefusalClosesOnTheClockAlone(t *testing.T) {
	t.Parallel()
	rig := newDenialRig(t)
	for range 3 {
		rig.deny("198.18.0.1", "no bearer token", 401)
	}
	rig.clock.Advance(time.Minute)
	// The goroutine closes the minute on its own wake-up; sync is one.
	rig.sync()
	if n, evs := total(t, rig.events()), rig.events(); n != 3 || len(evs) != 2 {
		t.Fatalf("%d events standing for %d refusals, want 2 standing for 3: %+v", len(evs), n, evs)
	}
}

func TestDenials_StopAppendsTheOpenMinute(t *testing.T) {
	t.Parallel()
	rig := newDenialRig(t)
	for i := range 50 {
		rig.deny(fmt.Sprintf("198.18.0.%d", i%5), "no bearer token", 401)
	}
	if err := rig.d.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := rig.events()
	if n := total(t, evs); n != 50 || len(evs) != 10 {
		t.Fatalf("after stop: %d events standing for %d refusals, want 10 standing for 50", len(evs), n)
	}
}

func TestDenials_KeysBeyondTheBoundShareOneOverflowCount(t *testing.T) {
	t.Parallel()
	rig := newDenialRig(t)
	const sources = maxDenialWindows + 300
	for i := range sources {
		rig.deny(fmt.Sprintf("198.18.%d.%d", i/256, i%256), "no bearer token", 401)
	}
	rig.d.mu.Lock()
	open := len(rig.d.windows)
	rig.d.mu.Unlock()
	if open != maxDenialWindows+1 {
		t.Fatalf("%d windows open, want the bound %d and one overflow window", open, maxDenialWindows)
	}
	if err := rig.d.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := rig.events()
	if n := total(t, evs); n != sources || len(evs) != maxDenialWindows+1 {
		t.Fatalf("%d events standing for %d refusals, want %d standing for %d", len(evs), n, maxDenialWindows+1, sources)
	}
	last := evs[len(evs)-1]
	if last.Source.IP != overflowSource || last.Source.UserAgent != "" || aggregateOf(t, last).Count != 300 {
		t.Fatalf("overflow aggregate %+v, want 300 refusals of source %q", last, overflowSource)
	}
}

func TestAsError_AFullStoreIs507AndAnUnwritableOne503BothWithRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
	}{
		{fmt.Errorf("store: append audit event: %w", store.ErrFull), 507},
		{fmt.Errorf("store: commit: %w", store.ErrUnavailable), 503},
	} {
		e, known := asError(tc.err)
		if !known || httpStatus(e) != tc.status || e.RetryAfter <= 0 {
			t.Errorf("%v: status %d (known %v), Retry-After %v; want %d with Retry-After", tc.err, httpStatus(e), known, e.RetryAfter, tc.status)
		}
		if strings.Contains(e.Detail, "store:") {
			t.Errorf("%v: the detail leaks the store's text: %q", tc.err, e.Detail)
		}
	}
}
