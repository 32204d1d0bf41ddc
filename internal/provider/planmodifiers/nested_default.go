package planmodifiers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// NestedStringDefault plans value for a string attribute nested inside a
// set of objects wherever the configuration leaves it null. names is the
// chain of attribute names from an element of the set down to the string;
// nested sets along the way are walked element by element, so
// NestedStringDefault("tcp", "ports", "protocol") on a set of rules fills
// the protocol of every port of every rule.
//
// It stands in for schema Default values, which the framework applies to
// set elements one path at a time: changing one element changes the
// identity of the set elements above it, so the next lookup misses and
// defaults land on the wrong elements (terraform-plugin-framework #783,
// #867). Filling the whole set at once has no such problem. The attribute
// must be Optional and Computed, and nothing else in the set Computed: the
// plan is the configuration with the defaults filled in.
func NestedStringDefault(value string, names ...string) planmodifier.Set {
	return nestedDefault{value: types.StringValue(value), names: names}
}

type nestedDefault struct {
	value types.String
	names []string
}

func (m nestedDefault) Description(context.Context) string {
	return fmt.Sprintf("%s defaults to %s.", strings.Join(m.names, "."), m.value)
}

func (m nestedDefault) MarkdownDescription(ctx context.Context) string { return m.Description(ctx) }

func (m nestedDefault) PlanModifySet(_ context.Context, req planmodifier.SetRequest, resp *planmodifier.SetResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	filled, err := m.fill(req.ConfigValue, m.names)
	if err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Unable to plan default values", err.Error()+"\n\nThis is a bug in the provider; please report it.")
		return
	}
	resp.PlanValue = filled.(types.Set)
}

// fill returns v with the default set at names where it is null. Unknown
// and null values stay as they are: the configuration decides them.
func (m nestedDefault) fill(v attr.Value, names []string) (attr.Value, error) {
	if v.IsNull() || v.IsUnknown() {
		return v, nil
	}
	switch v := v.(type) {
	case types.Set:
		var elems []attr.Value
		for _, e := range v.Elements() {
			f, err := m.fill(e, names)
			if err != nil {
				return nil, err
			}
			// Filling a default can make two elements equal; a set holds one.
			if !slices.ContainsFunc(elems, f.Equal) {
				elems = append(elems, f)
			}
		}
		s, diags := types.SetValue(v.ElementType(context.Background()), elems)
		if diags.HasError() {
			return nil, fmt.Errorf("rebuilding set: %v", diags)
		}
		return s, nil
	case types.Object:
		if len(names) == 0 {
			return nil, fmt.Errorf("reached an object, not the string attribute")
		}
		attrs := v.Attributes()
		cur, ok := attrs[names[0]]
		if !ok {
			return nil, fmt.Errorf("no attribute %q", names[0])
		}
		var next attr.Value
		if len(names) == 1 {
			if _, isString := cur.(types.String); !isString {
				return nil, fmt.Errorf("attribute %q is not a string", names[0])
			}
			next = cur
			if cur.IsNull() {
				next = m.value
			}
		} else {
			f, err := m.fill(cur, names[1:])
			if err != nil {
				return nil, err
			}
			next = f
		}
		out := maps.Clone(attrs)
		out[names[0]] = next
		o, diags := types.ObjectValue(v.AttributeTypes(context.Background()), out)
		if diags.HasError() {
			return nil, fmt.Errorf("rebuilding object: %v", diags)
		}
		return o, nil
	default:
		return nil, fmt.Errorf("cannot walk into %T", v)
	}
}
