package netns

import (
	"os"
	"strconv"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The proxy's dialer gives its thread back, in the namespace it found it
// in, instead of letting Go end it: the kernel sends a child's Pdeathsig
// when the thread that started the child ends, so a thread ended here
// killed a terraform, started by terraform-exec from that thread earlier,
// in another test of the same process ("signal: killed").
func TestNSDialer_CloseGivesTheThreadBackInItsNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace needs root: run the tests as root, as make test does in CI")
	}
	var h netns.NsHandle
	if err := OnLockedThread(func() (err error) {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		h, err = netns.Get()
		return err
	}); err != nil {
		t.Fatalf("make a namespace: %v", err)
	}
	defer h.Close()
	home, err := os.Readlink("/proc/self/task/" + strconv.Itoa(os.Getpid()) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}

	nd, err := newNSDialer(h)
	if err != nil {
		t.Fatal(err)
	}
	task := "/proc/self/task/" + strconv.Itoa(nd.tid) + "/ns/net"
	if in, err := os.Readlink(task); err != nil || in == home {
		t.Fatalf("the dialer's thread %d is in %q (%v), want the namespace it was given, not %q", nd.tid, in, err, home)
	}
	nd.close()
	in, err := os.Readlink(task)
	if err != nil {
		t.Fatalf("the dialer's thread %d ended with it: %v", nd.tid, err)
	}
	if in != home {
		t.Fatalf("the dialer's thread %d went back to the pool in %q, want %q", nd.tid, in, home)
	}
}
