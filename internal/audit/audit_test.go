package audit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

func sampleEvent() apiv1.AuditEvent {
	return apiv1.AuditEvent{
		ID: "aud_1", Seq: 7, Time: time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC),
		RequestID: "req_1", Actor: apiv1.Actor{TokenID: "tok_1", Name: "admin"},
		Source:    apiv1.Source{IP: "127.0.0.1", UserAgent: "curl/8"},
		ProjectID: "prj_1", Action: "environment.create", Resource: apiv1.ResourceRef{Type: "environment", ID: "env_1"},
		Outcome: apiv1.OutcomeSuccess, StatusCode: 202, Reason: "r",
		Changes:  &apiv1.Changes{Before: nil, After: map[string]any{"name": "web", "labels": map[string]string{"a": "<b>"}}},
		PrevHash: strings.Repeat("ab", 32),
	}
}

// The encoding is a stored format: this value must never change, or every
// existing chain would stop verifying. It was checked against an
// independent implementation of the documented encoding (Python hashlib).
func TestHash_EncodingIsFrozen(t *testing.T) {
	const want = "246b4b8a12dffba8ca039b46e7f1a3ee87c9bab6dc9267987cbc0edf0f264d95"
	if got := audit.Hash(sampleEvent()); got != want {
		t.Fatalf("Hash(sample) = %s, want %s: the v1 encoding changed", got, want)
	}
}

func TestHash_CoversEveryFieldButHash(t *testing.T) {
	base := audit.Hash(sampleEvent())
	for name, mutate := range map[string]func(*apiv1.AuditEvent){
		"id":                func(e *apiv1.AuditEvent) { e.ID += "x" },
		"seq":               func(e *apiv1.AuditEvent) { e.Seq++ },
		"time":              func(e *apiv1.AuditEvent) { e.Time = e.Time.Add(time.Nanosecond) },
		"request_id":        func(e *apiv1.AuditEvent) { e.RequestID += "x" },
		"actor.token_id":    func(e *apiv1.AuditEvent) { e.Actor.TokenID += "x" },
		"actor.name":        func(e *apiv1.AuditEvent) { e.Actor.Name += "x" },
		"source.ip":         func(e *apiv1.AuditEvent) { e.Source.IP += "x" },
		"source.user_agent": func(e *apiv1.AuditEvent) { e.Source.UserAgent += "x" },
		"project_id":        func(e *apiv1.AuditEvent) { e.ProjectID += "x" },
		"action":            func(e *apiv1.AuditEvent) { e.Action += "x" },
		"resource.type":     func(e *apiv1.AuditEvent) { e.Resource.Type += "x" },
		"resource.id":       func(e *apiv1.AuditEvent) { e.Resource.ID += "x" },
		"outcome":           func(e *apiv1.AuditEvent) { e.Outcome += "x" },
		"status_code":       func(e *apiv1.AuditEvent) { e.StatusCode++ },
		"reason":            func(e *apiv1.AuditEvent) { e.Reason += "x" },
		"changes.after":     func(e *apiv1.AuditEvent) { e.Changes.After = map[string]any{"name": "web2"} },
		"changes.before":    func(e *apiv1.AuditEvent) { e.Changes.Before = "x" },
		"changes absent":    func(e *apiv1.AuditEvent) { e.Changes = nil },
		"prev_hash":         func(e *apiv1.AuditEvent) { e.PrevHash = audit.GenesisHash },
		// Moving bytes between adjacent fields must not collide.
		"field boundary": func(e *apiv1.AuditEvent) { e.Actor.TokenID, e.Actor.Name = "tok_1a", "dmin" },
	} {
		ev := sampleEvent()
		mutate(&ev)
		if audit.Hash(ev) == base {
			t.Errorf("changing %s does not change the hash", name)
		}
	}
	ev := sampleEvent()
	ev.Hash = "anything"
	if audit.Hash(ev) != base {
		t.Error("the Hash field itself changes the hash")
	}
}

func TestHash_SameAfterStorageRoundTrip(t *testing.T) {
	type env struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
		Big    int64             `json:"big"`
	}
	ev := sampleEvent()
	ev.Time = time.Date(2030, 5, 6, 9, 8, 9, 123456789, time.FixedZone("X", 2*3600))
	ev.Changes = &apiv1.Changes{Before: env{Name: "web", Labels: map[string]string{"z": "1", "a": "&"}, Big: 1<<62 + 1}}
	want := audit.Hash(ev)

	norm, changes, err := audit.Seal(ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if norm.Hash != want || audit.Hash(norm) != want || norm.Time.Location() != time.UTC {
		t.Fatalf("Seal changed the hash or kept the zone: %v", norm.Time)
	}
	const wantChanges = `{"after":null,"before":{"big":4611686018427387905,"labels":{"a":"&","z":"1"},"name":"web"}}`
	if string(changes) != wantChanges {
		t.Fatalf("canonical changes = %s, want %s", changes, wantChanges)
	}
	// Through JSON, as the sink and the API send it, with numbers kept exact.
	b, err := json.Marshal(norm)
	if err != nil {
		t.Fatal(err)
	}
	var back apiv1.AuditEvent
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if got := audit.Hash(back); got != want {
		t.Fatalf("hash after a JSON round trip = %s, want %s", got, want)
	}
}

func TestSeal_RejectsChangesThatAreNotJSON(t *testing.T) {
	ev := sampleEvent()
	ev.Changes = &apiv1.Changes{After: make(chan int)}
	if _, _, err := audit.Seal(ev, nil); err == nil {
		t.Fatal("Seal accepted changes that cannot be encoded")
	}
	if audit.Hash(ev) != "" {
		t.Fatal("Hash of unencodable changes is not empty")
	}
}

