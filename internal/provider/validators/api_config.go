package validators

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// APIConfig runs an apiv1 rule over a resource's whole configuration:
// check returns its field errors (known false while part of the
// configuration is unknown, to be checked again once known), and each is
// reported on the attribute its JSON path names.
func APIConfig(description string, check func(context.Context, tfsdk.Config) ([]apiv1.FieldError, bool, diag.Diagnostics)) resource.ConfigValidator {
	return apiConfig{description: description, check: check}
}

type apiConfig struct {
	description string
	check       func(context.Context, tfsdk.Config) ([]apiv1.FieldError, bool, diag.Diagnostics)
}

func (v apiConfig) Description(context.Context) string         { return v.description }
func (v apiConfig) MarkdownDescription(context.Context) string { return v.description }

func (v apiConfig) ValidateResource(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	fields, known, diags := v.check(ctx, req.Config)
	if resp.Diagnostics.Append(diags...); !known || len(fields) == 0 {
		return
	}
	var whole types.Object
	if resp.Diagnostics.Append(req.Config.Get(ctx, &whole)...); resp.Diagnostics.HasError() {
		return
	}
	for _, fe := range fields {
		addFieldError(&resp.Diagnostics, path.Empty(), whole, fe)
	}
}
