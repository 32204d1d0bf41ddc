package server_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
)

// Benchmarks of real workloads under runc, for `make bench-runtime` (root,
// runc; they skip, saying why, elsewhere):
//
//	ISOLATION_BENCH_BIN=bin go test -run '^$' -bench '^BenchmarkRunc' -benchtime 1x -count 3 -timeout 60m ./internal/server/
//
// One iteration measures a fixed amount of work and reports it with
// b.ReportMetric; ns/op also counts the untimed set-up and clean-up.

// idleImage is the typical developer environment's image: busybox with no
// entrypoint nor cmd, so that a workload without a command runs the init
// alone, kept alive for exec.
const idleImage = "idle:bench"

// idleWorkload and commandWorkload are the two kinds of workload: the init
// alone, ready as soon as it started, and a command, which the runtime
// watches for its start window (1 s) before the environment is ready.
var (
	idleWorkload    = apiv1.WorkloadSpec{Image: idleImage}
	commandWorkload = apiv1.WorkloadSpec{Image: idleImage, Command: []string{"sleep", "3600"}}
)

// BenchmarkRuncCreateToReady times, one environment after another, POST
// /v1/environments with a workload until the environment is ready (a long
// poll, wait_for=ready), with its image already unpacked and 50
// environments running idle workloads. Each new environment is deleted
// (untimed) before the next, so that 50 run throughout.
//
// The baseline, interleaved sample by sample: the bundle the runtime made
// for that environment (its config.json and its mounted root), run again
// by hand under a container id of its own with `runc run -d`, timed until
// runc has started it.
func BenchmarkRuncCreateToReady(b *testing.B) {
	l := runcLab(b)
	l.importImage(idleImage, imagetest.Busybox(b, imagetest.Options{}))
	l.startWorkloads(50, idleWorkload)
	byHand := newRuncByHand(b, l.cfg)
	for _, kind := range []struct {
		name    string
		w       apiv1.WorkloadSpec
		window  time.Duration // the runtime's start window, before ready
		samples int           // fewer of the slower kind
	}{{"workload=idle", idleWorkload, 0, 100}, {"workload=command", commandWorkload, time.Second, 40}} {
		b.Run(kind.name, func(b *testing.B) {
			for b.Loop() {
				samples := kind.samples
				ready, runcRun, createStart := make([]time.Duration, samples), make([]time.Duration, samples), make([]time.Duration, samples)
				var stages [len(stageNames)][]time.Duration
				stall := startIOStall(b)
				for i := range samples {
					s := l.timeCreate(fmt.Sprintf("new-%d", i), kind.w)
					ready[i] = s.ready
					for j, d := range s.stages {
						if d > 0 {
							stages[j] = append(stages[j], d)
						}
					}
					b.StopTimer()
					if s.ready > 500*time.Millisecond+kind.window {
						b.Logf("%s took %s: %s", s.env.Name, s.ready.Round(time.Millisecond), strings.Join(s.seen, ", "))
					}
					// Both ways, each first in turn.
					if i%2 == 0 {
						runcRun[i], createStart[i] = byHand.run(s.env, false), byHand.run(s.env, true)
					} else {
						createStart[i], runcRun[i] = byHand.run(s.env, true), byHand.run(s.env, false)
					}
					l.deleteAll([]apiv1.Environment{s.env})
					b.StartTimer()
				}
				stall.report()
				reportQuantiles(b, ready, "ready", 0.50, 0.99)
				reportQuantiles(b, runcRun, "runc-run", 0.50, 0.99)
				reportQuantiles(b, createStart, "runc-create-start", 0.50, 0.99)
				for j, name := range stageNames {
					if len(stages[j]) > 0 {
						b.ReportMetric(ms(median(stages[j])), "stage-"+name+"-p50-ms")
					}
				}
			}
		})
	}
}

// stageNames are the steps of bringing an environment up, as its watch
// shows them: the POST answered, then (in state_message) its namespace
// made and its rules applied, its image resolved, and its container
// started by the runtime.
var stageNames = [...]string{"api", "network", "image", "runtime"}

// createTiming is one environment's POST to ready.
type createTiming struct {
	env   apiv1.Environment
	ready time.Duration // POST until the long poll (wait_for=ready) answers
	// stages are the durations of stageNames, 0 for a step the watch did
	// not see (two commits in a row can reach it as one).
	stages [len(stageNames)]time.Duration
	seen   []string // what the watch saw, and when, for slow samples
}

