package server_test

import (
	"slices"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// TestNetnsAPI_CheckSaysWhenThereIsNoUplink: the check endpoint answers
// an egress its rules allow to the internet with "allowed by policy, but
// no uplink" when the server runs without --uplink, and without that
// warning when its router has an uplink (here to a namespace of the
// test's).
func TestNetnsAPI_CheckSaysWhenThereIsNoUplink(t *testing.T) {
	for _, withUplink := range []bool{false, true} {
		cfg := labConfig(t, netns.DriverName)
		if withUplink {
			wan := "wan-" + cfg.NetnsPrefix
			netnstest.NewNamespace(t, wan)
			cfg.NetnsUplink, cfg.NetnsUplinkNet = "netns:"+wan, "198.19.255.0/30"
		}
		l := startLab(t, cfg)
		env := l.createEnv("api", map[string]string{"app": "api"})
		l.createPolicy(apiv1.PolicySpec{
			Name: "https-out", EnvironmentSelector: selector(map[string]string{"app": "api"}), PolicyTypes: []string{apiv1.Egress},
			Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{CIDR: "198.19.0.0/16"}}, Ports: []apiv1.Port{tcpPort(443)}}},
		})
		l.mustEnforce([]apiv1.Environment{env})
		res, err := l.c.Environments().Check(l.ctx, env.ID, apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: apiv1.ProtocolTCP, Address: "198.19.0.10", Port: 443})
		if err != nil || !res.Allowed {
			t.Fatalf("uplink %v: check: %+v, %v; want allowed", withUplink, res, err)
		}
		if got := slices.Contains(res.Warnings, netns.NoUplinkWarning); got == withUplink {
			t.Errorf("uplink %v: warnings %q; the no-uplink warning should be there only without an uplink", withUplink, res.Warnings)
		}
		l.shutdown()
	}
}
