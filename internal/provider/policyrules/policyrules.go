// Package policyrules maps a network policy's selectors, peers, ports and
// rules between Terraform values and the API v1 wire types.
//
// Rules, peers, ports, except lists and policy types are sets in Terraform:
// their order means nothing to the API, so reordering them in HCL must not
// produce a diff. An empty collection and an absent one mean the same to
// the API ("any peer", "any port"), so the API's empty lists are always read
// back as null, and the schema rejects empty sets in configuration (see
// package validators) so that the two can never disagree.
package policyrules

import (
	"fmt"
	"slices"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Attribute names shared by the schemas and the conversions.
const (
	AttrMatchLabels         = "match_labels"
	AttrCIDR                = "cidr"
	AttrExcept              = "except"
	AttrEnvironmentSelector = "environment_selector"
	AttrProtocol            = "protocol"
	AttrPort                = "port"
	AttrEndPort             = "end_port"
	AttrPorts               = "ports"
)

// Object types of the nested attributes. They are what the resource's and
// the data sources' schemas produce, so values built here fit both.
var (
	SelectorType = types.ObjectType{AttrTypes: map[string]attr.Type{
		AttrMatchLabels: types.MapType{ElemType: types.StringType},
	}}
	PeerType = types.ObjectType{AttrTypes: map[string]attr.Type{
		AttrCIDR:                types.StringType,
		AttrExcept:              types.SetType{ElemType: types.StringType},
		AttrEnvironmentSelector: SelectorType,
	}}
	PortType = types.ObjectType{AttrTypes: map[string]attr.Type{
		AttrProtocol: types.StringType,
		AttrPort:     types.Int64Type,
		AttrEndPort:  types.Int64Type,
	}}
)

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
		return types.ObjectValueMust(d.RuleType().AttrTypes, map[string]attr.Value{
			d.PeersAttr: PeersValue(r.Peers),
			AttrPorts:   PortsValue(r.Ports),
		})
	})
}

// Rules returns the rules in the policy attribute of d. It fails when any
// part is unknown, which cannot happen once Terraform applies a plan.
func (d Direction) Rules(s types.Set) ([]Rule, diag.Diagnostics) {
	var diags diag.Diagnostics
	if s.IsUnknown() {
		diags.AddError("Unknown policy rules", fmt.Sprintf("The %s rules are not known yet; this is a bug in the provider when it happens during apply.", d.Name))
		return nil, diags
	}
	var rules []Rule
	for _, elem := range s.Elements() {
		r, ok := d.rule(elem)
		if !ok {
			diags.AddError("Unknown policy rule", fmt.Sprintf("A %s rule is not known yet; this is a bug in the provider when it happens during apply.", d.Name))
			return nil, diags
		}
		rules = append(rules, r)
	}
	return rules, diags
}

