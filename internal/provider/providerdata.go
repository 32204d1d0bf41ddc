package provider

import (
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// clientFromProviderData is the Configure step every resource and data
// source shares. A nil result with no error means the provider is not
// configured yet (its settings are unknown until apply).
func clientFromProviderData(data any, diags *diag.Diagnostics) *client.Client {
	if data == nil {
		return nil
	}
	c, ok := data.(*client.Client)
	if !ok {
		diags.AddError("Unexpected provider data",
			fmt.Sprintf("Expected *client.Client, got %T. This is a bug in the provider; please report it.", data))
		return nil
	}
	return c
}

// requireClient reports an error when an operation must call the API but
// the provider could not be configured because a setting was unknown.
func requireClient(c *client.Client, diags *diag.Diagnostics) bool {
	if c != nil {
		return true
	}
	diags.AddError("Provider not configured",
		"The isolation provider's settings (endpoint, token, ...) are still unknown, so it cannot call the API. "+
			"This happens when they come from a resource that is not created yet: apply that resource first "+
			"(for example with -target), then apply again.")
	return false
}
