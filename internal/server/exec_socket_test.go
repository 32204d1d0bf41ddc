package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

func TestRuncExec_AContainerAnEarlierIsolationdStartedIs409AskingForARestart(t *testing.T) {
	l := newExecLab(t)
	// What an isolationd before exec sockets left: no socket beside the bundle.
	sock := filepath.Join(l.cfg.DataDir, server.RuntimeDir, "bundles", l.env.Enforcement.Namespace, "exec.sock")
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	r := l.post(l.token(), l.env.ID, apiv1.ExecRequest{Command: []string{"true"}})
	if r.status != http.StatusConflict || !strings.Contains(r.problem.Detail, l.env.ID) || !strings.Contains(r.problem.Detail, "no exec socket: restart the workload") {
		t.Fatalf("exec into a container without an exec socket = %d %+v; want 409 asking for a restart", r.status, r.problem)
	}
}
