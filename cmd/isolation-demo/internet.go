// busybox's wget, the only HTTPS client of the workloads' image, sends
// TLS 1.2 handshakes without signature_algorithms, which RFC 5246 lets a
// server take for SHA-1 and Go gates behind tlssha1: the demo's internet
// serves it as a real server of its age would.
//
//go:debug tlssha1=1

package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth/tlstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// With the netns driver the demo gives isolationd an internet to reach:
// a namespace of its own, <prefix>internet, which isolationd joins to its
// router namespace with a veth pair it makes itself (--uplink
// netns:NAME). In it, on addresses of the benchmarking range outside
// isolationd's address pool, a resolver that the environments' DNS proxy
// forwards to (--dns-upstream), knowing a few names, and an HTTPS server
// answering at each name's address. Nothing of it is on the host's
// network, and the demo deletes it after `isolationd cleanup`.

// internetSuffix names the demo's internet after its netns prefix, so
// that the check for namespaces left behind covers it too.
const internetSuffix = "internet"

// resolverAddr is the internet's resolver, isolationd's --dns-upstream.
var resolverAddr = netip.MustParseAddrPort("198.19.0.53:53")

// host is a name the internet's resolver knows, and its address.
type host struct {
	name string
	addr netip.Addr
}

// The internet's names: the quickstart's api may reach the first two
// (its fqdn rules registry.npmjs.org and *.githubusercontent.com), and no
// rule names the third.
var (
	registryHost = host{"registry.npmjs.org", netip.MustParseAddr("198.19.1.10")}
	githubHost   = host{"objects.githubusercontent.com", netip.MustParseAddr("198.19.1.20")}
	pastebinHost = host{"pastebin.com", netip.MustParseAddr("198.19.1.30")}
	internetHost = []host{registryHost, githubHost, pastebinHost}
)

// nameTTL is the TTL of the resolver's answers, in seconds: how long the
// proxy lets an environment reach the addresses it resolved.
const nameTTL = 60

// httpsPort is where the internet's hosts answer, and the port of the
// quickstart's fqdn rule.
const httpsPort = 443

// internet is the demo's internet while it runs.
type internet struct {
	namespace string
	stops     []func()

	mu sync.Mutex
	// asked counts the questions its resolver was asked, by name: a
	// name the proxy refuses must never reach it.
	asked map[string]int
}

// startInternet creates the namespace, its addresses and its servers;
// the server certificate it writes goes in dir.
func startInternet(prefix, dir string) (*internet, error) {
	in := &internet{namespace: prefix + internetSuffix, asked: map[string]int{}}
	if err := netnstest.CreateNamespace(in.namespace); err != nil {
		return nil, err
	}
	if err := in.serve(dir); err != nil {
		return nil, errors.Join(err, in.close())
	}
	return in, nil
}

func (in *internet) serve(dir string) error {
	addrs := []netip.Addr{resolverAddr.Addr()}
	for _, h := range internetHost {
		addrs = append(addrs, h.addr)
	}
	if err := netnstest.AddLoopbackAddrs(in.namespace, addrs...); err != nil {
		return err
	}
	stop, err := netnstest.StartDNS(in.namespace, resolverAddr, dns.HandlerFunc(in.answer))
	if err != nil {
		return err
	}
	in.stops = append(in.stops, stop)
	return in.serveHTTPS(dir)
}

// answer is the internet's resolver: an A record for each of its names,
// no other record, and NXDOMAIN for any other name.
func (in *internet) answer(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.Rcode = dns.RcodeNameError
	for _, q := range req.Question {
		in.mu.Lock()
		in.asked[strings.ToLower(dns.Fqdn(q.Name))]++
		in.mu.Unlock()
		for _, h := range internetHost {
			if !strings.EqualFold(q.Name, dns.Fqdn(h.name)) {
				continue
			}
			m.Rcode = dns.RcodeSuccess
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: nameTTL}, A: h.addr.AsSlice()})
			}
		}
	}
	_ = w.WriteMsg(m)
}

// serveHTTPS answers HTTPS on every address of the namespace with a
// line naming the host asked for and the client's address, with a
// certificate of a throwaway CA for the internet's names (busybox's wget
// does not check it; a client that does would be given the CA).
func (in *internet) serveHTTPS(dir string) error {
	ca, err := tlstest.NewCA()
	if err != nil {
		return err
	}
	var names []string
	for _, h := range internetHost {
		names = append(names, h.name)
	}
	certFile, keyFile, err := ca.ServerCert(dir, names...)
	if err != nil {
		return err
	}
	var ln net.Listener
	if err := netnstest.Do(in.namespace, func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", httpsPort))
		return err
	}); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(hello),
		ReadHeaderTimeout: 5 * time.Second,
		// A client that gives up mid-handshake is not the demo's failure.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(ln, certFile, keyFile) }()
	in.stops = append(in.stops, func() { _ = srv.Close(); <-done })
	return nil
}

// hello names the host whose address the client reached and the
// address the client came from.
func hello(w http.ResponseWriter, r *http.Request) {
	name := "an address of no name"
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		for _, h := range internetHost {
			if local.AddrPort().Addr().Unmap() == h.addr {
				name = h.name
			}
		}
	}
	client, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "no client address", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "%s, on the demo's internet: hello, %s\n", name, client.Addr()) //nolint:gosec // G705: a plain-text line of two addresses, no HTML
}

// close stops the servers and deletes the namespace, once isolationd is
// done with it: `isolationd cleanup` has deleted the uplink.
func (in *internet) close() error {
	for _, stop := range in.stops {
		stop()
	}
	in.stops = nil
	if err := netns.DeleteNamed(in.namespace); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete the demo's internet, namespace %s: %w", in.namespace, err)
	}
	return nil
}

// questions is how many questions for name the resolver was asked.
func (in *internet) questions(name string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.asked[strings.ToLower(dns.Fqdn(name))]
}

// describe says what the internet holds, for the demo's output.
func (in *internet) describe() string {
	var names []string
	for _, h := range internetHost {
		names = append(names, fmt.Sprintf("%s = %s", h.name, h.addr))
	}
	return fmt.Sprintf("namespace %s, with a resolver at %s (TTL %ds: %s) and HTTPS on port %d at each address",
		in.namespace, resolverAddr, nameTTL, strings.Join(names, ", "), httpsPort)
}
