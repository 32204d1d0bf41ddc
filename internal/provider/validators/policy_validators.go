package validators

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/policyrules"
)

// PolicyPeer checks one peer of an ingress or egress (egress true) rule
// with apiv1.ValidatePeer: exactly one of cidr, environment_selector and
// fqdn, canonical CIDRs, every except strictly inside its cidr, and fqdn
// a host name or pattern on egress only. A peer with an unknown part is
// checked once it is known.
func PolicyPeer(egress bool) validator.Object {
	return apiObject[apiv1.Peer]{
		description: "must set exactly one of cidr, fqdn and the selectors (environment_selector, project_selector or both); selectors follow Kubernetes label selectors; cidr and except must be canonical CIDR prefixes, each except strictly inside cidr; fqdn, on egress only, a host name or *.domain",
		convert:     policyrules.PeerFromObject,
		check:       func(field string, p apiv1.Peer) []apiv1.FieldError { return apiv1.ValidatePeer(field, p, egress) },
	}
}

// PolicySelector checks a policy's own environment_selector with
// apiv1.ValidateSelector: label syntax, and match_expressions with
// Kubernetes' rules (a known operator, values for In and NotIn and none
// for Exists and DoesNotExist). Peer selectors are checked by PolicyPeer.
func PolicySelector() validator.Object {
	return apiObject[apiv1.Selector]{
		description: "match_labels and match_expressions follow Kubernetes label selectors: In and NotIn need values, Exists and DoesNotExist take none",
		convert:     policyrules.SelectorFromObject,
		check:       apiv1.ValidateSelector,
	}
}

// PolicyPort checks one port of a policy rule with apiv1.ValidatePort:
// a known protocol, port and end_port between 1 and 65535, end_port at
// least port, and no port for icmp.
func PolicyPort() validator.Object {
	return apiObject[apiv1.Port]{
		description: "protocol must be tcp, udp, sctp or icmp; port and end_port between 1 and 65535, end_port at least port, or port_name a port name instead; icmp takes no port",
		convert:     policyrules.PortFromObject,
		check:       apiv1.ValidatePort,
	}
}

// apiObject runs an apiv1 rule on a nested object and reports each error on
// the attribute it names.
type apiObject[T any] struct {
	description string
	convert     func(context.Context, types.Object) (T, bool, diag.Diagnostics)
	check       func(field string, v T) []apiv1.FieldError
}

func (v apiObject[T]) Description(context.Context) string         { return v.description }
func (v apiObject[T]) MarkdownDescription(context.Context) string { return v.description }

func (v apiObject[T]) ValidateObject(ctx context.Context, req validator.ObjectRequest, resp *validator.ObjectResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	obj, known, diags := v.convert(ctx, req.ConfigValue)
	if resp.Diagnostics.Append(diags...); !known {
		return // an unknown part: checked again once known
	}
	for _, fe := range v.check("", obj) {
		addFieldError(&resp.Diagnostics, req.Path, req.ConfigValue, fe)
	}
}

// PolicyPortsDistinct rejects a ports set that lists the same port twice
// once protocol takes its default: `{ port = 443 }` and `{ protocol =
// "tcp", port = 443 }` are different in HCL but the same port, and the
// planned set would have fewer elements than the configuration.
func PolicyPortsDistinct() validator.Set { return portsDistinct{} }

type portsDistinct struct{}

func (portsDistinct) Description(context.Context) string {
	return "must not list the same port twice (protocol defaults to tcp)"
}

func (p portsDistinct) MarkdownDescription(ctx context.Context) string { return p.Description(ctx) }

func (portsDistinct) ValidateSet(ctx context.Context, req validator.SetRequest, resp *validator.SetResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	var elems []types.Object
	if resp.Diagnostics.Append(req.ConfigValue.ElementsAs(ctx, &elems, false)...); resp.Diagnostics.HasError() {
		return
	}
	seen := map[string]bool{}
	for _, elem := range elems {
		port, known, diags := policyrules.PortFromObject(ctx, elem)
		if resp.Diagnostics.Append(diags...); !known {
			continue
		}
		key := port.Protocol
		if port.Port != nil {
			key += fmt.Sprintf(" port %d", *port.Port)
		}
		if port.EndPort != nil {
			key += fmt.Sprintf("-%d", *port.EndPort)
		}
		if port.PortName != "" {
			key += " port " + port.PortName
		}
		if seen[key] {
			resp.Diagnostics.AddAttributeError(req.Path, "Invalid "+lastName(req.Path),
				fmt.Sprintf("%s lists %s twice (protocol defaults to tcp): remove one.", HumanPath(req.Path), key))
		}
		seen[key] = true
	}
}

