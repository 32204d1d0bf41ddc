package siemtest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Rsyslog is the distribution's rsyslogd receiving RFC 5425 syslog over
// TLS on a loopback port, requiring a client certificate of the PKI's CA,
// and writing each message as received, one a line, to Out.
type Rsyslog struct {
	Addr string // 127.0.0.1:PORT
	Out  string
	dir  string
	conf string
	cmd  *exec.Cmd
	// exited receives cmd's end, once.
	exited chan error
}

// RsyslogMissing says why a test cannot run rsyslog: "" when rsyslogd
// and its TLS module are installed (make siem-deps installs them).
func RsyslogMissing() string {
	if _, err := exec.LookPath("rsyslogd"); err != nil {
		if _, err := os.Stat("/usr/sbin/rsyslogd"); err != nil {
			return "rsyslogd is not installed: make siem-deps installs rsyslog and rsyslog-gnutls"
		}
	}
	mods, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so")
	if len(mods) == 0 {
		return "rsyslog's TLS module is not installed: make siem-deps installs rsyslog-gnutls"
	}
	return ""
}

// StartRsyslog starts rsyslogd on a free loopback port with the PKI's
// server certificate; the test's cleanup kills it.
func StartRsyslog(t testing.TB, pki PKI) *Rsyslog {
	t.Helper()
	if why := RsyslogMissing(); why != "" {
		t.Fatal(why)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	r := &Rsyslog{Addr: addr, Out: filepath.Join(dir, "out.log"), dir: dir, conf: filepath.Join(dir, "rsyslog.conf")}
	conf := fmt.Sprintf(`global(workDirectory=%[1]q maxMessageSize="64k"
  defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile=%[2]q
  defaultNetstreamDriverCertFile=%[3]q defaultNetstreamDriverKeyFile=%[4]q)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
template(name="raw" type="string" string="%%rawmsg%%\n")
input(type="imtcp" address="127.0.0.1" port=%[5]q)
action(type="omfile" file=%[6]q template="raw")
`, dir, pki.CA, pki.ServerCert, pki.ServerKey, port, r.Out)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Kill(t) })
	r.Start(t)
	return r
}

// Start starts rsyslogd (again) and returns once it accepts connections.
func (r *Rsyslog) Start(t testing.TB) {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			r.cmd = nil
			t.Fatalf("rsyslogd exited at start: %v\n%s", err, stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
			c.Close()
			r.exited = exited
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd did not listen on %s within 15s\n%s", r.Addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill kills rsyslogd with SIGKILL, as a crash would, and reaps it.
func (r *Rsyslog) Kill(t testing.TB) {
	t.Helper()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	select {
	case err := <-r.exited:
		_ = err // killed: how it exited is known
	case <-time.After(10 * time.Second):
		t.Errorf("rsyslogd pid %d did not die of SIGKILL within 10s", r.cmd.Process.Pid)
	}
	r.cmd = nil
}

// Lines are the messages received so far, in the order written.
func (r *Rsyslog) Lines(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(r.Out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// Pid is rsyslogd's process id, for a test's log.
func (r *Rsyslog) Pid() string {
	if r.cmd == nil {
		return "none"
	}
	return strconv.Itoa(r.cmd.Process.Pid)
}