func (d Direction) rule(v attr.Value) (Rule, bool) {
	obj, ok := v.(types.Object)
	if !ok || obj.IsUnknown() {
		return Rule{}, false
	}
	attrs := obj.Attributes()
	peers, ok := fromSet(attrs[d.PeersAttr], PeerFromObject)
	if !ok {
		return Rule{}, false
	}
	ports, ok := fromSet(attrs[AttrPorts], PortFromObject)
	if !ok {
		return Rule{}, false
	}
	return Rule{Peers: peers, Ports: ports}, true
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

// SelectorValue returns a selector as an object whose match_labels is null
// when the selector has no labels (it then selects every environment).
func SelectorValue(s apiv1.Selector) types.Object {
	labels := types.MapNull(types.StringType)
	if len(s.MatchLabels) > 0 {
		elems := make(map[string]attr.Value, len(s.MatchLabels))
		for k, v := range s.MatchLabels {
			elems[k] = types.StringValue(v)
		}
		labels = types.MapValueMust(types.StringType, elems)
	}
	return types.ObjectValueMust(SelectorType.AttrTypes, map[string]attr.Value{AttrMatchLabels: labels})
}

// SelectorFromObject returns the selector an object holds; a null object
// or null match_labels is the empty selector. ok is false when any part is
// unknown.
func SelectorFromObject(o types.Object) (s apiv1.Selector, ok bool) {
	s.MatchLabels = map[string]string{}
	if o.IsUnknown() {
		return s, false
	}
	if o.IsNull() {
		return s, true
	}
	m, ok := o.Attributes()[AttrMatchLabels].(types.Map)
	if !ok || m.IsUnknown() {
		return s, false
	}
	for k, v := range m.Elements() {
		sv, ok := v.(types.String)
		if !ok || sv.IsUnknown() {
			return s, false
		}
		s.MatchLabels[k] = sv.ValueString()
	}
	return s, true
}

// PeerValue returns a peer as an object.
func PeerValue(p apiv1.Peer) attr.Value {
	cidr := types.StringNull()
	if p.CIDR != "" {
		cidr = types.StringValue(p.CIDR)
	}
	selector := types.ObjectNull(SelectorType.AttrTypes)
	if p.EnvironmentSelector != nil {
		selector = SelectorValue(*p.EnvironmentSelector)
	}
	return types.ObjectValueMust(PeerType.AttrTypes, map[string]attr.Value{
		AttrCIDR:                cidr,
		AttrExcept:              setOrNull(types.StringType, p.Except, func(s string) attr.Value { return types.StringValue(s) }),
		AttrEnvironmentSelector: selector,
	})
}

// PeerFromObject returns the peer an object holds. ok is false when any
// part is unknown. Except keeps the order of the set's elements, so an
// index into it names an element of the set.
func PeerFromObject(v attr.Value) (p apiv1.Peer, ok bool) {
	obj, isObj := v.(types.Object)
	if !isObj || obj.IsUnknown() || obj.IsNull() {
		return p, false
	}
	attrs := obj.Attributes()
	cidr, ok := attrs[AttrCIDR].(types.String)
	if !ok || cidr.IsUnknown() {
		return p, false
	}
	p.CIDR = cidr.ValueString()
	if p.Except, ok = fromSet(attrs[AttrExcept], stringFromValue); !ok {
		return p, false
	}
	sel, ok := attrs[AttrEnvironmentSelector].(types.Object)
	if !ok || sel.IsUnknown() {
		return p, false
	}
	if !sel.IsNull() {
		s, ok := SelectorFromObject(sel)
		if !ok {
			return p, false
		}
		p.EnvironmentSelector = &s
	}
	return p, true
}

// PeersValue returns peers as a set, null when there are none (any peer).
func PeersValue(peers []apiv1.Peer) types.Set { return setOrNull(PeerType, peers, PeerValue) }

// PortsValue returns ports as a set, null when there are none (every port).
func PortsValue(ports []apiv1.Port) types.Set { return setOrNull(PortType, ports, PortValue) }

// PortValue returns a port as an object.
func PortValue(p apiv1.Port) attr.Value {
	return types.ObjectValueMust(PortType.AttrTypes, map[string]attr.Value{
		AttrProtocol: types.StringValue(cmpOr(p.Protocol, apiv1.ProtocolTCP)),
		AttrPort:     int64OrNull(p.Port),
		AttrEndPort:  int64OrNull(p.EndPort),
	})
}

// PortFromObject returns the port an object holds; a null protocol is tcp.
// ok is false when any part is unknown.
func PortFromObject(v attr.Value) (p apiv1.Port, ok bool) {
	obj, isObj := v.(types.Object)
	if !isObj || obj.IsUnknown() || obj.IsNull() {
		return p, false
	}
	attrs := obj.Attributes()
	proto, ok1 := attrs[AttrProtocol].(types.String)
	port, ok2 := attrs[AttrPort].(types.Int64)
	end, ok3 := attrs[AttrEndPort].(types.Int64)
	if !ok1 || !ok2 || !ok3 || proto.IsUnknown() || port.IsUnknown() || end.IsUnknown() {
		return p, false
	}
	p.Protocol = cmpOr(proto.ValueString(), apiv1.ProtocolTCP)
	p.Port = intOrNil(port)
	p.EndPort = intOrNil(end)
	return p, true
}

// StringsFromSet returns the strings of a set of strings, in the set's
// element order. ok is false when the set or an element is unknown.
func StringsFromSet(v attr.Value) ([]string, bool) { return fromSet(v, stringFromValue) }

// StringSetValue returns strs as a set, null when empty.
func StringSetValue(strs []string) types.Set {
	return setOrNull(types.StringType, strs, func(s string) attr.Value { return types.StringValue(s) })
}

// MapFromValue returns the string map a map value holds (nil when null).
// ok is false when it or an element is unknown.
func MapFromValue(v types.Map) (map[string]string, bool) {
	if v.IsUnknown() {
		return nil, false
	}
	if v.IsNull() {
		return nil, true
	}
	out := make(map[string]string, len(v.Elements()))
	for k, e := range v.Elements() {
		s, ok := e.(types.String)
		if !ok || s.IsUnknown() {
			return nil, false
		}
		out[k] = s.ValueString()
	}
	return out, true
}

func fromSet[T any](v attr.Value, conv func(attr.Value) (T, bool)) ([]T, bool) {
	s, ok := v.(types.Set)
	if !ok || s.IsUnknown() {
		return nil, false
	}
	var out []T
	for _, e := range s.Elements() {
		t, ok := conv(e)
		if !ok {
			return nil, false
		}
		out = append(out, t)
	}
	return out, true
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

func stringFromValue(v attr.Value) (string, bool) {
	s, ok := v.(types.String)
	if !ok || s.IsUnknown() {
		return "", false
	}
	return s.ValueString(), true
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