// PolicyTypes checks a policy's policy_types with apiv1.ValidatePolicyTypes:
// not empty, and only "ingress" and "egress".
func PolicyTypes() validator.Set { return policyTypes{} }

type policyTypes struct{}

func (policyTypes) Description(context.Context) string {
	return `must list "ingress", "egress" or both`
}

func (p policyTypes) MarkdownDescription(ctx context.Context) string { return p.Description(ctx) }

func (policyTypes) ValidateSet(ctx context.Context, req validator.SetRequest, resp *validator.SetResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	listed, known, diags := policyrules.StringsFromSet(ctx, req.ConfigValue)
	if resp.Diagnostics.Append(diags...); !known {
		return
	}
	for _, fe := range apiv1.ValidatePolicyTypes("", listed) {
		addFieldError(&resp.Diagnostics, req.Path, req.ConfigValue, fe)
	}
}

// NotEmptySet rejects an empty set where leaving the attribute out means
// the same thing: the API answers both with an empty list, so allowing
// both would make Terraform see a change that is not one. hint says what
// leaving it out means, e.g. "omit ports to allow every port".
func NotEmptySet(hint string) validator.Set { return notEmpty{hint: hint} }

// NotEmptyMap is NotEmptySet for maps.
func NotEmptyMap(hint string) validator.Map { return notEmpty{hint: hint} }

// NotEmptyList is NotEmptySet for lists.
func NotEmptyList(hint string) validator.List { return notEmpty{hint: hint} }

// NotEmptyString is NotEmptySet for a string the API answers "" as absent.
func NotEmptyString(hint string) validator.String { return notEmpty{hint: hint} }

type notEmpty struct{ hint string }

func (v notEmpty) Description(context.Context) string {
	return "must not be empty: " + v.hint
}

func (v notEmpty) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v notEmpty) ValidateSet(_ context.Context, req validator.SetRequest, resp *validator.SetResponse) {
	v.check(req.Path, req.ConfigValue, len(req.ConfigValue.Elements()), &resp.Diagnostics)
}

func (v notEmpty) ValidateMap(_ context.Context, req validator.MapRequest, resp *validator.MapResponse) {
	v.check(req.Path, req.ConfigValue, len(req.ConfigValue.Elements()), &resp.Diagnostics)
}

func (v notEmpty) ValidateList(_ context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	v.check(req.Path, req.ConfigValue, len(req.ConfigValue.Elements()), &resp.Diagnostics)
}

func (v notEmpty) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	v.check(req.Path, req.ConfigValue, len(req.ConfigValue.ValueString()), &resp.Diagnostics)
}

// check is every kind: a known value of n elements (bytes for a string) must have some.
func (v notEmpty) check(p path.Path, value attr.Value, n int, diags *diag.Diagnostics) {
	if !value.IsNull() && !value.IsUnknown() && n == 0 {
		diags.AddAttributeError(p, "Invalid "+lastName(p), fmt.Sprintf("%s must not be empty: %s.", HumanPath(p), v.hint))
	}
}

// PolicyRulesMatchTypes rejects ingress (egress) rules in a policy whose
// policy_types does not list ingress (egress): the server would refuse
// them, because such rules would silently do nothing.
func PolicyRulesMatchTypes() resource.ConfigValidator { return rulesMatchTypes{} }

type rulesMatchTypes struct{}

func (rulesMatchTypes) Description(context.Context) string {
	return "ingress and egress rules need their direction in policy_types"
}

func (r rulesMatchTypes) MarkdownDescription(ctx context.Context) string { return r.Description(ctx) }

func (rulesMatchTypes) ValidateResource(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var typesSet types.Set
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("policy_types"), &typesSet)...)
	if resp.Diagnostics.HasError() {
		return
	}
	listed, known, diags := policyrules.StringsFromSet(ctx, typesSet)
	if resp.Diagnostics.Append(diags...); !known {
		return
	}
	for _, dir := range []policyrules.Direction{policyrules.Ingress, policyrules.Egress} {
		var rules types.Set
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(dir.Name), &rules)...)
		if rules.IsNull() || slices.Contains(listed, dir.Name) {
			continue
		}
		resp.Diagnostics.AddAttributeError(path.Root(dir.Name), "Invalid "+dir.Name,
			fmt.Sprintf("%s rules take effect only when policy_types contains %q: add it to policy_types or remove the %s rules.", dir.Name, dir.Name, dir.Name))
	}
}

// PolicyLimits rejects a policy past the per-policy limits of rules,
// peers, ports and except entries (apiv1.ValidatePolicyLimits), counted
// over both directions, on the first rule, peer, port or except past the
// limit.
func PolicyLimits() resource.ConfigValidator { return policyLimits{} }

type policyLimits struct{}