// timeCreate creates an environment running w and times it until ready,
// through wait_for=ready as every client does, while a watch of the
// environment notes when each step began.
func (l *apiLab) timeCreate(name string, w apiv1.WorkloadSpec) createTiming {
	l.tb.Helper()
	var t createTiming
	start := time.Now()
	e, err := l.c.Environments().Create(l.ctx, apiv1.EnvironmentCreate{ProjectID: l.project.ID, Name: name, Workload: &w})
	if err != nil {
		l.tb.Fatal(err)
	}
	posted := time.Since(start)
	type result struct {
		e   *apiv1.Environment
		err error
		at  time.Duration
	}
	waited := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
		defer cancel()
		got, err := l.c.Environments().WaitFor(ctx, e.ID, apiv1.StateReady, apiv1.StateFailed)
		waited <- result{got, err, time.Since(start)}
	}()
	marks := [len(stageNames)]time.Duration{posted}
	l.watchUntil(e.ID, "ready", func(e apiv1.Environment) bool {
		at := time.Since(start)
		t.seen = append(t.seen, fmt.Sprintf("%s %q at %s", e.State, e.StateMessage, at.Round(time.Millisecond)))
		switch {
		case strings.HasPrefix(e.StateMessage, "resolving image") && marks[1] == 0:
			marks[1] = at
		case e.StateMessage == "starting the workload" && marks[2] == 0:
			marks[2] = at
		case e.State == apiv1.StateReady:
			marks[3] = at
		}
		return e.State == apiv1.StateReady || e.State == apiv1.StateFailed
	})
	r := <-waited
	if r.err != nil {
		l.tb.Fatal(r.err)
	}
	if r.e.State != apiv1.StateReady {
		l.tb.Fatalf("environment %s: %s %q; want ready", r.e.Name, r.e.State, r.e.StateMessage)
	}
	t.env, t.ready = *r.e, r.at
	// A step runs from the mark before it: unknown when the watch missed either.
	t.stages[0] = marks[0]
	for i := 1; i < len(marks); i++ {
		if marks[i] != 0 && marks[i-1] != 0 {
			t.stages[i] = marks[i] - marks[i-1]
		}
	}
	return t
}

// ioStall measures the share of time some task of the host waited for
// its disk (the kernel's pressure stall information): the machine is
// shared, and a disk busy with others' work stalls every fsync (the
// store's commits, mkfs.ext4's), which shows in the slowest samples.
type ioStall struct {
	b     *testing.B
	start time.Time
	total float64 // µs stalled since boot
	ok    bool
}

func startIOStall(b *testing.B) *ioStall {
	total, ok := ioStalled()
	return &ioStall{b: b, start: time.Now(), total: total, ok: ok}
}

// report reports the stalled share since start, in percent: nothing
// where the kernel keeps no pressure information.
func (s *ioStall) report() {
	if total, ok := ioStalled(); ok && s.ok {
		s.b.ReportMetric(100*(total-s.total)/float64(time.Since(s.start).Microseconds()), "host-io-stall-%")
	}
}

