package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Benchmarks of exec sessions into a real container, for `make bench-exec`
// (root, runc; they skip, saying why, elsewhere):
//
//	go test -run '^$' -bench '^BenchmarkExec' -benchtime 1x -count 3 -timeout 30m ./internal/server/
//
// Each figure is beside its baseline from the same run: `runc exec` of the
// same command in the same container by hand, as an operator would run
// it, sample by sample in turn with the API's.

// newExecBenchLab is an exec lab whose sessions' ends nobody waits for:
// they are let go, for the store's announcements not to wait on a full
// channel.
func newExecBenchLab(b *testing.B) *execLab {
	l := newExecLab(b)
	done := make(chan struct{})
	b.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-l.ends:
			case <-done:
				return
			}
		}
	}()
	return l
}

// BenchmarkExecFirstByte times POST /v1/environments/{id}/exec of `echo`
// through the server over loopback (internal/client, as the CLI), from the
// request until the first byte of the command's output has arrived, with 20 other sessions open
// (WebSockets running sleep). The baseline: `runc exec` of `echo`, from
// its start until the first byte of its output.
func BenchmarkExecFirstByte(b *testing.B) {
	l := newExecBenchLab(b)
	for range 20 {
		l.attach(l.token(), l.env.ID, url.Values{"command": {"sleep", "3600"}})
	}
	if n := len(l.containerProcs()); n < 22 {
		b.Fatalf("%d processes in the container, want its init, its workload and 20 sessions' sleep", n)
	}
	echo := []string{"echo", "first"}
	for b.Loop() {
		const samples = 100
		api, byHand := make([]time.Duration, samples), make([]time.Duration, samples)
		for i := range samples {
			// Both ways, each first in turn.
			if i%2 == 0 {
				api[i], _, _ = l.timedExec(echo)
				byHand[i], _ = l.timedRuncExec(echo, nil)
			} else {
				byHand[i], _ = l.timedRuncExec(echo, nil)
				api[i], _, _ = l.timedExec(echo)
			}
		}
		reportQuantiles(b, api, "api-first-byte", 0.50, 0.99)
		reportQuantiles(b, byHand, "runc-exec-first-byte", 0.50, 0.99)
		b.ReportMetric(ms(median(api))/ms(median(byHand)), "p50-ratio")
	}
}

// BenchmarkExecThroughput times one session's stdout: POST .../exec of
// `cat` of a 256 MiB file in the container (in the page cache), until its
// exit has arrived, the NDJSON answer decoded by internal/client as the
// CLI does. The baseline: `runc exec` of the same `cat` into /dev/null.
func BenchmarkExecThroughput(b *testing.B) {
	const size = 256 << 20
	l := newExecBenchLab(b)
	if r := l.run("sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > /tmp/big", size)); r.exit.ExitCode != 0 {
		b.Fatalf("making the file: %+v", r)
	}
	cat := []string{"cat", "/tmp/big"}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	l.timedRuncExec(cat, null) // the first read fills the page cache
	for b.Loop() {
		const samples = 5
		api, byHand := make([]float64, samples), make([]float64, samples)
		for i := range samples {
			_, took, n := l.timedExec(cat)
			if n != size {
				b.Fatalf("%d bytes of output, want %d", n, size)
			}
			api[i] = mbps(size, took)
			_, took = l.timedRuncExec(cat, null)
			byHand[i] = mbps(size, took)
		}
		b.ReportMetric(median(api), "api-MB/s")
		b.ReportMetric(median(byHand), "runc-exec-MB/s")
		b.ReportMetric(median(api)/median(byHand), "ratio")
	}
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

// timedExec runs command by POST .../exec as the admin, through
// internal/client as the CLI does (the NDJSON answer decoded line by
// line); it returns how long the first byte of output took to arrive
// after the request began (the whole answer when the command wrote
// nothing), how long the whole answer took, and the bytes of stdout.
func (l *execLab) timedExec(command []string) (firstByte, total time.Duration, n int64) {
	l.tb.Helper()
	out := &timingWriter{start: time.Now()}
	exit, err := l.c.Exec(l.ctx, l.env.ID, apiv1.ExecRequest{Command: command}, out, nil)
	total = time.Since(out.start)
	if err != nil || exit.ExitCode != 0 {
		l.tb.Fatalf("POST exec %q: %+v %v", command, exit, err)
	}
	if out.first == 0 {
		out.first = total
	}
	return out.first, total, out.n
}

// timingWriter notes when its first byte came, and counts them.
type timingWriter struct {
	start time.Time
	first time.Duration
	n     int64
}

func (w *timingWriter) Write(p []byte) (int, error) {
	if w.n == 0 && len(p) > 0 {
		w.first = time.Since(w.start)
	}
	w.n += int64(len(p))
	return len(p), nil
}

// timedRuncExec runs command in the lab's container with `runc exec` by
// hand; with stdout nil, it reads the output through a pipe and returns
// how long its first byte took; else it writes it to stdout and returns
// how long the command took to its exit.
func (l *execLab) timedRuncExec(command []string, stdout *os.File) (firstByte, total time.Duration) {
	l.tb.Helper()
	cmd := exec.Command("runc", append([]string{"--root", stateRoot(l.cfg), "exec", l.env.Enforcement.Namespace}, command...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var out io.ReadCloser
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		var err error
		if out, err = cmd.StdoutPipe(); err != nil {
			l.tb.Fatal(err)
		}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		l.tb.Fatal(err)
	}
	if out != nil {
		if _, err := out.Read(make([]byte, 1)); err != nil {
			l.tb.Fatalf("runc exec %q: no output: %v", command, err)
		}
		firstByte = time.Since(start)
		_, _ = io.Copy(io.Discard, out)
	}
	if err := cmd.Wait(); err != nil {
		l.tb.Fatalf("runc exec %q: %v: %s", command, err, stderr.Bytes())
	}
	return firstByte, time.Since(start)
}
