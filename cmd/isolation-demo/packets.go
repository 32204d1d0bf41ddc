package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	enforcens "github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// With the netns driver the demo sends real packets: TCP connections
// between the api and db environments' network namespaces, answered by
// their workloads (api's httpd, db's echo service) when the policy lets
// them through, on ports it allows and on ports it denies.

// Ports of the quickstart's workloads: the policy opens db's port between
// api and db, and no other.
const (
	dbPort     = 5432 // db's echo service
	apiPort    = 8080 // api's httpd: listening, and closed to everyone by the policy
	closedPort = 22   // nothing listens there, and the policy opens it to no one
)

// Timeouts of a connection: a dropped SYN is the expected fate of a denied
// one, so it is given little time; an allowed one gets more, so that a slow
// machine is not mistaken for a drop.
const (
	deniedTimeout  = time.Second
	allowedTimeout = 5 * time.Second
)

// listenTimeout bounds the wait for a workload's port: a workload is
// running once its command has started, and the command binds its port a
// moment later.
const listenTimeout = 10 * time.Second

// runDir is where named network namespaces live (`ip netns list`).
const runDir = "/run/netns"

// chooseDriver decides how isolationd enforces: the netns driver under a
// prefix no namespace on this machine starts with, when the demo runs as
// root and the kernel lets it make network namespaces; otherwise the
// simulate driver, and why.
func chooseDriver() (prefix, why string, err error) {
	if euid := os.Geteuid(); euid != 0 {
		return "", fmt.Sprintf("not root (euid %d)", euid), nil
	}
	if err := enforcens.OnLockedThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) }); err != nil {
		return "", fmt.Sprintf("the kernel refuses to create a network namespace (%v)", err), nil
	}
	for range 20 {
		prefix, err := randomPrefix()
		if err != nil {
			return "", "", err
		}
		taken, err := enforcens.NamespacesWithPrefix(prefix)
		if err != nil {
			return "", "", err
		}
		if len(taken) == 0 {
			return prefix, "", nil
		}
	}
	return "", "", errors.New("found no netns prefix demo<xx> that no namespace in " + runDir + " starts with")
}

// randomPrefix is "demo" and two random lowercase letters or digits: six
// characters, the most the netns driver takes.
func randomPrefix() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := []byte("demo")
	for range 2 {
		i, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", err
		}
		b = append(b, alphabet[i.Int64()])
	}
	return string(b), nil
}

// endpoint is an environment as the packets see it.
type endpoint struct {
	name, id, namespace string
	addr                netip.Addr
}

func (e endpoint) String() string {
	return fmt.Sprintf("%s (%s, namespace %s)", e.name, e.addr, e.namespace)
}

// packets is what the demo keeps to send packets between api and db.
type packets struct {
	api, db endpoint
}

// outcome is what became of a connection.
type outcome int

const (
	dropped   outcome = iota // no answer within the timeout, or refused on its way out (EPERM)
	reset                    // the SYN reached the other end, where nothing listens
	connected                // connected, and the service answered
)

func (o outcome) String() string {
	return [...]string{"dropped", "reset", "connected"}[o]
}

// talk exchanges a few bytes with the workload's service at port, as its
// client would, and says what it answered; an unexpected answer is an
// error.
func talk(c net.Conn, from endpoint, port uint16) (string, error) {
	switch port {
	case dbPort:
		line := fmt.Sprintf("hello from %s", from.name)
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			return "", err
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if got = strings.TrimSuffix(got, "\n"); got != line {
			return "", fmt.Errorf("sent %q, the echo service sent back %q (%v)", line, got, err)
		}
		return fmt.Sprintf("sent %q, echoed %q", line, got), nil
	case apiPort:
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return "", err
		}
		status, err := bufio.NewReader(c).ReadString('\n')
		status = strings.TrimSpace(status)
		if !strings.HasPrefix(status, "HTTP/1.") || !strings.Contains(status, " 200 ") {
			return "", fmt.Errorf("GET / answered %q (%v), want 200", status, err)
		}
		return "GET / -> " + status, nil
	}
	return "", fmt.Errorf("no workload of the quickstart listens on port %d", port)
}

// connect opens a TCP connection from from's namespace to port of to's
// address and talks to the service there, within timeout. A SYN the rules
// drop times out (or, dropped on its way out, fails with EPERM); one that
// reaches a port where nothing listens is reset. Any other failure,
// including a service that answers wrongly, is an error.
func connect(from, to endpoint, port uint16, timeout time.Duration) (outcome, string, error) {
	dst := netip.AddrPortFrom(to.addr, port).String()
	var c net.Conn
	err := netnstest.Do(from.namespace, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", dst, timeout)
		return err
	})
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout(), errors.Is(err, syscall.EPERM):
		return dropped, "", nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return reset, "", nil
	default:
		return dropped, "", fmt.Errorf("tcp from %s to %s: %w", from.namespace, dst, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return connected, "", err
	}
	answer, err := talk(c, from, port)
	if err != nil {
		return connected, "", fmt.Errorf("tcp from %s to %s connected, but %w", from.namespace, dst, err)
	}
	return connected, answer, nil
}

