// Package policyrules maps a network policy's selectors, peers, ports and
// rules between Terraform values and the API v1 wire types. Each nested
// object has a tfsdk-tagged struct (Selector, Peer, Port, IngressRule,
// EgressRule); values are built with types.ObjectValueFrom and read back
// with As and ElementsAs, never by walking attr.Value by hand.
//
// Rules, peers, ports, except lists and policy types are sets in Terraform:
// their order means nothing to the API, so reordering them in HCL must not
// produce a diff. An empty collection and an absent one mean the same to
// the API ("any peer", "any port"), so the API's empty lists are always read
// back as null, and the schema rejects empty sets in configuration (see
// package validators) so that the two can never disagree.
//
// Reading a value that is not known yet (at plan time) answers known=false
// rather than an error: validators check it again once it is known, and
// only the resource's apply, where it cannot happen, turns it into an error.
package policyrules

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Attribute names shared by the schemas and the structs' tfsdk tags.
const (
	AttrMatchLabels         = "match_labels"
	AttrMatchExpressions    = "match_expressions"
	AttrKey                 = "key"
	AttrOperator            = "operator"
	AttrValues              = "values"
	AttrProjectSelector     = "project_selector"
	AttrPortName            = "port_name"
	AttrCIDR                = "cidr"
	AttrExcept              = "except"
	AttrEnvironmentSelector = "environment_selector"
	AttrFQDN                = "fqdn"
	AttrProtocol            = "protocol"
	AttrPort                = "port"
	AttrEndPort             = "end_port"
	AttrPorts               = "ports"
)

// Object types of the nested attributes. They are what the resource's and
// the data sources' schemas produce, so values built here fit both.
var (
	ExpressionType = types.ObjectType{AttrTypes: map[string]attr.Type{
		AttrKey:      types.StringType,
		AttrOperator: types.StringType,
		AttrValues:   types.SetType{ElemType: types.StringType},
	}}
	SelectorType = types.ObjectType{AttrTypes: map[string]attr.Type{
		AttrMatchLabels:      types.MapType{ElemType: types.StringType},
		AttrMatchExpressions: types.ListType{ElemType: ExpressionType},
	}}
	PeerType = types.ObjectType{AttrTypes: map[string]attr.Type{
		AttrCIDR:                types.StringType,
		AttrExcept:              types.SetType{ElemType: types.StringType},
		AttrEnvironmentSelector: SelectorType,
		AttrProjectSelector:     SelectorType,
		AttrFQDN:                types.StringType,
	}}
	PortType = types.ObjectType{AttrTypes: map[string]attr.Type{
		AttrProtocol: types.StringType,
		AttrPort:     types.Int64Type,
		AttrEndPort:  types.Int64Type,
		AttrPortName: types.StringType,
	}}
)

// Selector is an environment_selector or project_selector object.
type Selector struct {
	MatchLabels      types.Map  `tfsdk:"match_labels"`
	MatchExpressions types.List `tfsdk:"match_expressions"`
}

// Expression is one match_expressions object.
type Expression struct {
	Key      types.String `tfsdk:"key"`
	Operator types.String `tfsdk:"operator"`
	Values   types.Set    `tfsdk:"values"`
}

// Peer is one peer of a rule: a CIDR (with except), environment and
// project selectors, or a host name or pattern.
type Peer struct {
	CIDR                types.String `tfsdk:"cidr"`
	Except              types.Set    `tfsdk:"except"`
	EnvironmentSelector types.Object `tfsdk:"environment_selector"`
	ProjectSelector     types.Object `tfsdk:"project_selector"`
	FQDN                types.String `tfsdk:"fqdn"`
}

// Port is one port (or range, or named port) of a rule.
type Port struct {
	Protocol types.String `tfsdk:"protocol"`
	Port     types.Int64  `tfsdk:"port"`
	EndPort  types.Int64  `tfsdk:"end_port"`
	PortName types.String `tfsdk:"port_name"`
}

// IngressRule is one object of a policy's ingress set.
type IngressRule struct {
	From  types.Set `tfsdk:"from"`
	Ports types.Set `tfsdk:"ports"`
}

// EgressRule is one object of a policy's egress set.
type EgressRule struct {
	To    types.Set `tfsdk:"to"`
	Ports types.Set `tfsdk:"ports"`
}

// Direction is ingress or egress: the two differ only in the name of the
// attribute that holds a rule's peers.
type Direction struct {
	Name      string // "ingress" or "egress": the policy attribute and policy type
	PeersAttr string // "from" or "to"
}

// The two directions.
var (
	Ingress = Direction{Name: apiv1.Ingress, PeersAttr: "from"}
	Egress  = Direction{Name: apiv1.Egress, PeersAttr: "to"}
)

