package validators

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Labels checks an object's label map (keys and values) with
// apiv1.ValidateLabels; each error points at the offending entry.
func Labels() validator.Map {
	return labels{check: apiv1.ValidateLabels, most: apiv1.MaxLabels}
}

// SelectorLabels checks a selector's match_labels with
// apiv1.ValidateSelectorLabels.
func SelectorLabels() validator.Map {
	return labels{check: apiv1.ValidateSelectorLabels, most: apiv1.MaxSelectorLabels}
}

type labels struct {
	check func(field string, m map[string]string) []apiv1.FieldError
	most  int
}

func (l labels) Description(context.Context) string {
	return fmt.Sprintf("at most %d labels of at most %d bytes together; keys must be label keys (an optional DNS subdomain prefix and '/', then a name of up to 63 characters) and values empty or up to 63 characters", l.most, apiv1.MaxLabelBytes)
}

func (l labels) MarkdownDescription(ctx context.Context) string { return l.Description(ctx) }

func (l labels) ValidateMap(_ context.Context, req validator.MapRequest, resp *validator.MapResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	known := map[string]string{}
	for k, v := range req.ConfigValue.Elements() {
		s, ok := v.(types.String)
		// Unknown values are checked once known; keys are always known.
		if !ok || s.IsUnknown() || s.IsNull() {
			known[k] = ""
			continue
		}
		known[k] = s.ValueString()
	}
	for _, fe := range l.check("", known) {
		if fe.Field == "" {
			// A limit on the whole map.
			resp.Diagnostics.AddAttributeError(req.Path, "Invalid "+lastName(req.Path), HumanPath(req.Path)+" "+fe.Message+".")
			continue
		}
		// apiv1 names an entry `["key"]`, the key quoted.
		key, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(fe.Field, "["), "]"))
		if err != nil {
			key = fe.Field
		}
		resp.Diagnostics.AddAttributeError(req.Path.AtMapKey(key), "Invalid label",
			"Label "+strconv.Quote(key)+": "+fe.Message+".")
	}
}
