package runc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// childEnv carries what TestHelperRuntimeChild is to run, as JSON.
const childEnv = "RUNC_TEST_CHILD"

type childJob struct {
	Opts Options
	Spec workload.Spec
}

// TestHelperRuntimeChild is isolationd for TestRuntime_ContainersSurviveKill9:
// a process of its own that makes a container, says its pid, and waits
// to be killed.
func TestHelperRuntimeChild(t *testing.T) {
	job := os.Getenv(childEnv)
	if job == "" {
		t.Skip("run by TestRuntime_ContainersSurviveKill9AndAreAdoptedOrphansRemoved")
	}
	var j childJob
	if err := json.Unmarshal([]byte(job), &j); err != nil {
		t.Fatal(err)
	}
	j.Opts.Logger = slog.New(slog.DiscardHandler)
	rt, err := New(j.Opts)
	if err != nil {
		t.Fatal(err)
	}
	a, err := rt.Ensure(context.Background(), j.Spec)
	if err != nil {
		t.Fatal(err)
	}
	// A session open when it dies: none outlives the process that audits it.
	x, err := rt.Exec(context.Background(), j.Spec.EnvID, workload.ExecSpec{Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("exec %d\n", x.(*execSession).pid)
	fmt.Printf("pid %d\n", a.Status.Pid)
	select {}
}

func TestRuntime_ContainersSurviveKill9AndAreAdoptedOrphansRemoved(t *testing.T) {
	l := newLab(t)
	kept := l.spec("kept", sh("sleep 1000"))
	orphan := l.spec("orphan", sh("sleep 1000"))
	orphanPid := l.ensure(orphan).Status.Pid

	job, err := json.Marshal(childJob{Opts: l.opts, Spec: kept})
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestHelperRuntimeChild$", "-test.v")
	child.Env = append(os.Environ(), childEnv+"="+string(job))
	child.Stderr = os.Stderr
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	pid, execPid := 0, 0
	sc := bufio.NewScanner(stdout)
	for pid == 0 && sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "pid "); ok {
			pid, _ = strconv.Atoi(rest)
		}
		if rest, ok := strings.CutPrefix(sc.Text(), "exec "); ok {
			execPid, _ = strconv.Atoi(rest)
		}
	}
	if pid == 0 {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatalf("the child made no container: %v", sc.Err())
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Wait returns once the child's stdout reaches its end: no process of
	// the container holds the pipe of the process that made it.
	waited := make(chan error, 1)
	go func() { waited <- child.Wait() }()
	select {
	case err := <-waited:
		t.Logf("the child: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the killed child's stdout is still open: a container holds it")
	}
	if !alive(pid) {
		t.Fatalf("the container's init %d died with the process that made it", pid)
	}
	// Its exec session did: the init hung it up when the connection ended.
	for deadline := time.Now().Add(execGrace + 10*time.Second); execPid == 0 || alive(execPid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the exec'd command %d outlived the process that started it", execPid)
		}
	}

	// isolationd starts again, with the kept environment and not the other.
	l.rt.Close()
	l.start()
	if err := l.rt.Sync(context.Background(), map[string]bool{kept.EnvID: true}); err != nil {
		t.Fatal(err)
	}
	st := l.status(kept.EnvID)
	if st.State != apiv1.WorkloadRunning || st.Pid != pid {
		t.Fatalf("the kept container after Sync: %+v, want running with pid %d", st, pid)
	}
	if a := l.ensure(kept); a.Restarted || a.Status.Pid != pid {
		t.Fatalf("ensure after Sync restarted the adopted container: %+v", a)
	}
	// The new runtime finds the container's exec socket where it was made.
	if out, _, st := l.run(kept.EnvID, workload.ExecSpec{Command: command("echo again")}); out != "again\n" || st.Code != 0 {
		t.Fatalf("exec into the adopted container: %q %+v", out, st)
	}
	if _, err := l.rt.Status(context.Background(), orphan.EnvID); !errors.Is(err, workload.ErrUnknown) {
		t.Fatalf("the orphan after Sync: %v, want ErrUnknown", err)
	}
	if alive(orphanPid) {
		t.Fatalf("the orphan's init %d still runs", orphanPid)
	}
	if _, err := os.Stat(l.rt.paths(l.rt.id(orphan.EnvID)).vol.File); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the orphan's disk is left: %v", err)
	}
}

// alive reports whether process pid exists and has not exited (a zombie
// has, and waits for the host's init to reap it).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}
