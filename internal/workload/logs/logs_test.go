package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func newWriter(t *testing.T, dir string, maxBytes int64) *Writer {
	t.Helper()
	w, err := NewWriter(dir, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// readAll returns what Read emits for q, without following.
func readAll(t *testing.T, dir string, q Query) []apiv1.LogLine {
	t.Helper()
	var got []apiv1.LogLine
	if err := Read(context.Background(), dir, q, func(l apiv1.LogLine) error {
		got = append(got, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func texts(lines []apiv1.LogLine) []string {
	var s []string
	for _, l := range lines {
		s = append(s, l.Line)
	}
	return s
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

func TestWriter_LinesAreNDJSONWithTheirStreamInUTC(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, DefaultMaxBytes)
	out, errs := w.Stream(Stdout), w.Stream(Stderr)
	fmt.Fprint(out, "hello, ")
	fmt.Fprint(out, "world\nsecond")
	fmt.Fprint(errs, "oops\n")
	out.Flush()
	got := readAll(t, dir, Query{Tail: All})
	want := []apiv1.LogLine{{Stream: Stdout, Line: "hello, world"}, {Stream: Stderr, Line: "oops"}, {Stream: Stdout, Line: "second"}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return true })); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	raw, err := os.ReadFile(filepath.Join(dir, Current))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	if !strings.HasPrefix(first, `{"time":"`) || !strings.Contains(first, `Z","stream":"stdout","line":"hello, world"}`) {
		t.Errorf("first line is %s; want an NDJSON LogLine with a UTC time", first)
	}
}

func TestWriter_SplitsLinesLongerThanMaxLine(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, DefaultMaxBytes)
	s := w.Stream(Stdout)
	// A multi-byte character straddles the cut: it goes whole to the second part.
	long := strings.Repeat("a", MaxLine-1) + "é" + strings.Repeat("b", MaxLine+10)
	fmt.Fprint(s, long[:100])
	fmt.Fprint(s, long[100:]+"\n")
	got := texts(readAll(t, dir, Query{Tail: All}))
	if len(got) != 3 || strings.Join(got, "") != long {
		t.Fatalf("got %d lines of lengths %v; want 3 making up the line", len(got), lengths(got))
	}
	for _, l := range got {
		if len(l) > MaxLine {
			t.Errorf("a line of %d bytes; want at most %d", len(l), MaxLine)
		}
	}
	if got[0] != strings.Repeat("a", MaxLine-1) {
		t.Errorf("the first part ends %q; want it cut before the multi-byte character", got[0][len(got[0])-4:])
	}
}

func lengths(s []string) []int {
	var n []int
	for _, l := range s {
		n = append(n, len(l))
	}
	return n
}

func TestWriter_RotationBoundsTheDirectoryToTwiceTheCap(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 8 << 10
	w := newWriter(t, dir, maxBytes)
	s := w.Stream(Stdout)
	line := strings.Repeat("x", 200)
	for i := range 2000 {
		fmt.Fprintf(s, "%05d %s\n", i, line)
		if n := dirSize(t, dir); n > 2*maxBytes {
			t.Fatalf("after %d lines the directory holds %d bytes; want at most %d", i+1, n, 2*maxBytes)
		}
	}
	got := texts(readAll(t, dir, Query{Tail: All}))
	if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "01999 ") {
		t.Fatalf("the last line kept is not the last written: %d lines", len(got))
	}
	// What is kept is the newest lines, in order, with none missing.
	for i, l := range got {
		if want := fmt.Sprintf("%05d ", 2000-len(got)+i); !strings.HasPrefix(l, want) {
			t.Fatalf("line %d is %.6q; want %q", i, l, want)
		}
	}
}

func TestWriter_ReopeningAppends(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, DefaultMaxBytes)
	fmt.Fprintln(w.Stream(Stdout), "before")
	w.Close()
	w = newWriter(t, dir, DefaultMaxBytes)
	fmt.Fprintln(w.Stream(Stdout), "after")
	if got, want := texts(readAll(t, dir, Query{Tail: All})), []string{"before", "after"}; !cmp.Equal(got, want) {
		t.Errorf("lines %q; want %q", got, want)
	}
}

func TestWriter_ConcurrentStreamsDoNotInterleaveWithinALine(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, 64<<10)
	var wg sync.WaitGroup
	const lines = 500
	for _, stream := range []string{Stdout, Stderr} {
		wg.Go(func() {
			s := w.Stream(stream)
			line := strings.Repeat(stream[3:4], 300) // "o" or "e"
			for range lines {
				// In pieces, as a program writing unbuffered would.
				for i := 0; i < len(line); i += 7 {
					_, _ = s.Write([]byte(line[i:min(i+7, len(line))]))
				}
				_, _ = s.Write([]byte("\n"))
			}
		})
	}
	wg.Wait()
	got := readAll(t, dir, Query{Tail: All})
	if len(got) == 0 {
		t.Fatal("no lines")
	}
	for _, l := range got {
		if want := strings.Repeat(l.Stream[3:4], 300); l.Line != want {
			t.Fatalf("a %s line is %q; want %d of %q", l.Stream, l.Line, 300, l.Stream[3:4])
		}
	}
}