// chain builds n linked events.
func chain(n int) []apiv1.AuditEvent {
	var evs []apiv1.AuditEvent
	prev := audit.GenesisHash
	for i := 1; i <= n; i++ {
		ev := sampleEvent()
		ev.ID, ev.Seq, ev.PrevHash = fmt.Sprintf("aud_%d", i), int64(i), prev
		ev.Hash = audit.Hash(ev)
		prev = ev.Hash
		evs = append(evs, ev)
	}
	return evs
}

// pager serves events in pages of size, as a store would.
func pager(evs []apiv1.AuditEvent, size int) audit.Pager {
	return func(_ context.Context, after int64) ([]apiv1.AuditEvent, error) {
		var page []apiv1.AuditEvent
		for i := range evs {
			// Page by position, so that out-of-order seqs still arrive.
			if (i == 0 && after == 0) || (i > 0 && evs[i-1].Seq == after) {
				page = evs[i:min(i+size, len(evs))]
				break
			}
		}
		return page, nil
	}
}

func TestVerify_IntactChainAcrossPages(t *testing.T) {
	evs := chain(10)
	res, err := audit.Verify(context.Background(), pager(evs, 3))
	if err != nil || !res.OK() || res.Events != 10 || res.LastSeq != 10 || res.LastHash != evs[9].Hash {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	res, err = audit.Verify(context.Background(), pager(nil, 3))
	if err != nil || !res.OK() || res.Events != 0 || res.LastHash != audit.GenesisHash {
		t.Fatalf("Verify(empty) = %+v, %v", res, err)
	}
}

func TestVerify_NamesFirstBrokenLink(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  func([]apiv1.AuditEvent) []apiv1.AuditEvent
		seq     int64
		id      string
		because string
	}{
		{"altered", func(e []apiv1.AuditEvent) []apiv1.AuditEvent { e[4].Action = "x"; return e }, 5, "aud_5", "hash mismatch"},
		{"removed", func(e []apiv1.AuditEvent) []apiv1.AuditEvent { return append(e[:3], e[4:]...) }, 5, "aud_5", "seq gap"},
		{"first removed", func(e []apiv1.AuditEvent) []apiv1.AuditEvent { return e[1:] }, 2, "aud_2", "seq gap"},
		{"reordered", func(e []apiv1.AuditEvent) []apiv1.AuditEvent { e[2], e[3] = e[3], e[2]; return e }, 4, "aud_4", "expected seq 3, found 4"},
		{"duplicated", func(e []apiv1.AuditEvent) []apiv1.AuditEvent { return append(e[:4], e[3:]...) }, 4, "aud_4", "seq out of order"},
		{"renumbered after removal", func(e []apiv1.AuditEvent) []apiv1.AuditEvent {
			e = append(e[:3], e[4:]...)
			for i := 3; i < len(e); i++ {
				e[i].Seq--
			}
			return e
		}, 4, "aud_5", "prev_hash"},
		{"inserted", func(e []apiv1.AuditEvent) []apiv1.AuditEvent {
			// A forger who links the new event correctly still breaks the
			// link after it.
			forged := e[2]
			forged.ID, forged.Action, forged.Seq, forged.PrevHash = "aud_forged", "forged", 4, e[2].Hash
			forged.Hash = audit.Hash(forged)
			out := append(append(append([]apiv1.AuditEvent{}, e[:3]...), forged), e[3:]...)
			for i := 4; i < len(out); i++ {
				out[i].Seq = int64(i + 1)
			}
			return out
		}, 5, "aud_4", "prev_hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := tc.tamper(chain(8))
			res, err := audit.Verify(context.Background(), pager(evs, 2))
			if err != nil {
				t.Fatal(err)
			}
			if res.OK() || res.Broken.Seq != tc.seq || res.Broken.ID != tc.id || !strings.Contains(res.Broken.Reason, tc.because) {
				t.Fatalf("Verify broken = %v, want seq %d id %s because %q", res.Broken, tc.seq, tc.id, tc.because)
			}
		})
	}
}

func TestVerify_ReportsReadErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := audit.Verify(context.Background(), func(context.Context, int64) ([]apiv1.AuditEvent, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Verify error = %v, want %v", err, boom)
	}
}

func TestSink_ConcurrentWritesAreWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenSink(path)
	if err != nil {
		t.Fatal(err)
	}
	evs := chain(200)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(evs); i += 8 {
				if err := sink.Write(evs[i]); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sink file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[int64]apiv1.AuditEvent{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev apiv1.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		seen[ev.Seq] = ev
	}
	if len(seen) != len(evs) {
		t.Fatalf("%d distinct events in the sink, want %d", len(seen), len(evs))
	}
	for _, want := range evs {
		got := seen[want.Seq]
		if got.Hash != want.Hash || audit.Hash(got) != want.Hash {
			t.Fatalf("event %d from the sink does not hash to %s", want.Seq, want.Hash)
		}
	}

	// Reopening appends rather than truncating.
	sink, err = audit.OpenSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(sink.Write(evs[0]), sink.Close()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != len(evs)+1 {
		t.Fatalf("%d lines after reopening, want %d", n, len(evs)+1)
	}
	if d := cmp.Diff(seen[1].ID, evs[0].ID); d != "" {
		t.Fatal(d)
	}
}