// ioStalled is the total of /proc/pressure/io's "some" line: how long, in
// µs, at least one task waited for I/O.
func ioStalled() (float64, bool) {
	b, err := os.ReadFile("/proc/pressure/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		_, total, ok := strings.Cut(line, "total=")
		if v, err := strconv.ParseFloat(strings.TrimSpace(total), 64); ok && err == nil {
			return v, true
		}
	}
	return 0, false
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median[T cmp.Ordered](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// startWorkloads creates n environments running w, eight at a time, and
// returns them once ready.
func (l *apiLab) startWorkloads(n int, w apiv1.WorkloadSpec) []apiv1.Environment {
	l.tb.Helper()
	out := make([]apiv1.Environment, n)
	eightAtATime(l.tb, n, func(i int) (err error) {
		out[i], err = l.startWorkload(fmt.Sprintf("env-%d", i), w, nil)
		if err == nil && out[i].State != apiv1.StateReady {
			err = fmt.Errorf("environment %s: %s %q; want ready", out[i].Name, out[i].State, out[i].StateMessage)
		}
		return err
	})
	return out
}

// runcByHand runs environments' bundles again with the runc CLI, as an
// operator would, under a state root of its own (on the same tmpfs as the
// runtime's), so that the runtime never sees its containers.
type runcByHand struct {
	tb      testing.TB
	dataDir string
	root    string // runc --root
	bundles string
	n       int
}

func newRuncByHand(tb testing.TB, cfg server.Config) *runcByHand {
	h := &runcByHand{
		tb: tb, dataDir: cfg.DataDir,
		root:    filepath.Join("/run/isolationd", cfg.NetnsPrefix, "byhand"),
		bundles: tb.TempDir(),
	}
	tb.Cleanup(func() { os.RemoveAll(h.root) })
	return h
}

// run times the start of e's bundle under a new container id, until runc
// has started it, then deletes the container (untimed): with `runc run
// --detach`, one runc process, or with `runc create` then `runc start`,
// two, as the runtime does through go-runc. The copy of config.json
// differs in three things only: the root is the environment's mounted
// overlay, the cgroup is the new container's own, and the init's
// directory is a fresh one, so that the environment's status and logs
// stay its own.
func (h *runcByHand) run(e apiv1.Environment, createStart bool) time.Duration {
	h.tb.Helper()
	h.n++
	id := fmt.Sprintf("byhand%d", h.n)
	src := filepath.Join(h.dataDir, server.RuntimeDir, "bundles", e.Enforcement.Namespace)
	var spec specs.Spec
	if err := readJSON(filepath.Join(src, "config.json"), &spec); err != nil {
		h.tb.Fatal(err)
	}
	bundle := filepath.Join(h.bundles, id)
	run := filepath.Join(bundle, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		h.tb.Fatal(err)
	}
	// The container's root (mapped, with a user namespace) owns the init's
	// directory, as it owns the environment's.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(h.dataDir, server.RuntimeDir, "volumes", e.Enforcement.Namespace, "run"), &st); err != nil {
		h.tb.Fatal(err)
	}
	if err := os.Chown(run, int(st.Uid), int(st.Gid)); err != nil {
		h.tb.Fatal(err)
	}
	spec.Root.Path = filepath.Join(src, "rootfs")
	spec.Linux.CgroupsPath = path.Join(path.Dir(spec.Linux.CgroupsPath), id)
	for i, m := range spec.Mounts {
		if m.Destination == initspec.Dir {
			spec.Mounts[i].Source = run
		}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		h.tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		h.tb.Fatal(err)
	}
	// Files, not pipes: the detached container keeps its output open.
	out, err := os.Create(filepath.Join(bundle, "output"))
	if err != nil {
		h.tb.Fatal(err)
	}
	defer out.Close()
	steps := [][]string{{"run", "--detach", "--bundle", bundle, id}}
	if createStart {
		steps = [][]string{{"create", "--bundle", bundle, id}, {"start", id}}
	}
	var took time.Duration
	for _, args := range steps {
		cmd := exec.Command("runc", append([]string{"--root", h.root}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		start := time.Now()
		err := cmd.Run()
		took += time.Since(start)
		if err != nil {
			msg, _ := os.ReadFile(out.Name())
			h.tb.Fatalf("runc %s: %v: %s", strings.Join(args, " "), err, msg)
		}
	}
	if msg, err := exec.Command("runc", "--root", h.root, "delete", "--force", id).CombinedOutput(); err != nil {
		h.tb.Fatalf("runc delete %s: %v: %s", id, err, msg)
	}
	if err := os.RemoveAll(bundle); err != nil {
		h.tb.Fatal(err)
	}
	return took
}

func readJSON(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// BenchmarkRuncIsolationdMemory runs isolationd as its own process, as
// `make build` makes it (ISOLATION_BENCH_BIN names bin/), on the netns
// driver and the runc runtime with a prefix of its own, and reads its
// memory after start and the image's import, and again with 100
// environments running idle workloads: what it grows by per environment
// (resident set and proportional set size), beside what the containers
// themselves use, from their memory cgroups.
func BenchmarkRuncIsolationdMemory(b *testing.B) {
	const n = 100
	bin := benchBin(b)
	needRunc(b)
	for b.Loop() {
		m := isolationdMemory(b, bin, n)
		b.ReportMetric(m.rss0/mb, "rss0-MB")
		b.ReportMetric(m.rssN/mb, "rss100-MB")
		b.ReportMetric((m.rssN-m.rss0)/mb/n, "rss-MB/env")
		b.ReportMetric((m.pssN-m.pss0)/mb/n, "pss-MB/env")
		b.ReportMetric(m.containers.usage/mb/n, "ctr-usage-MB/ctr")
		b.ReportMetric(m.containers.anon/mb/n, "ctr-anon-MB/ctr")
	}
}

const mb = 1 << 20

// benchBin is the directory holding isolationd and isolation-init.
func benchBin(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("ISOLATION_BENCH_BIN")
	if dir == "" {
		tb.Skip("ISOLATION_BENCH_BIN is not set: run `make bench-runtime`, which builds isolationd and isolation-init into bin/ and names it")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return abs
}

// memory is what one round measured, in bytes: isolationd's resident and
// proportional set sizes at rest and with the environments running, and
// the containers' cgroups then.
type memory struct {
	rss0, pss0, rssN, pssN float64
	containers             cgroupMemory
}

// isolationdMemory starts isolationd from bin, imports the idle image,
// reads its memory, starts n environments, reads it again, and removes
// everything: the environments through the API, the rest with `isolationd
// cleanup` of its prefix once it stopped.
func isolationdMemory(tb testing.TB, bin string, n int) memory {
	tb.Helper()
	prefix, dataDir := uniquePrefix(), tb.TempDir()
	// The containers' mapped root reaches its root filesystem through the
	// data directory's parents, as in labConfig.
	if err := os.Chmod(filepath.Dir(dataDir), 0o711); err != nil {
		tb.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(tb.TempDir(), "isolationd.log"))
	if err != nil {
		tb.Fatal(err)
	}
	defer logs.Close()
	srv, err := devrun.StartServer(tb.Context(), filepath.Join(bin, devrun.ServerBinary), dataDir, logs, time.Minute,
		"--driver", "netns", "--netns-prefix", prefix, "--address-pool", testPool,
		"--init-binary", filepath.Join(bin, server.InitBinaryName), "--log-level", "warn")
	if err != nil {
		tb.Fatal(err)
	}
	// Deferred, not a cleanup: each round leaves nothing for the next.
	defer func() {
		if err := srv.Stop(time.Minute); err != nil {
			tb.Errorf("stop isolationd: %v", err)
		}
		if out, err := exec.Command(filepath.Join(bin, devrun.ServerBinary), "cleanup", "--data-dir", dataDir, "--netns-prefix", prefix).CombinedOutput(); err != nil {
			tb.Errorf("isolationd cleanup: %v: %s", err, out)
		}
		if tb.Failed() {
			log, _ := os.ReadFile(logs.Name())
			tb.Logf("isolationd's log:\n%s", log)
		}
	}()
	c, err := client.New(client.Config{Endpoint: srv.URL, Token: srv.Token})
	if err != nil {
		tb.Fatal(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 256
	l := &apiLab{tb: tb, ctx: tb.Context(), c: c, http: &http.Client{Transport: transport}}
	p, err := c.Projects().Create(l.ctx, apiv1.ProjectCreate{Name: "memory"})
	if err != nil {
		tb.Fatal(err)
	}
	l.project = *p
	l.importImage(idleImage, imagetest.Busybox(tb, imagetest.Options{}))

	var m memory
	m.rss0, m.pss0 = processMemory(tb, srv.Pid())
	envs := l.startWorkloads(n, idleWorkload)
	m.rssN, m.pssN = processMemory(tb, srv.Pid())
	m.containers = containersMemory(tb, prefix)
	if m.containers.count != n {
		tb.Fatalf("%d memory cgroups under the prefix %s; want one per environment, %d", m.containers.count, prefix, n)
	}
	l.deleteAll(envs)
	return m
}

// processMemory is pid's resident set size (VmRSS) and proportional set
// size (Pss: shared pages divided among their users), in bytes.
func processMemory(tb testing.TB, pid int) (rss, pss float64) {
	tb.Helper()
	rss = procKB(tb, fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	pss = procKB(tb, fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	return rss * 1024, pss * 1024
}

// procKB reads the "key value kB" line of a /proc file.
func procKB(tb testing.TB, file, key string) float64 {
	tb.Helper()
	v, err := keyedValue(file, key)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// keyedValue is the number after key at the start of a line of file: the
// format of /proc's status files and of cgroups' memory.stat.
func keyedValue(file, key string) (float64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseFloat(f[0], 64)
		}
	}
	return 0, fmt.Errorf("%s has no %q line", file, key)
}

// cgroupMemory sums the memory cgroups of a prefix's containers: what they
// are charged for (usage_in_bytes on v1, memory.current on v2: anonymous
// memory, page cache, kernel memory) and their anonymous memory alone.
type cgroupMemory struct {
	count       int
	usage, anon float64
}

func containersMemory(tb testing.TB, prefix string) cgroupMemory {
	tb.Helper()
	// v2 has one hierarchy, v1 one per controller.
	dir, usage, anon := "/sys/fs/cgroup/isolationd/"+prefix, "memory.current", "anon "
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); errors.Is(err, os.ErrNotExist) {
		dir, usage, anon = "/sys/fs/cgroup/memory/isolationd/"+prefix, "memory.usage_in_bytes", "rss "
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var m cgroupMemory
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), usage))
		if err != nil {
			tb.Fatal(err)
		}
		u, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		if err != nil {
			tb.Fatal(err)
		}
		a, err := keyedValue(filepath.Join(dir, e.Name(), "memory.stat"), anon)
		if err != nil {
			tb.Fatal(err)
		}
		m.count++
		m.usage += u
		m.anon += a
	}
	return m
}
