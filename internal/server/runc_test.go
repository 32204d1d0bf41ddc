package server_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
)

// runcLab is a lab on the netns driver and the runc runtime with the
// busybox image imported as "busybox:test".
func runcLab(t testing.TB) *apiLab {
	t.Helper()
	needRunc(t)
	l := startLab(t, labConfig(t, "netns"))
	l.importImage("busybox:test", imagetest.Busybox(t, imagetest.Options{Cmd: []string{"sh"}}))
	return l
}

// needRunc skips tb where containers cannot run: no root or network
// namespaces, no runc, no e2fsprogs for the disks, no busybox for the image.
func needRunc(tb testing.TB) {
	tb.Helper()
	needNamespaces(tb)
	for _, bin := range []string{"runc", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("containers need %s (make runtime-deps installs e2fsprogs and builds runc into bin/): %v", bin, err)
		}
	}
	imagetest.SkipWithoutBusybox(tb)
}

func (l *apiLab) importImage(name string, img v1.Image) {
	l.tb.Helper()
	path := imagetest.WriteOCITar(l.tb, img)
	f, err := os.Open(path)
	if err != nil {
		l.tb.Fatal(err)
	}
	defer f.Close()
	if _, err := l.c.Images().Import(l.ctx, name, f); err != nil {
		l.tb.Fatalf("import %s: %v", name, err)
	}
}

// createWorkload creates an environment running w and waits until it is
// ready, or failed: it returns either.
func (l *apiLab) createWorkload(name string, w apiv1.WorkloadSpec, res *apiv1.ResourcesSpec) apiv1.Environment {
	l.tb.Helper()
	e, err := l.startWorkload(name, w, res)
	if err != nil {
		l.tb.Fatal(err)
	}
	return e
}

// startWorkload is createWorkload for any goroutine: it returns its error.
func (l *apiLab) startWorkload(name string, w apiv1.WorkloadSpec, res *apiv1.ResourcesSpec) (apiv1.Environment, error) {
	e, err := l.c.Environments().Create(l.ctx, apiv1.EnvironmentCreate{ProjectID: l.project.ID, Name: name, Workload: &w, Resources: res})
	if err != nil {
		return apiv1.Environment{}, err
	}
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	got, err := l.c.Environments().WaitFor(ctx, e.ID, apiv1.StateReady, apiv1.StateFailed)
	if err != nil {
		return apiv1.Environment{}, err
	}
	return *got, nil
}

func TestRuncAPI_AWorkloadRunsReportsItsOutputAndIsRemovedWithItsEnvironment(t *testing.T) {
	l := runcLab(t)
	e := l.createWorkload("hello", apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"sh", "-c", "echo hello from $(hostname); exec sleep 600"}}, nil)
	if e.State != apiv1.StateReady || e.Workload.State != apiv1.WorkloadRunning || e.Workload.ImageDigest == "" || e.Workload.StartedAt == nil ||
		e.Enforcement.Runtime != apiv1.RuntimeRunc {
		t.Fatalf("environment = %s; want ready with its workload running, its digest and start time, on runc", js(e))
	}
	var lines []string
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	err := l.c.Environments().Logs(ctx, e.ID, client.LogOptions{Follow: true}, func(line apiv1.LogLine) error {
		lines = append(lines, line.Line)
		if line.Line == "hello from hello" {
			cancel()
		}
		return nil
	})
	if !strings.Contains(strings.Join(lines, "\n"), "hello from hello") {
		t.Fatalf("logs = %q (%v); want the workload's greeting with its hostname", lines, err)
	}
	l.deleteAll([]apiv1.Environment{e})
	if _, err := l.srv.Runtime().Status(l.ctx, e.ID); err == nil {
		t.Fatal("the runtime still knows the deleted environment's workload")
	}
}

func TestRuncAPI_AProcessPastItsMemoryIsKilledAndReported(t *testing.T) {
	l := runcLab(t)
	mem := int64(64)
	e := l.createWorkload("hog", apiv1.WorkloadSpec{
		Image: "busybox:test", Command: []string{"sh", "-c", "sleep 1; dd if=/dev/zero of=/dev/null bs=200M count=1"},
	}, &apiv1.ResourcesSpec{MemoryMB: &mem})
	got := l.watchUntil(e.ID, "the OOM kill reported", func(e apiv1.Environment) bool {
		return e.Workload != nil && e.Workload.RestartCount >= 1 && e.Workload.ExitCode != nil && *e.Workload.ExitCode == 137
	})
	if !strings.Contains(got.StateMessage, "OOM") || got.State != apiv1.StateReady {
		t.Fatalf("environment = %s; want it ready, with the OOM kill in its state_message", js(got))
	}
}

func TestRuncAPI_AnUnknownImageOrAMissingCommandFailsTheEnvironmentNamingTheField(t *testing.T) {
	l := runcLab(t)
	for _, c := range []struct {
		name  string
		w     apiv1.WorkloadSpec
		field string
	}{
		{"noimage", apiv1.WorkloadSpec{Image: "nosuch/image:1"}, "workload.image"},
		{"nocmd", apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"/bin/nosuch"}}, "workload.command"},
		{"atonce", apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"false"}, Restart: apiv1.RestartNever}, "workload.command"},
	} {
		e := l.createWorkload(c.name, c.w, nil)
		if e.State != apiv1.StateFailed || !strings.HasPrefix(e.StateMessage, c.field+": ") {
			t.Errorf("%s: environment = %s %q; want failed with a message naming %s", c.name, e.State, e.StateMessage, c.field)
		}
		if _, err := l.srv.Runtime().Status(l.ctx, e.ID); err == nil {
			t.Errorf("%s: the runtime kept something of the failed environment", c.name)
		}
	}
}
