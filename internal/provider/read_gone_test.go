package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// The acceptance tests show that an object deleted outside Terraform is
// planned for creation; the CLI does not expose the warning, so this test
// checks it at the protocol: Read answers a warning (not an error) and no
// state.
func TestRead_ObjectDeletedOutsideTerraformIsAWarningAndLeavesTheStateEmpty(t *testing.T) {
	t.Parallel()
	srv := startExtraServer(t, server.Config{})
	p := configuredProvider(t, srv.URL, srv.Token)

	for typeName, attrs := range map[string]map[string]string{
		"isolation_project":     {"id": "prj_does_not_exist"},
		"isolation_environment": {"id": "env_does_not_exist"},
		"isolation_policy":      {"id": "pol_deleted-long-ago", "name": "gone"},
	} {
		t.Run(typeName, func(t *testing.T) {
			resp, typ := read(t, p, typeName, attrs)
			if len(resp.Diagnostics) != 1 || resp.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityWarning ||
				!strings.Contains(resp.Diagnostics[0].Summary, "deleted outside Terraform") {
				t.Fatalf("diagnostics = %+v, want exactly one warning that the %s was deleted outside Terraform", resp.Diagnostics, typeName)
			}
			newState, err := resp.NewState.Unmarshal(typ)
			if err != nil {
				t.Fatal(err)
			}
			if !newState.IsNull() {
				t.Fatalf("state after reading a deleted %s = %s, want null (removed)", typeName, newState)
			}
		})
	}
}
