package main

import (
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
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	enforcens "github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
)

// With the netns driver the demo sends real packets: TCP connections from
// the api environment's network namespace to listeners it runs in the db
// environment's, on a port the quickstart policy allows and on one it
// denies.

// Ports the demo listens on in db's namespace: the quickstart policy lets
// api reach db on PostgreSQL's port and on nothing else.
const (
	allowedPort = 5432
	deniedPort  = 22
)

// Timeouts of a connection: a dropped SYN is the expected fate of a denied
// one, so it is given little time; an allowed one gets more, so that a slow
// machine is not mistaken for a drop.
const (
	deniedTimeout  = time.Second
	allowedTimeout = 5 * time.Second
)

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

// inNamespace runs fn on a locked OS thread inside the named namespace.
// Sockets fn creates belong to that namespace for good, so only their
// creation has to happen here.
func inNamespace(name string, fn func() error) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer h.Close()
	return enforcens.OnLockedThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter namespace %s: %w", name, err)
		}
		return fn()
	})
}

// endpoint is an environment as the packets see it.
type endpoint struct {
	name, id, namespace string
	addr                netip.Addr
}

func (e endpoint) String() string {
	return fmt.Sprintf("%s (%s, namespace %s)", e.name, e.addr, e.namespace)
}

// packets is what the demo keeps to send packets from api to db: the two
// environments and the listeners in db's namespace.
type packets struct {
	api, db   endpoint
	listeners []net.Listener
	wg        sync.WaitGroup
}

// listen opens a TCP listener on db's address for each port, created
// inside db's namespace, and serves each in a goroutine: it greets every
// connection with one line and closes it. The listeners accept as soon as
// listen returns.
func (p *packets) listen(ports ...uint16) error {
	return inNamespace(p.db.namespace, func() error {
		for _, port := range ports {
			l, err := net.Listen("tcp4", netip.AddrPortFrom(p.db.addr, port).String())
			if err != nil {
				return fmt.Errorf("listen on %s port %d in %s: %w", p.db.addr, port, p.db.namespace, err)
			}
			p.listeners = append(p.listeners, l)
			greeting := fmt.Sprintf("db listening on port %d\n", port)
			p.wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					// A greeting that fails to go out shows on the
					// connecting side, which reports it.
					_ = c.SetWriteDeadline(time.Now().Add(time.Second))
					_, _ = io.WriteString(c, greeting)
					c.Close()
				}
			})
		}
		return nil
	})
}

// close stops the listeners; closing again does nothing.
func (p *packets) close() {
	for _, l := range p.listeners {
		l.Close()
	}
	p.listeners = nil
	p.wg.Wait()
}

// connect opens a TCP connection from api's namespace to db on port and
// reads db's greeting. It reports whether the connection was made within
// timeout: a SYN the rules drop times out (or, dropped on its way out,
// fails with EPERM). A reset or any other failure is an error, since a
// listener is there.
func (p *packets) connect(port uint16, timeout time.Duration) (bool, error) {
	to := netip.AddrPortFrom(p.db.addr, port).String()
	var c net.Conn
	err := inNamespace(p.api.namespace, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", to, timeout)
		return err
	})
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout(), errors.Is(err, syscall.EPERM):
		return false, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return false, fmt.Errorf("tcp from %s to %s: refused with a reset, so the SYN reached db but nothing listened there", p.api.namespace, to)
	default:
		return false, fmt.Errorf("tcp from %s to %s: %w", p.api.namespace, to, err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return true, fmt.Errorf("tcp from %s to %s: %w", p.api.namespace, to, err)
	}
	line, err := io.ReadAll(io.LimitReader(c, 128))
	if err == nil && len(line) == 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return true, fmt.Errorf("tcp from %s to %s connected, but db's listener sent no greeting: %w", p.api.namespace, to, err)
	}
	return true, nil
}

// probe connects from api to db on port, prints the outcome and fails
// when it contradicts the policy, which allows the connection when want.
func (p *packets) probe(w io.Writer, port uint16, want bool, why string) error {
	timeout := deniedTimeout
	if want {
		timeout = allowedTimeout
	}
	start := time.Now()
	got, err := p.connect(port, timeout)
	if err != nil {
		return err
	}
	took := roundDuration(time.Since(start))
	outcome := "connected"
	switch {
	case !got && !want:
		outcome = "refused or timed out (dropped by policy)"
	case !got:
		outcome = "refused or timed out"
	}
	fmt.Fprintf(w, "packets: tcp api %s -> db %s port %-4d -> %s, in %s (%s)\n", p.api.addr, p.db.addr, port, outcome, took, why)
	if got != want {
		return fmt.Errorf("real packets contradict the policy: tcp from api (%s) to db (%s) port %d %s within %s, but %s",
			p.api.addr, p.db.addr, port, outcome, timeout, why)
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
// driver names them, checks them against what the API reports, and starts
// the listeners in db's.
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
	if err := p.listen(allowedPort, deniedPort); err != nil {
		p.close()
		return err
	}
	d.packets = p
	d.namespaces = []string{p.api.namespace, p.db.namespace}
	fmt.Fprintf(d.out, "\nreal packets: TCP connections from %s\n           to %s, where the demo listens on ports %d and %d\n",
		p.api, p.db, allowedPort, deniedPort)
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
	return d.packets.probe(d.out, port, want, why)
}

// checkNamespacesGone fails when an environment's namespace is still there
// after the environments were destroyed.
func (d *demo) checkNamespacesGone() error {
	var left []string
	for _, ns := range d.namespaces {
		if _, err := os.Stat(runDir + "/" + ns); err == nil {
			left = append(left, ns)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("after destroy the environments' namespaces %s are still in %s", strings.Join(left, ", "), runDir)
	}
	if len(d.namespaces) > 0 {
		fmt.Fprintf(d.out, "the environments' namespaces %s are gone\n", strings.Join(d.namespaces, " and "))
	}
	return nil
}

// removeNamespaces deletes what is left under the demo's prefix once
// isolationd has stopped (the driver keeps its router namespace for its
// next start; after a failure, environments' namespaces too), then fails
// if any namespace with the prefix remains.
func (d *demo) removeNamespaces() error {
	left, err := enforcens.NamespacesWithPrefix(d.netnsPrefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range left {
		if err := netns.DeleteNamed(name); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", name, err))
		}
	}
	remaining, err := enforcens.NamespacesWithPrefix(d.netnsPrefix)
	if err != nil {
		return err
	}
	if len(remaining) > 0 {
		errs = append(errs, fmt.Errorf("namespaces with the demo's prefix %q are left in %s: %s", d.netnsPrefix, runDir, strings.Join(remaining, ", ")))
		return errors.Join(errs...)
	}
	removed := "isolationd left none"
	if len(left) > 0 {
		removed = "removed what isolationd keeps for its next start: " + strings.Join(left, ", ")
	}
	fmt.Fprintf(d.out, "no namespace named %s* is left in %s (%s)\n", d.netnsPrefix, runDir, removed)
	return errors.Join(errs...)
}

// driverFlags are the flags that give isolationd the netns driver.
func (d *demo) driverFlags() []string {
	if d.netnsPrefix == "" {
		return nil
	}
	return []string{"--driver", enforcens.DriverName, "--netns-prefix", d.netnsPrefix}
}