// checkConnection connects from one environment to port of another (or of itself),
// prints the outcome and fails when it contradicts want, what the policy
// says, with why. A connection the policy allows that is reset is tried
// again until the workload listens (a port is bound only after the
// workload started, and connecting is the only way to learn that it
// listens), up to listenTimeout.
func checkConnection(w io.Writer, from, to endpoint, port uint16, want bool, why string) error {
	timeout := deniedTimeout
	if want {
		timeout = allowedTimeout
	}
	start := time.Now()
	got, answer, err := connect(from, to, port, timeout)
	if want && got == reset {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for got == reset && err == nil && time.Since(start) < listenTimeout {
			<-tick.C
			got, answer, err = connect(from, to, port, timeout)
		}
	}
	if err != nil {
		return err
	}
	took := roundDuration(time.Since(start))
	dst := fmt.Sprintf("%s %s", to.name, to.addr)
	if to == from {
		dst = fmt.Sprintf("%s's own address %s", to.name, to.addr)
	}
	var what string
	switch got {
	case connected:
		what = "connected, " + answer
	case reset:
		what = "reset: the SYN got through, and nothing listens"
		if !want {
			// Deny fast: the router resets a flow the sender's own egress rules deny.
			what = "refused at once (reset by the router)"
		}
	case dropped:
		what = "no answer (dropped)"
	}
	fmt.Fprintf(w, "packets: tcp %s %s -> %s port %-4d -> %s, in %s (%s)\n", from.name, from.addr, dst, port, what, took, why)
	switch {
	case want && got != connected:
		return fmt.Errorf("real packets contradict the policy: tcp from %s to %s port %d: %s, but %s", from.name, dst, port, what, why)
	case !want && got == connected:
		return fmt.Errorf("real packets contradict the policy: tcp from %s to %s port %d: %s, but %s: the rules should have dropped it", from.name, dst, port, what, why)
	}
	return nil
}

func roundDuration(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// setUpPackets finds the api and db environments' namespaces the way the
// driver names them and checks them against what the API reports.
func (d *demo) setUpPackets(ctx context.Context, outs quickstartOutputs) error {
	p := &packets{}
	for _, e := range []struct {
		name string
		dst  *endpoint
	}{{"api", &p.api}, {"db", &p.db}} {
		out, ok := outs.Environments[e.name]
		if !ok {
			return fmt.Errorf("the configuration has no environment %q", e.name)
		}
		env, err := d.api.Environments().Get(ctx, out.ID)
		if err != nil {
			return err
		}
		addr, err := netip.ParseAddr(env.Enforcement.Address)
		if err != nil {
			return fmt.Errorf("environment %s: address %q: %w", e.name, env.Enforcement.Address, err)
		}
		ns := enforcens.NamespaceName(d.netnsPrefix, out.ID)
		if env.Enforcement.Driver != enforcens.DriverName || env.Enforcement.Namespace != ns {
			return fmt.Errorf("environment %s is enforced by driver %q in namespace %q; the demo expected %s in %s",
				e.name, env.Enforcement.Driver, env.Enforcement.Namespace, enforcens.DriverName, ns)
		}
		*e.dst = endpoint{name: e.name, id: out.ID, namespace: ns, addr: addr}
	}
	d.packets = p
	d.namespaces = []string{p.api.namespace, p.db.namespace}
	fmt.Fprintf(d.out, "real packets between %s\n                 and %s\n", p.api, p.db)
	return nil
}

// sendPackets shows the policy holding between the workloads: api's
// httpd answers inside api's own namespace (where no policy applies), api
// reaches db's echo service, and db's closed port and api's httpd are out
// of reach.
func (d *demo) sendPackets(ctx context.Context, projectID string) error {
	if err := d.waitEnforced(ctx, projectID); err != nil {
		return err
	}
	p := d.packets
	for _, c := range []struct {
		from, to endpoint
		port     uint16
		want     bool
		why      string
	}{
		{p.api, p.api, apiPort, true, "inside api's namespace, no policy applies: api's httpd listens"},
		{p.api, p.db, dbPort, true, "the policy allows api to reach db on 5432"},
		{p.api, p.db, closedPort, false, "the policy denies it: no rule allows port 22"},
		{p.db, p.api, apiPort, false, "the policy denies it: api's httpd listens, and no rule allows port 8080"},
	} {
		if err := checkConnection(d.out, c.from, c.to, c.port, c.want, c.why); err != nil {
			return err
		}
	}
	return nil
}

// waitEnforced waits until every environment of the project has applied
// its current rules (the API's wait_for=enforced, no sleeping) and says so
// for api and db.
func (d *demo) waitEnforced(ctx context.Context, projectID string) error {
	if d.packets == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.api.Policies().WaitEnforced(wctx, projectID); err != nil {
		return err
	}
	var gens []string
	for _, e := range []endpoint{d.packets.api, d.packets.db} {
		env, err := d.api.Environments().Get(ctx, e.id)
		if err != nil {
			return err
		}
		if !env.Enforcement.Enforced {
			return fmt.Errorf("environment %s does not report its rules enforced after the wait: %+v", e.name, env.Enforcement)
		}
		gens = append(gens, fmt.Sprintf("%s generation %d", e.name, env.Enforcement.ObservedGeneration))
	}
	fmt.Fprintf(d.out, "enforced: %s\n", strings.Join(gens, ", "))
	return nil
}

// probe connects from api to db on port, once the environments enforce
// their current rules; want is what the policy says.
func (d *demo) probe(ctx context.Context, projectID string, port uint16, want bool, why string) error {
	if d.packets == nil {
		return nil
	}
	if err := d.waitEnforced(ctx, projectID); err != nil {
		return err
	}
	return checkConnection(d.out, d.packets.api, d.packets.db, port, want, why)
}

// driverFlags are the flags that give isolationd the netns driver, the
// runc runtime (its default with that driver, said here for the reader),
// an uplink to the demo's internet and its resolver as the DNS proxy's
// upstream.
func (d *demo) driverFlags() []string {
	if d.netnsPrefix == "" {
		return nil
	}
	return []string{"--driver", enforcens.DriverName, "--netns-prefix", d.netnsPrefix, "--runtime", apiv1.RuntimeRunc,
		"--uplink", "netns:" + d.inet.namespace, "--dns-upstream", resolverAddr.String()}
}
