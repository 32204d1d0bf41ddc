package netns_test

import (
	"context"
	"testing"

	"github.com/google/nftables"
	vnetns "github.com/vishvananda/netns"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// routerNft is an nftables connection on the lab's router namespace, as
// an operator with root would use it.
func (l *lab) routerNft(t testing.TB) *nftables.Conn {
	t.Helper()
	h, err := vnetns.GetFromName(l.d.RouterNamespace())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Flushing or deleting the router's table is drift of every environment; Provision
// and Apply make the kernel hold the rules again, and Verify is then
// clean.
func TestVerify_ATableFlushedOrDeletedOutsideIsDriftAndProvisionRepairsIt(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	v4, _ := l.env(t, "env-a", "198.18.0.2")
	p := apiv1.EffectivePolicy{Generation: 1, Egress: []apiv1.EffectiveRule{rule("web", []apiv1.EffectivePeer{cidr("198.19.0.10/32")}, tcp(80))}}
	l.apply(t, "env-a", p)
	if got, err := l.d.Verify(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Verify before any drift: %v, %v; want nothing", got, err)
	}
	c := l.routerNft(t)
	inet := &nftables.Table{Name: l.prefix, Family: nftables.TableFamilyINet}
	for _, d := range []struct {
		reason string
		do     func()
	}{
		{"nftables table flushed outside isolationd", func() { c.FlushTable(inet) }},
		{"nftables table deleted outside isolationd", func() { c.DelTable(inet) }},
	} {
		d.do()
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		got, err := l.d.Verify(ctx)
		if err != nil || len(got) != 1 || got[0].EnvID != "env-a" || got[0].Reason != d.reason {
			t.Fatalf("Verify after drift %q: %+v, %v", d.reason, got, err)
		}
		if _, err := l.d.Provision(ctx, "env-a", "198.18.0.2"); err != nil {
			t.Fatal(err)
		}
		l.apply(t, "env-a", p)
		if got, err := l.d.Verify(ctx); err != nil || len(got) != 0 {
			t.Fatalf("Verify after the repair of %q: %v, %v; want nothing", d.reason, got, err)
		}
		web := l.inetEnd("198.19.0.10")
		if !send(t, probe(apiv1.ProtocolTCP, v4, web, 80)) || send(t, probe(apiv1.ProtocolTCP, v4, web, 443)) {
			t.Fatalf("after the repair of %q, packets do not follow the policy", d.reason)
		}
	}
}

// An environment adopted with chains an older version wrote (here, its
// from chain without any of its rules) gets this version's chains at
// once: the first sweep finds no drift, and nothing it allowed stops.
// The rules are counted from the kernel's dump: google/nftables cannot
// parse every expression they hold.
func TestSync_AdoptionRewritesTheChainsAnOlderVersionMade(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	v4, _ := l.env(t, "env-a", "198.18.0.2")
	name := l.d.Namespace("env-a")
	l.apply(t, "env-a", apiv1.EffectivePolicy{Generation: 1, Egress: []apiv1.EffectiveRule{rule("web", []apiv1.EffectivePeer{cidr("198.19.0.10/32")}, tcp(80))}})
	before, err := l.d.InetRuleCounts()
	if err != nil || before[name+"_from"] == 0 {
		t.Fatalf("rules of %s_from: %v, %v", name, before, err)
	}
	if err := l.d.Close(); err != nil {
		t.Fatal(err)
	}
	c := l.routerNft(t)
	inet := &nftables.Table{Name: l.prefix, Family: nftables.TableFamilyINet}
	c.FlushChain(&nftables.Chain{Name: name + "_from", Table: inet})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	l.restart(t, ctx, map[string]string{"env-a": "198.18.0.2"})
	if got, err := l.d.Verify(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Verify after adopting older chains: %+v, %v; want nothing", got, err)
	}
	if now, err := l.d.InetRuleCounts(); err != nil || now[name+"_from"] != before[name+"_from"] {
		t.Fatalf("%s_from holds %d rules after adoption (%v), want %d", name, now[name+"_from"], err, before[name+"_from"])
	}
	web := l.inetEnd("198.19.0.10")
	if !send(t, probe(apiv1.ProtocolTCP, v4, web, 80)) || send(t, probe(apiv1.ProtocolTCP, v4, web, 443)) {
		t.Fatal("after adoption, packets do not follow the policy")
	}
}
