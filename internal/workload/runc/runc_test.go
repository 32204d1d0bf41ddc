package runc

import (
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestRuntime_RunsTheCommandAndReportsItRunning(t *testing.T) {
	l := newLab(t)
	spec := l.spec("hello", sh("echo hello from $(hostname); sleep 1000"))
	a := l.ensure(spec)
	if a.Status.State != apiv1.WorkloadRunning || a.Status.Pid == 0 || a.Restarted {
		t.Fatalf("ensure: %+v", a)
	}
	lines := l.waitOutput(spec.EnvID, "hello from", 5*time.Second)
	if !strings.Contains(strings.Join(lines, "\n"), "hello from hello") {
		t.Fatalf("output: %q", lines)
	}
}
