// Package validators holds the provider's plan-time attribute validators.
// Most wrap the API's own rules in internal/apiv1, so Terraform rejects at
// plan time exactly what the server would reject at apply time, with the
// same message, on the attribute path the user wrote.
package validators

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// StringCheck is the shape of apiv1's string rules, such as apiv1.ValidateName.
type StringCheck func(field, v string) []apiv1.FieldError

// APIString runs an apiv1 string rule on a known string value.
func APIString(description string, check StringCheck) validator.String {
	return apiString{description: description, check: check}
}

// Name checks an object name: a DNS label.
func Name() validator.String {
	return APIString("must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", apiv1.ValidateName)
}

// ID checks an attribute that names an object by its id (project_id,
// environment_id, a data source's id): it must not be empty. Whether the
// object exists is the server's to say.
func ID() validator.String { return stringvalidator.LengthAtLeast(1) }

// Role checks a token's role: one of apiv1.Roles.
func Role() validator.String { return stringvalidator.OneOf(apiv1.Roles...) }

// State checks an environment state filter: one of apiv1.States.
func State() validator.String { return stringvalidator.OneOf(apiv1.States...) }

// Description checks a free-text description's length.
func Description() validator.String {
	return APIString(fmt.Sprintf("must be at most %d characters", apiv1.MaxDescriptionLength), apiv1.ValidateDescription)
}

type apiString struct {
	description string
	check       StringCheck
}

func (v apiString) Description(context.Context) string         { return v.description }
func (v apiString) MarkdownDescription(context.Context) string { return v.description }

func (v apiString) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	for _, fe := range v.check("", req.ConfigValue.ValueString()) {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid "+attrName(req.Path),
			fmt.Sprintf("%s %s, got %q.", attrName(req.Path), fe.Message, req.ConfigValue.ValueString()))
	}
}

// attrName is the attribute path as a user writes it, such as
// resources.cpu_millis: Terraform points at the block, not at a nested
// attribute, so the message itself must say which one.
func attrName(p path.Path) string {
	if s := p.String(); s != "" {
		return s
	}
	return "value"
}
