package simulate

import (
	"context"
	"errors"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
)

func ptr[T any](v T) *T { return &v }

func TestDriver_DeniesUntilRulesAreApplied(t *testing.T) {
	ctx := context.Background()
	d := New()
	if _, err := d.Check(ctx, "env_a", apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: "tcp", Address: "10.0.0.1", Port: 443}); !errors.Is(err, enforce.ErrUnknownEnvironment) {
		t.Fatalf("check of an unknown environment: err = %v, want ErrUnknownEnvironment", err)
	}
	if err := d.Apply(ctx, "env_a", apiv1.EffectivePolicy{}); !errors.Is(err, enforce.ErrUnknownEnvironment) {
		t.Fatalf("apply before provision: err = %v, want ErrUnknownEnvironment", err)
	}
	ep, err := d.Provision(ctx, "env_a", "10.200.0.1")
	if err != nil || ep.Address != "10.200.0.1" {
		t.Fatalf("provision = %+v, %v", ep, err)
	}
	req := apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: "tcp", Address: "203.0.113.9", Port: 443}
	if res, err := d.Check(ctx, "env_a", req); err != nil || res.Allowed {
		t.Fatalf("freshly provisioned environment allowed %+v: %+v, %v", req, res, err)
	}
	eff := apiv1.EffectivePolicy{
		EnvironmentID: "env_a",
		Egress: []apiv1.EffectiveRule{{
			PolicyID: "pol_1", PolicyName: "web", RuleIndex: 0,
			Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: "0.0.0.0/0"}}},
			Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(443)}},
		}},
	}
	if err := d.Apply(ctx, "env_a", eff); err != nil {
		t.Fatal(err)
	}
	res, err := d.Check(ctx, "env_a", req)
	if err != nil || !res.Allowed || res.Matched == nil || res.Matched.PolicyID != "pol_1" {
		t.Fatalf("after apply: %+v, %v; want allowed by pol_1", res, err)
	}
	req.Port = 80
	if res, _ := d.Check(ctx, "env_a", req); res.Allowed {
		t.Fatalf("port 80 allowed by a 443-only rule")
	}
}

func TestDriver_SyncKeepsOnlyListedEnvironments(t *testing.T) {
	ctx := context.Background()
	d := New()
	for _, id := range []string{"env_a", "env_b"} {
		if _, err := d.Provision(ctx, id, "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sync(ctx, map[string]string{"env_b": "10.0.0.2", "env_c": "10.0.0.3"}); err != nil {
		t.Fatal(err)
	}
	req := apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: "tcp", Address: "10.0.0.9", Port: 22}
	if _, err := d.Check(ctx, "env_a", req); !errors.Is(err, enforce.ErrUnknownEnvironment) {
		t.Errorf("env_a survived a Sync that did not keep it: %v", err)
	}
	for _, id := range []string{"env_b", "env_c"} {
		if _, err := d.Check(ctx, id, req); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if err := d.Teardown(ctx, "env_b"); err != nil {
		t.Fatal(err)
	}
	if err := d.Teardown(ctx, "env_b"); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
}