// Rule is a rule of either direction: traffic with any of Peers on any of Ports.
type Rule struct {
	Peers []apiv1.Peer
	Ports []apiv1.Port
}

// RuleType is the object type of one rule of direction d.
func (d Direction) RuleType() types.ObjectType {
	return types.ObjectType{AttrTypes: map[string]attr.Type{
		d.PeersAttr: types.SetType{ElemType: PeerType},
		AttrPorts:   types.SetType{ElemType: PortType},
	}}
}

// SetType is the type of the policy attribute holding the rules of d.
func (d Direction) SetType() types.SetType { return types.SetType{ElemType: d.RuleType()} }

// SetValue returns rules as the value of the policy attribute of d; no
// rules is null.
func (d Direction) SetValue(rules []Rule) types.Set {
	return setOrNull(d.RuleType(), rules, func(r Rule) attr.Value {
		peers, ports := PeersValue(r.Peers), PortsValue(r.Ports)
		if d == Ingress {
			return objectValue(d.RuleType(), IngressRule{From: peers, Ports: ports})
		}
		return objectValue(d.RuleType(), EgressRule{To: peers, Ports: ports})
	})
}

// Rules returns the rules in the policy attribute of d, in the set's
// element order. known is false when any part is unknown.
func (d Direction) Rules(ctx context.Context, s types.Set) (rules []Rule, known bool, diags diag.Diagnostics) {
	objs, known, diags := elements[types.Object](ctx, s)
	if !known {
		return nil, false, diags
	}
	for _, o := range objs {
		peers, ports, ok, ds := d.parts(ctx, o)
		diags.Append(ds...)
		if !ok {
			return nil, false, diags
		}
		var r Rule
		if r.Peers, known, diags = collect(ctx, peers, PeerFromObject, diags); !known {
			return nil, false, diags
		}
		if r.Ports, known, diags = collect(ctx, ports, PortFromObject, diags); !known {
			return nil, false, diags
		}
		rules = append(rules, r)
	}
	return rules, true, diags
}

// parts reads a rule object of d into its struct and answers its peers
// and ports.
func (d Direction) parts(ctx context.Context, o types.Object) (peers, ports types.Set, known bool, diags diag.Diagnostics) {
	if d == Ingress {
		r, known, diags := as[IngressRule](ctx, o)
		return r.From, r.Ports, known, diags
	}
	r, known, diags := as[EgressRule](ctx, o)
	return r.To, r.Ports, known, diags
}

// IngressRules converts API ingress rules to Rules.
func IngressRules(rules []apiv1.IngressRule) []Rule {
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		out = append(out, Rule{Peers: r.From, Ports: r.Ports})
	}
	return out
}

// EgressRules converts API egress rules to Rules.
func EgressRules(rules []apiv1.EgressRule) []Rule {
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		out = append(out, Rule{Peers: r.To, Ports: r.Ports})
	}
	return out
}

// APIIngress converts Rules to API ingress rules, never nil.
func APIIngress(rules []Rule) []apiv1.IngressRule {
	out := make([]apiv1.IngressRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, apiv1.IngressRule{From: nonNil(r.Peers), Ports: nonNil(r.Ports)})
	}
	return out
}

// APIEgress converts Rules to API egress rules, never nil.
func APIEgress(rules []Rule) []apiv1.EgressRule {
	out := make([]apiv1.EgressRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, apiv1.EgressRule{To: nonNil(r.Peers), Ports: nonNil(r.Ports)})
	}
	return out
}

// SelectorValue returns a selector as an object whose match_labels and
// match_expressions are null when it has none (with neither, it selects
// everything).
func SelectorValue(s apiv1.Selector) types.Object {
	labels := types.MapNull(types.StringType)
	if len(s.MatchLabels) > 0 {
		labels, _ = types.MapValueFrom(context.Background(), types.StringType, s.MatchLabels) // a map of strings always converts
	}
	exprs := types.ListNull(ExpressionType)
	if len(s.MatchExpressions) > 0 {
		elems := make([]attr.Value, len(s.MatchExpressions))
		for i, r := range s.MatchExpressions {
			elems[i] = objectValue(ExpressionType, Expression{Key: types.StringValue(r.Key), Operator: types.StringValue(r.Operator), Values: StringSetValue(r.Values)})
		}
		exprs = types.ListValueMust(ExpressionType, elems)
	}
	return objectValue(SelectorType, Selector{MatchLabels: labels, MatchExpressions: exprs})
}

// selectorOrNull is a possibly absent peer selector as an object.
func selectorOrNull(s *apiv1.Selector) types.Object {
	if s == nil {
		return types.ObjectNull(SelectorType.AttrTypes)
	}
	return SelectorValue(*s)
}

