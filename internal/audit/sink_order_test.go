package audit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

// committedChain stands for the store: events are committed in seq order
// under its lock, and read back by seq.
type committedChain struct {
	mu  sync.Mutex
	evs []apiv1.AuditEvent
}

func (c *committedChain) commit() apiv1.AuditEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := audit.GenesisHash
	if n := len(c.evs); n > 0 {
		prev = c.evs[n-1].Hash
	}
	ev := sampleEvent()
	ev.Seq, ev.PrevHash = int64(len(c.evs)+1), prev
	ev, _, _ = audit.Seal(ev, nil)
	c.evs = append(c.evs, ev)
	return ev
}

func (c *committedChain) pager() audit.Pager {
	return func(_ context.Context, after int64) ([]apiv1.AuditEvent, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return append([]apiv1.AuditEvent(nil), c.evs[min(after, int64(len(c.evs))):min(after+3, int64(len(c.evs)))]...), nil
	}
}

// readLines returns the seqs of a JSON-lines file, in file order.
func readSeqs(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seqs []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev apiv1.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if audit.Hash(ev) != ev.Hash {
			t.Fatalf("line of seq %d does not hash to its hash", ev.Seq)
		}
		seqs = append(seqs, ev.Seq)
	}
	return seqs
}

func assertSeqs(t *testing.T, seqs []int64, from, to int64) {
	t.Helper()
	if int64(len(seqs)) != to-from+1 {
		t.Fatalf("%d lines, want seq %d to %d: %v", len(seqs), from, to, seqs)
	}
	for i, s := range seqs {
		if s != from+int64(i) {
			t.Fatalf("line %d is seq %d, want %d (lines out of order or repeated): %v", i+1, s, from+int64(i), seqs)
		}
	}
}

func TestInOrder_ConcurrentCommittersAreWrittenInSeqOrderEachOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenSink(path)
	if err != nil {
		t.Fatal(err)
	}
	var store committedChain
	trail := audit.NewInOrder(sink, store.pager(), 0)
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				ev := store.commit()
				// Between commit and report another committer may report
				// first; one in ten reports never comes at all.
				if (w+i)%10 == 3 {
					continue
				}
				if err := trail.Write(context.Background(), ev); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// The last reports may have been among those that never came.
	if err := trail.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	assertSeqs(t, readSeqs(t, path), 1, writers*each)
}

func TestOpenSink_ResumesAfterItsLastWholeLineAndDropsOneCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var store committedChain
	sink, err := audit.OpenSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := sink.Last(); ok {
		t.Fatal("a new file has a last line")
	}
	trail := audit.NewInOrder(sink, store.pager(), 0)
	for range 5 {
		if err := trail.Write(context.Background(), store.commit()); err != nil {
			t.Fatal(err)
		}
	}
	sink.Close()
	// The machine stopped in the middle of the sixth line, and more events
	// were committed than the sink got.
	sixth := store.commit()
	line, _ := json.Marshal(sixth)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(line[:len(line)/2]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	store.commit()

	sink, err = audit.OpenSink(path)
	if err != nil {
		t.Fatal(err)
	}
	seq, hash, ok := sink.Last()
	if !ok || seq != 5 || hash != store.evs[4].Hash {
		t.Fatalf("Last = %d %s %v, want seq 5 and its hash", seq, hash, ok)
	}
	trail = audit.NewInOrder(sink, store.pager(), seq)
	if err := trail.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink.Close()
	assertSeqs(t, readSeqs(t, path), 1, 7)

	// A file that is not an audit log is left alone.
	other := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(other, []byte("remember the milk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenSink(other); err == nil || !strings.Contains(err.Error(), "not an audit event") {
		t.Fatalf("OpenSink of a file that is not an audit log: %v", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "remember the milk\n" {
		t.Fatalf("OpenSink changed a file that is not an audit log: %q", b)
	}
}

func TestOpenSink_FindsALastLineLongerThanItsReadChunk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, _ := audit.OpenSink(path)
	evs := chain(3)
	evs[2].Reason = strings.Repeat("r", 200<<10)
	for _, ev := range evs {
		if err := sink.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	sink.Close()
	sink, err := audit.OpenSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if seq, hash, ok := sink.Last(); !ok || seq != 3 || hash != evs[2].Hash {
		t.Fatalf("Last = %d %s %v, want seq 3", seq, hash, ok)
	}
}
