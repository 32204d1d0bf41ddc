package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	enforcens "github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// With the netns driver the demo shows egress to its internet by name:
// from inside api's container, as a developer, api resolves the names its
// fqdn rules allow through isolationd's DNS proxy and reaches them; the
// effective policy and check show what it resolved; a name no rule allows
// is refused with the reason, and an address no rule allows is refused at
// once.

// dnsTimeout bounds the demo's own DNS question.
const dnsTimeout = 5 * time.Second

// egressByName runs the section; it needs the packets' endpoints, which
// the workloads' section found.
func (d *demo) egressByName(ctx context.Context) error {
	if d.inet == nil || d.packets == nil {
		return nil
	}
	outs, err := d.outputs(ctx)
	if err != nil {
		return err
	}
	api := outs.Environments["api"]
	d.section("Egress by name: api resolves through isolationd's DNS proxy and reaches what its fqdn rules allow, nothing else")
	fmt.Fprintf(d.out, "the demo's internet: %s\n\n", d.inet.describe())
	expires := time.Now().Add(time.Hour)
	dev, err := d.api.Tokens().Create(ctx, apiv1.TokenCreate{Name: "demo-developer-egress", Role: apiv1.RoleDeveloper, ProjectID: outs.ProjectID, ExpiresAt: &expires})
	if err != nil {
		return err
	}
	exec := func(code int, want string, command ...string) error {
		return d.expectCLI(ctx, dev.Secret, code, want, append([]string{"env", "exec", "quickstart/api", "--"}, command...)...)
	}
	byName := func(h host) apiv1.CheckRequest {
		return apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: apiv1.ProtocolTCP, Address: h.name, Port: httpsPort}
	}

	fmt.Fprintf(d.out, "%s, before api resolves it: a name stands for no address until it is resolved\n", registryHost.name)
	if _, err := d.check(ctx, "api", api.ID, byName(registryHost), false); err != nil {
		return err
	}
	gateway, err := d.resolver(ctx, dev.Secret)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\napi resolves the names its rules allow (%s matches *.githubusercontent.com) and fetches from them;\nthe servers see it come from %s, the router's end of the uplink\n", githubHost.name, routerUplinkAddr())
	for _, h := range []host{registryHost, githubHost} {
		if err := exec(0, h.addr.String(), "nslookup", h.name); err != nil {
			return err
		}
		// The server names the address it was reached at and the
		// router's uplink address: the environments reach the outside
		// from it.
		if err := exec(0, h.name+", on the demo's internet: hello, "+routerUplinkAddr().String(), "wget", "-q", "-O", "-", "--no-check-certificate", "https://"+h.name+"/"); err != nil {
			return err
		}
	}
	fmt.Fprintln(d.out, "\napi's effective policy, from the API: the names it resolved, their addresses, and for how long they are allowed")
	ep, err := d.api.Environments().EffectivePolicy(ctx, api.ID)
	if err != nil {
		return err
	}
	printEffectivePolicy(d.out, ep)
	if err := expectResolved(ep, registryHost, githubHost); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\n%s, after: the addresses api resolved it to, allowed by the rule that names it\n", registryHost.name)
	res, err := d.check(ctx, "api", api.ID, byName(registryHost), true)
	if err != nil {
		return err
	}
	if res.FQDN != registryHost.name || !slices.Equal(res.Addresses, []string{registryHost.addr.String()}) {
		return fmt.Errorf("check by name %s: fqdn %q, addresses %v; want %s and [%s]", registryHost.name, res.FQDN, res.Addresses, registryHost.name, registryHost.addr)
	}

	fmt.Fprintf(d.out, "\n%s: no rule of api's names it, so the proxy refuses it without asking the internet, and says why\n", pastebinHost.name)
	if err := exec(1, "REFUSED", "nslookup", pastebinHost.name); err != nil {
		return err
	}
	if err := d.refusedName(d.packets.api, gateway, pastebinHost.name); err != nil {
		return err
	}
	asked, refused := d.inet.questions(registryHost.name), d.inet.questions(pastebinHost.name)
	fmt.Fprintf(d.out, "the internet's resolver was asked %d questions for %s and %d for %s\n", asked, registryHost.name, refused, pastebinHost.name)
	if asked == 0 || refused != 0 {
		return fmt.Errorf("the internet's resolver was asked %d questions for %s and %d for %s; want some, and none", asked, registryHost.name, refused, pastebinHost.name)
	}
	fmt.Fprintf(d.out, "\n%s's address, which api knows without asking: no cidr or fqdn rule allows it, so the router refuses the connection at once\n", pastebinHost.name)
	dst := pastebinHost.addr.String()
	if err := exec(1, "Connection refused", "nc", "-w", "2", dst, fmt.Sprint(httpsPort)); err != nil {
		return err
	}
	if _, err := d.check(ctx, "api", api.ID, byName(pastebinHost), false); err != nil {
		return err
	}
	return d.api.Tokens().Delete(ctx, dev.ID, "")
}

// routerUplinkAddr is the address the router's end of the uplink has,
// and the outside sees the environments come from.
func routerUplinkAddr() netip.Addr {
	return enforcens.DefaultUplinkNet.Masked().Addr().Next().Next()
}

// resolver shows api's resolv.conf and returns its nameserver: the DNS
// proxy, on the gateway's address.
func (d *demo) resolver(ctx context.Context, token string) (netip.Addr, error) {
	run, err := d.cli(ctx, token, "env", "exec", "quickstart/api", "--", "cat", "/etc/resolv.conf")
	if err != nil {
		return netip.Addr{}, err
	}
	for _, line := range strings.Split(run.stdout, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" {
			return netip.ParseAddr(f[1])
		}
	}
	return netip.Addr{}, fmt.Errorf("api's /etc/resolv.conf names no nameserver (exit %d): %q", run.code, run.stdout)
}

// refusedName asks api's resolver for name from api's namespace, as
// busybox's nslookup did but reading the answer's Extended DNS Error,
// which nslookup does not print, and fails unless it is a refusal that
// says why.
func (d *demo) refusedName(from endpoint, gateway netip.Addr, name string) error {
	m, err := netnstest.Query(from.namespace, "udp", netip.AddrPortFrom(gateway, 53), name, dns.TypeA, dnsTimeout)
	if err != nil {
		return fmt.Errorf("asking api's resolver for %s: %w", name, err)
	}
	ede := netnstest.EDE(m)
	fmt.Fprintf(d.out, "dns: %s asks %s for %s A -> %s, EDE %s\n", from.name, gateway, name, dns.RcodeToString[m.Rcode], ede)
	if m.Rcode != dns.RcodeRefused || !strings.Contains(ede, name) {
		return fmt.Errorf("api's resolver answered %s for %s with EDE %q; want REFUSED saying no rule allows the name", dns.RcodeToString[m.Rcode], name, ede)
	}
	return nil
}

// expectResolved fails unless ep's fqdn peers hold each host at its
// address.
func expectResolved(ep *apiv1.EffectivePolicy, hosts ...host) error {
	held := map[string][]string{}
	for _, r := range ep.Egress {
		for _, p := range r.Peers {
			for _, n := range p.Names {
				held[n.Name] = append(held[n.Name], n.Addresses...)
			}
		}
	}
	for _, h := range hosts {
		if !slices.Contains(held[h.name], h.addr.String()) {
			return fmt.Errorf("api's effective policy lists %s with %v, want %s among its resolved names", h.name, held[h.name], h.addr)
		}
	}
	return nil
}