func TestRead_TailAndSince(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, MinMaxBytes)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var now time.Time
	w.now = func() time.Time { return now }
	s := w.Stream(Stdout)
	const n = 100 // enough to rotate: the tail spans previous and current
	for i := range n {
		now = base.Add(time.Duration(i) * time.Second)
		fmt.Fprintf(s, "line %03d %s\n", i, strings.Repeat("-", 40))
	}
	if _, err := os.Stat(filepath.Join(dir, Previous)); err != nil {
		t.Fatalf("no rotation happened: %v", err)
	}
	kept := len(readAll(t, dir, Query{Tail: All}))
	first := n - kept // the oldest line still kept
	want := func(from, to int) []string {
		var s []string
		for i := from; i < to; i++ {
			s = append(s, fmt.Sprintf("line %03d %s", i, strings.Repeat("-", 40)))
		}
		return s
	}
	for _, tc := range []struct {
		name string
		q    Query
		want []string
	}{
		{"all", Query{Tail: All}, want(first, n)},
		{"none", Query{}, nil},
		{"tail 3", Query{Tail: 3}, want(n-3, n)},
		{"tail spanning both files", Query{Tail: kept - 1}, want(first+1, n)},
		{"tail past what is kept", Query{Tail: 10 * n}, want(first, n)},
		{"since", Query{Tail: All, Since: base.Add(95 * time.Second)}, want(95, n)},
		{"since, then tail", Query{Tail: 2, Since: base.Add(90 * time.Second)}, want(n-2, n)},
		{"since after the last", Query{Tail: All, Since: base.Add(time.Hour)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := texts(readAll(t, dir, tc.q)); !cmp.Equal(got, tc.want) {
				t.Errorf("lines (-want +got):\n%s", cmp.Diff(tc.want, got))
			}
		})
	}
}

func TestRead_MissingDirectoryHoldsNoLines(t *testing.T) {
	if got := readAll(t, filepath.Join(t.TempDir(), "nothing"), Query{Tail: All}); len(got) != 0 {
		t.Errorf("lines %v; want none", got)
	}
}

// follow runs Read with Follow in the background and returns the lines it
// emits, one at a time, on an unbuffered channel: a test that does not
// receive holds the reader inside emit.
func follow(t *testing.T, dir string, q Query) <-chan apiv1.LogLine {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan apiv1.LogLine)
	done := make(chan error, 1)
	q.Follow = true
	go func() {
		done <- Read(ctx, dir, q, func(l apiv1.LogLine) error {
			select {
			case ch <- l:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			t.Errorf("Read: %v", err)
		}
	})
	return ch
}

func next(t *testing.T, ch <-chan apiv1.LogLine) string {
	t.Helper()
	select {
	case l := <-ch:
		return l.Line
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10s")
		return ""
	}
}

func TestRead_FollowSeesNewLinesAcrossRotations(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, MinMaxBytes)
	s := w.Stream(Stdout)
	fmt.Fprintln(s, "old 1")
	fmt.Fprintln(s, "old 2")
	ch := follow(t, dir, Query{Tail: 1})
	if got := next(t, ch); got != "old 2" {
		t.Fatalf("first line %q; want the tail, old 2", got)
	}
	// Batches of about a quarter of the cap, each received before the
	// next is written: the reader is at the end of current at every
	// rotation, and sees every line once.
	pad := strings.Repeat(".", 60)
	for i := 0; i < 400; {
		batch := i + 10
		for ; i < batch; i++ {
			fmt.Fprintf(s, "new %d %s\n", i, pad)
		}
		for j := batch - 10; j < batch; j++ {
			if got, want := next(t, ch), fmt.Sprintf("new %d %s", j, pad); got != want {
				t.Fatalf("line %.12q; want %.12q", got, want)
			}
		}
	}
}

func TestRead_FollowingAReaderTwoRotationsBehindLosesNothing(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, MinMaxBytes)
	s := w.Stream(Stdout)
	fmt.Fprintln(s, "ready")
	ch := follow(t, dir, Query{Tail: All})
	if got := next(t, ch); got != "ready" {
		t.Fatalf("first line %q; want ready", got)
	}
	pad := strings.Repeat(".", 60)
	fmt.Fprintf(s, "line 0 %s\n", pad)
	// The reader holds the first file open, and waits in emit with
	// line 0 or will: write until current has been replaced twice, the
	// first file gone.
	ino := func() os.FileInfo {
		info, err := os.Stat(filepath.Join(dir, Current))
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	rotations, last, n := 0, ino(), 1
	for ; rotations < 2; n++ {
		fmt.Fprintf(s, "line %d %s\n", n, pad)
		if now := ino(); !os.SameFile(now, last) {
			rotations, last = rotations+1, now
		}
	}
	fmt.Fprintf(s, "line %d %s\n", n, pad)
	for i := 0; i <= n; i++ {
		if got, want := next(t, ch), fmt.Sprintf("line %d %s", i, pad); got != want {
			t.Fatalf("line %.10q; want %.10q", got, want)
		}
	}
}

func TestRead_FollowWaitsForTheDirectoryAndEndsWhenItIsRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	done := make(chan error, 1)
	lines := make(chan string, 10)
	go func() {
		done <- Read(context.Background(), dir, Query{Tail: All, Follow: true}, func(l apiv1.LogLine) error {
			lines <- l.Line
			return nil
		})
	}()
	w := newWriter(t, dir, DefaultMaxBytes)
	fmt.Fprintln(w.Stream(Stdout), "hello")
	select {
	case got := <-lines:
		if got != "hello" {
			t.Fatalf("line %q; want hello", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10s")
	}
	w.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still follows a removed directory after 10s")
	}
}
