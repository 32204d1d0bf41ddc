package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// With the netns driver the demo shows what api tried to reach: the flow
// records isolationd kept of the connections of the sections before that
// its policy refused.

// flowsTimeout bounds the wait for the records of denied packets, which
// are written within a second or two.
const flowsTimeout = 15 * time.Second

// flows runs the section.
func (d *demo) flows(ctx context.Context) error {
	if d.inet == nil {
		return nil
	}
	outs, err := d.outputs(ctx)
	if err != nil {
		return err
	}
	api := outs.Environments["api"]
	d.section("What api tried to reach: isolationd's flow records, from the API")
	// Denied packets are recorded within a second or two. An allowed
	// connection is recorded when the kernel forgets it: for TCP, after
	// TIME_WAIT, two minutes after its close, longer than the demo waits.
	wants := []struct {
		what    string
		found   bool
		verdict string
		dst     string
	}{
		{what: "the connection to " + pastebinHost.name + "'s address", verdict: apiv1.VerdictDenied, dst: pastebinHost.addr.String()},
	}
	policies, err := d.api.Policies().List(ctx, client.ListOptions{})
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, p := range policies {
		names[p.ID] = p.Name
	}
	var flows []apiv1.Flow
	deadline := time.Now().Add(flowsTimeout)
	for {
		if flows, err = d.api.Flows().ListEnvironment(ctx, api.ID, client.FlowListOptions{Direction: apiv1.Egress}); err != nil {
			return err
		}
		missing := 0
		for i := range wants {
			w := &wants[i]
			w.found = slices.ContainsFunc(flows, func(f apiv1.Flow) bool {
				return f.Verdict == w.verdict && f.DstAddress == w.dst && f.DstPort == httpsPort
			})
			if !w.found {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			printFlows(d, flows, names)
			for _, w := range wants {
				if !w.found {
					return fmt.Errorf("no %s flow record of %s (to %s:%d) after %s", w.verdict, w.what, w.dst, httpsPort, flowsTimeout)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // polling the API, bounded by the deadline
		}
	}
	fmt.Fprintf(d.out, "GET /v1/environments/%s/flows?direction=egress: what api tried to reach and was refused, each peer and port\n"+
		"once a second (its retries are one record); allowed connections join the list when the kernel forgets them,\n"+
		"for TCP two minutes after their close (TIME_WAIT)\n", api.ID)
	printFlows(d, flows, names)
	for _, w := range wants {
		fmt.Fprintf(d.out, "found: %s, %s\n", w.what, w.verdict)
	}
	return nil
}

func printFlows(d *demo, flows []apiv1.Flow, policies map[string]string) {
	fmt.Fprintf(d.out, "  %-8s %-7s %-5s %-16s %-42s %-24s %s\n", "time", "verdict", "proto", "from", "to", "policy#rule", "count")
	for _, f := range flows {
		to := f.DstAddress
		if f.DstPort != 0 {
			to += ":" + strconv.Itoa(f.DstPort)
		}
		if f.FQDN != "" {
			to += " (" + f.FQDN + ")"
		}
		rule := "-"
		if f.Rule != nil {
			rule = fmt.Sprintf("%s#%d", policies[f.PolicyID], *f.Rule)
		}
		fmt.Fprintf(d.out, "  %-8s %-7s %-5s %-16s %-42s %-24s %d\n", f.Time.Format("15:04:05"), f.Verdict, f.Protocol, f.SrcAddress, to, rule, f.Count)
	}
}
