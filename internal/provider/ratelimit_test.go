package provider

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// rateLimitedEnvironments is how many environments the rate limit test
// applies; at rateLimitPerSecond the apply, the plans and the destroy
// take about a minute.
const (
	rateLimitedEnvironments = 50
	rateLimitPerSecond      = 8
	rateLimitBurst          = 4
)

func TestAccProvider_ApplyOf50EnvironmentsConvergesThroughRetryAfterWithoutDuplicates(t *testing.T) {
	srv := startServerWith(t, server.Config{RateLimit: rateLimitPerSecond, RateBurst: rateLimitBurst})
	// The test looks with a token of its own: the limit is per token, and
	// the test must not eat Terraform's budget.
	admin, err := client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken(), MaxRetries: 50})
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := admin.Tokens().Create(t.Context(), apiv1.TokenCreate{Name: "observer", Role: apiv1.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	observer, err := client.New(client.Config{Endpoint: srv.URL(), Token: auditor.Secret, MaxRetries: 50})
	if err != nil {
		t.Fatal(err)
	}
	cfg := serverProviderConfig + fmt.Sprintf(`
resource "isolation_project" "busy" {
  name = "busy"
}

resource "isolation_environment" "many" {
  count      = %d
  project_id = isolation_project.busy.id
  name       = "env-${count.index}"
}
`, rateLimitedEnvironments)
	// A pipeline that knows its server is rate limited allows more retries
	// than the default; each waits as long as Retry-After says.
	vars := serverVariables(srv, config.Variables{"max_retries": config.IntegerVariable(60)})
	resource.ParallelTest(t, testAccCase(t, []resource.TestStep{{
		Config:           cfg,
		ConfigVariables:  vars,
		ConfigPlanChecks: afterApply(),
		ConfigStateChecks: []statecheck.StateCheck{
			statecheck.ExpectKnownValue("isolation_environment.many[49]", tfjsonpath.New("state"), knownvalue.StringExact("ready")),
		},
		Check: func(*terraform.State) error {
			envs, err := observer.Environments().List(context.Background(), client.ListOptions{})
			if err != nil {
				return err
			}
			names := map[string]bool{}
			for _, e := range envs {
				if names[e.Name] {
					return fmt.Errorf("environment %s exists twice", e.Name)
				}
				names[e.Name] = true
			}
			if len(envs) != rateLimitedEnvironments {
				return fmt.Errorf("the server holds %d environments, want %d", len(envs), rateLimitedEnvironments)
			}
			return nil
		},
	}}))
	// The limit must have bitten, or the test proved nothing.
	limited, _, err := srv.Store().ListAudit(context.Background(), store.AuditQuery{Action: "auth.denied", Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range limited {
		if ev.StatusCode == 429 {
			n++
		}
	}
	if n == 0 {
		t.Fatal("no request was rate limited: the test proved nothing")
	}
	t.Logf("%d requests were answered 429 and retried after Retry-After", n)
	if left, err := observer.Environments().List(context.Background(), client.ListOptions{}); err != nil || len(left) != 0 {
		t.Fatalf("after destroy: %d environments left (%v)", len(left), err)
	}
}