// SelectorFromObject returns the selector an object holds; a null object
// or null match_labels is the empty selector. known is false when any part
// is unknown.
func SelectorFromObject(ctx context.Context, o types.Object) (s apiv1.Selector, known bool, diags diag.Diagnostics) {
	s.MatchLabels = map[string]string{}
	if o.IsNull() {
		return s, true, nil
	}
	sel, known, diags := as[Selector](ctx, o)
	if !known || sel.MatchLabels.IsUnknown() || sel.MatchExpressions.IsUnknown() {
		return s, false, diags
	}
	if s.MatchExpressions, known, diags = expressions(ctx, sel.MatchExpressions, diags); !known || sel.MatchLabels.IsNull() {
		return s, known, diags
	}
	var labels map[string]types.String
	if diags.Append(sel.MatchLabels.ElementsAs(ctx, &labels, false)...); diags.HasError() {
		return s, false, diags
	}
	for k, v := range labels {
		if v.IsUnknown() {
			return s, false, diags
		}
		s.MatchLabels[k] = v.ValueString()
	}
	return s, true, diags
}

// expressions reads a match_expressions list, in its order; known is
// false when any part is unknown.
func expressions(ctx context.Context, l types.List, diags diag.Diagnostics) ([]apiv1.SelectorRequirement, bool, diag.Diagnostics) {
	if l.IsNull() {
		return nil, true, diags
	}
	var objs []types.Object
	if diags.Append(l.ElementsAs(ctx, &objs, false)...); diags.HasError() {
		return nil, false, diags
	}
	out := make([]apiv1.SelectorRequirement, 0, len(objs))
	for _, o := range objs {
		x, known, ds := as[Expression](ctx, o)
		if diags.Append(ds...); !known || x.Key.IsUnknown() || x.Operator.IsUnknown() {
			return nil, false, diags
		}
		r := apiv1.SelectorRequirement{Key: x.Key.ValueString(), Operator: x.Operator.ValueString()}
		if r.Values, known, diags = collect(ctx, x.Values, stringFromValue, diags); !known {
			return nil, false, diags
		}
		out = append(out, r)
	}
	return out, true, diags
}

// PeerValue returns a peer as an object.
func PeerValue(p apiv1.Peer) types.Object { return objectValue(PeerType, PeerFromAPI(p)) }

// PeerFromAPI returns a peer as its struct, for objects that embed one;
// the API's "" CIDR is null.
func PeerFromAPI(p apiv1.Peer) Peer {
	return Peer{
		CIDR:                stringOrNull(p.CIDR),
		Except:              StringSetValue(p.Except),
		EnvironmentSelector: selectorOrNull(p.EnvironmentSelector),
		ProjectSelector:     selectorOrNull(p.ProjectSelector),
		FQDN:                stringOrNull(p.FQDN),
	}
}

// PeerFromObject returns the peer an object holds. known is false when any
// part is unknown. Except keeps the order of the set's elements, so an
// index into it names an element of the set.
func PeerFromObject(ctx context.Context, o types.Object) (p apiv1.Peer, known bool, diags diag.Diagnostics) {
	peer, known, diags := as[Peer](ctx, o)
	if !known || peer.CIDR.IsUnknown() || peer.EnvironmentSelector.IsUnknown() || peer.ProjectSelector.IsUnknown() || peer.FQDN.IsUnknown() {
		return p, false, diags
	}
	p.CIDR = peer.CIDR.ValueString()
	p.FQDN = peer.FQDN.ValueString()
	if p.Except, known, diags = collect(ctx, peer.Except, stringFromValue, diags); !known {
		return p, false, diags
	}
	for _, f := range []struct {
		o   types.Object
		dst **apiv1.Selector
	}{{peer.EnvironmentSelector, &p.EnvironmentSelector}, {peer.ProjectSelector, &p.ProjectSelector}} {
		if f.o.IsNull() {
			continue
		}
		s, known, ds := SelectorFromObject(ctx, f.o)
		if diags.Append(ds...); !known {
			return p, false, diags
		}
		*f.dst = &s
	}
	return p, true, diags
}

// PeersValue returns peers as a set, null when there are none (any peer).
func PeersValue(peers []apiv1.Peer) types.Set {
	return setOrNull(PeerType, peers, func(p apiv1.Peer) attr.Value { return PeerValue(p) })
}

// PortsValue returns ports as a set, null when there are none (every port).
func PortsValue(ports []apiv1.Port) types.Set {
	return setOrNull(PortType, ports, func(p apiv1.Port) attr.Value { return PortValue(p) })
}