func (policyLimits) Description(context.Context) string {
	return fmt.Sprintf("a policy has at most %d rules, %d peers, %d ports and %d except entries, ingress and egress together",
		apiv1.MaxRulesPerPolicy, apiv1.MaxPeersPerPolicy, apiv1.MaxPortsPerPolicy, apiv1.MaxExceptsPerPolicy)
}

func (l policyLimits) MarkdownDescription(ctx context.Context) string { return l.Description(ctx) }

func (policyLimits) ValidateResource(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	sets := map[string]attr.Value{}
	var ingress, egress []policyrules.Rule
	for _, dir := range []policyrules.Direction{policyrules.Ingress, policyrules.Egress} {
		var rules types.Set
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(dir.Name), &rules)...)
		if resp.Diagnostics.HasError() {
			return
		}
		got, known, diags := dir.Rules(ctx, rules)
		if resp.Diagnostics.Append(diags...); !known {
			return // an unknown part: checked again once known
		}
		sets[dir.Name] = rules
		if dir == policyrules.Ingress {
			ingress = got
		} else {
			egress = got
		}
	}
	attrTypes := map[string]attr.Type{policyrules.Ingress.Name: policyrules.Ingress.SetType(), policyrules.Egress.Name: policyrules.Egress.SetType()}
	config := types.ObjectValueMust(attrTypes, sets)
	for _, fe := range apiv1.ValidatePolicyLimits("", policyrules.APIIngress(ingress), policyrules.APIEgress(egress)) {
		addFieldError(&resp.Diagnostics, path.Empty(), config, fe)
	}
}

// addFieldError reports an apiv1 FieldError on the Terraform attribute it
// names. The error's field is a JSON path relative to value, which sits at
// base; a list index in it is an index into a set's elements in the order
// policyrules read them, so it resolves to that element.
func addFieldError(diags *diag.Diagnostics, base path.Path, value attr.Value, fe apiv1.FieldError) {
	p, v := resolveField(base, value, fe.Field)
	detail := HumanPath(p) + " " + fe.Message
	switch v := v.(type) {
	case types.String:
		detail += fmt.Sprintf(", got %q", v.ValueString())
	case types.Int64:
		detail += fmt.Sprintf(", got %d", v.ValueInt64())
	}
	diags.AddAttributeError(p, "Invalid "+lastName(p), detail+".")
}

// resolveField walks field ("ingress[0].from[1].cidr", `labels["k"]`)
// from base and value, returning the attribute path and value it names.
// It stops where the field no longer matches the value.
func resolveField(base path.Path, value attr.Value, field string) (path.Path, attr.Value) {
	for field != "" {
		field = strings.TrimPrefix(field, ".")
		if !strings.HasPrefix(field, "[") {
			end := strings.IndexAny(field, ".[")
			if end < 0 {
				end = len(field)
			}
			name := field[:end]
			obj, ok := value.(types.Object)
			if !ok {
				return base, value
			}
			base, value, field = base.AtName(name), obj.Attributes()[name], field[end:]
			continue
		}
		end := strings.Index(field, "]")
		if end < 0 {
			return base, value
		}
		sub := field[1:end]
		field = field[end+1:]
		if key, err := strconv.Unquote(sub); err == nil {
			m, ok := value.(types.Map)
			if !ok {
				return base, value
			}
			base, value = base.AtMapKey(key), m.Elements()[key]
			continue
		}
		i, err := strconv.Atoi(sub)
		if err != nil {
			return base, value
		}
		switch c := value.(type) {
		case types.Set:
			if i >= len(c.Elements()) {
				return base, value
			}
			value = c.Elements()[i]
			base = base.AtSetValue(value)
		case types.List:
			if i >= len(c.Elements()) {
				return base, value
			}
			base, value = base.AtListIndex(i), c.Elements()[i]
		default:
			return base, value
		}
	}
	return base, value
}

// lastName is the last attribute name in p ("cidr" in ingress.from.cidr).
func lastName(p path.Path) string {
	steps := p.Steps()
	for i := len(steps) - 1; i >= 0; i-- {
		if name, ok := steps[i].(path.PathStepAttributeName); ok {
			return string(name)
		}
	}
	return "value"
}

// HumanPath writes an attribute path the way a user reads their HCL:
// attribute names joined by dots, map keys and list indexes in brackets,
// and set elements (which have no index) left out, as in
// "ingress.from.cidr".
func HumanPath(p path.Path) string {
	var b strings.Builder
	for _, step := range p.Steps() {
		switch s := step.(type) {
		case path.PathStepAttributeName:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(string(s))
		case path.PathStepElementKeyString:
			fmt.Fprintf(&b, "[%q]", string(s))
		case path.PathStepElementKeyInt:
			fmt.Fprintf(&b, "[%d]", int64(s))
		}
	}
	return b.String()
}
