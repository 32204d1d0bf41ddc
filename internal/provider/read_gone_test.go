package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// The acceptance tests show that an object deleted outside Terraform is
// planned for creation; the CLI does not expose the warning, so this test
// checks it at the protocol: Read answers a warning (not an error) and no
// state.
func TestRead_ObjectDeletedOutsideTerraformIsAWarningAndLeavesTheStateEmpty(t *testing.T) {
	t.Parallel()
	srv := startExtraServer(t, testServerOptions{})
	p := configuredProvider(t, srv.URL, srv.Token)
	ctx := t.Context()

	for typeName, id := range map[string]string{
		"isolation_project":     "prj_does_not_exist",
		"isolation_environment": "env_does_not_exist",
	} {
		t.Run(typeName, func(t *testing.T) {
			typ := resourceType(t, p, typeName)
			state, err := tfprotov6.NewDynamicValue(typ, objectWith(typ, map[string]tftypes.Value{
				"id": tftypes.NewValue(tftypes.String, id),
			}))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := p.ReadResource(ctx, &tfprotov6.ReadResourceRequest{TypeName: typeName, CurrentState: &state})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Diagnostics) != 1 || resp.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityWarning ||
				!strings.Contains(resp.Diagnostics[0].Summary, "deleted outside Terraform") {
				t.Fatalf("diagnostics = %+v, want exactly one warning", resp.Diagnostics)
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

// objectWith is a value of typ with the given attributes and every other one null.
func objectWith(typ tftypes.Object, set map[string]tftypes.Value) tftypes.Value {
	vals := map[string]tftypes.Value{}
	for name, at := range typ.AttributeTypes {
		if v, ok := set[name]; ok {
			vals[name] = v
		} else {
			vals[name] = tftypes.NewValue(at, nil)
		}
	}
	return tftypes.NewValue(typ, vals)
}

// configuredProvider returns the provider server configured for endpoint.
func configuredProvider(t *testing.T, endpoint, token string) tfprotov6.ProviderServer {
	t.Helper()
	p, diags := configureProvider(t, endpoint, token)
	if len(diags) > 0 {
		t.Fatalf("configure: %+v", diags)
	}
	return p
}

// configureProvider configures a new provider server for endpoint and
// returns it with Configure's diagnostics.
func configureProvider(t *testing.T, endpoint, token string) (tfprotov6.ProviderServer, []*tfprotov6.Diagnostic) {
	t.Helper()
	p, err := testAccProtoV6ProviderFactories["isolation"]()
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := p.GetProviderSchema(t.Context(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	providerType := schemas.Provider.ValueType().(tftypes.Object)
	config, err := tfprotov6.NewDynamicValue(providerType, objectWith(providerType, map[string]tftypes.Value{
		"endpoint":    tftypes.NewValue(tftypes.String, endpoint),
		"token":       tftypes.NewValue(tftypes.String, token),
		"max_retries": tftypes.NewValue(tftypes.Number, 0),
	}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.ConfigureProvider(t.Context(), &tfprotov6.ConfigureProviderRequest{Config: &config})
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	return p, resp.Diagnostics
}

// resourceType is the object type of a resource's state.
func resourceType(t *testing.T, p tfprotov6.ProviderServer, typeName string) tftypes.Object {
	t.Helper()
	schemas, err := p.GetProviderSchema(t.Context(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return schemas.ResourceSchemas[typeName].ValueType().(tftypes.Object)
}