// PortValue returns a port as an object.
func PortValue(p apiv1.Port) types.Object {
	return objectValue(PortType, Port{
		Protocol: types.StringValue(cmpOr(p.Protocol, apiv1.ProtocolTCP)),
		Port:     int64OrNull(p.Port),
		EndPort:  int64OrNull(p.EndPort),
		PortName: stringOrNull(p.PortName),
	})
}

// PortFromObject returns the port an object holds; a null protocol is tcp.
// known is false when any part is unknown.
func PortFromObject(ctx context.Context, o types.Object) (p apiv1.Port, known bool, diags diag.Diagnostics) {
	port, known, diags := as[Port](ctx, o)
	if !known || port.Protocol.IsUnknown() || port.Port.IsUnknown() || port.EndPort.IsUnknown() || port.PortName.IsUnknown() {
		return p, false, diags
	}
	p.PortName = port.PortName.ValueString()
	p.Protocol = cmpOr(port.Protocol.ValueString(), apiv1.ProtocolTCP)
	p.Port = intOrNil(port.Port)
	p.EndPort = intOrNil(port.EndPort)
	return p, true, diags
}

// StringsFromSet returns the strings of a set of strings, in the set's
// element order. known is false when the set or an element is unknown.
func StringsFromSet(ctx context.Context, s types.Set) ([]string, bool, diag.Diagnostics) {
	return collect(ctx, s, stringFromValue, nil)
}

// StringSetValue returns strs as a set, null when empty.
func StringSetValue(strs []string) types.Set {
	return setOrNull(types.StringType, strs, func(s string) attr.Value { return types.StringValue(s) })
}

// as reads an object into its struct T. known is false when the object is
// null or unknown, or does not fit T (then diags say why).
func as[T any](ctx context.Context, o types.Object) (v T, known bool, diags diag.Diagnostics) {
	if o.IsNull() || o.IsUnknown() {
		return v, false, nil
	}
	diags = o.As(ctx, &v, basetypes.ObjectAsOptions{})
	return v, !diags.HasError(), diags
}

// elements reads a set's elements into []T (T an attr.Value type, so that
// unknown elements read too). A null set has none; an unknown one is not
// read at all, as ElementsAs must never be asked to.
func elements[T any](ctx context.Context, s types.Set) ([]T, bool, diag.Diagnostics) {
	if s.IsNull() {
		return nil, true, nil
	}
	if s.IsUnknown() {
		return nil, false, nil
	}
	var out []T
	diags := s.ElementsAs(ctx, &out, false)
	return out, !diags.HasError(), diags
}

// collect converts each element of a set with conv, adding its
// diagnostics to diags; known is false when the set or an element is
// unknown.
func collect[E, T any](ctx context.Context, s types.Set, conv func(context.Context, E) (T, bool, diag.Diagnostics), diags diag.Diagnostics) ([]T, bool, diag.Diagnostics) {
	elems, known, ds := elements[E](ctx, s)
	if diags.Append(ds...); !known {
		return nil, false, diags
	}
	var out []T
	for _, e := range elems {
		t, known, ds := conv(ctx, e)
		if diags.Append(ds...); !known {
			return nil, false, diags
		}
		out = append(out, t)
	}
	return out, true, diags
}

// objectValue is types.ObjectValueFrom for this package's structs, whose
// tags match their object types by construction: like ObjectValueMust, it
// panics on a mismatch, which is a bug caught by any test.
func objectValue(t types.ObjectType, v any) types.Object {
	o, diags := types.ObjectValueFrom(context.Background(), t.AttrTypes, v)
	if diags.HasError() {
		panic(fmt.Sprintf("policyrules: %T does not fit %s: %v", v, t, diags))
	}
	return o
}

// setOrNull builds a set, dropping duplicates (a set holds each value once,
// and Terraform rejects a set value that repeats one).
func setOrNull[T any](elemType attr.Type, items []T, conv func(T) attr.Value) types.Set {
	if len(items) == 0 {
		return types.SetNull(elemType)
	}
	elems := make([]attr.Value, 0, len(items))
	for _, it := range items {
		v := conv(it)
		if !slices.ContainsFunc(elems, v.Equal) {
			elems = append(elems, v)
		}
	}
	return types.SetValueMust(elemType, elems)
}

func stringFromValue(_ context.Context, s types.String) (string, bool, diag.Diagnostics) {
	return s.ValueString(), !s.IsUnknown(), nil
}

func stringOrNull(s string) types.String {
	if s == "" {
		return types.StringNull()
	}
	return types.StringValue(s)
}

func int64OrNull(p *int) types.Int64 {
	if p == nil {
		return types.Int64Null()
	}
	return types.Int64Value(int64(*p))
}

func intOrNil(v types.Int64) *int {
	if v.IsNull() {
		return nil
	}
	i := int(v.ValueInt64())
	return &i
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
