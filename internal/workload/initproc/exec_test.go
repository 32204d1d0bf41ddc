package initproc_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
)

// Exec sessions themselves need a container (the init takes requests
// from outside its pid namespace alone): internal/workload/runc tests
// them. Here, what the init does with its socket.

func TestExecSocket_TheCommandDoesNotInheritItAndAPeerInThePidNamespaceIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	ln.Close() // the init's copy listens on
	if err != nil {
		t.Fatal(err)
	}
	in := startInitWith(t, []*os.File{f}, []string{initspec.FlagExecFD, "3"}, "sleep", "1000")
	f.Close()
	s := in.waitStatus("running", func(s initspec.Status) bool { return s.State == apiv1.WorkloadRunning && s.Pid > 0 })
	// Outside a container, the init passes on what its parent left open
	// (runc passes nothing but stdio and the socket): none may be a socket.
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.Pid, e.Name())); e.Name() == "3" || strings.HasPrefix(target, "socket:") {
			t.Errorf("the command holds descriptor %s, %s", e.Name(), target)
		}
	}
	// This test shares the init's pid namespace, as a process of the
	// container would.
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var reply initspec.ExecReply
	if _, err := initspec.ReadMessage(c, &reply); err != nil || reply.Started || !strings.Contains(reply.Error, "refused") {
		t.Fatalf("a peer in the init's pid namespace: %+v (%v), want refused", reply, err)
	}
}

func TestExecSocket_ADescriptorOfStdioIsAUsageError(t *testing.T) {
	in := startInit(t, []string{initspec.FlagExecFD, "1"})
	in.wait()
	if in.code != 2 || !strings.Contains(in.stderr.String(), "--exec-fd 1") {
		t.Fatalf("exit %d, stderr %q; want 2 naming --exec-fd", in.code, in.stderr.String())
	}
}
