package apiv1

// Validation of request bodies. The server calls it before touching the
// store and the Terraform provider calls it at plan time, so it is the one
// place where the API's input rules live; it is pure and uses the standard
// library only.

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on request fields.
const (
	MaxNameLength        = 63
	MaxDescriptionLength = 1024 // characters, not bytes
	MaxLabelNameLength   = 63
	MaxLabelPrefixLength = 253
	MaxLabelValueLength  = 63

	MinCPUMillis = 100
	MaxCPUMillis = 64000
	MinMemoryMB  = 64
	MaxMemoryMB  = 262144
	MinDiskGB    = 1
	MaxDiskGB    = 2048

	MaxTTLSeconds = 31536000 // one year

	MinPort = 1
	MaxPort = 65535
)

// Messages shared by several rules, so that the server, the provider and
// the tests say the same thing.
const (
	msgRequired    = "is required"
	msgName        = "must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
	msgLabelKey    = "key must be a label key: an optional DNS subdomain prefix and '/', then 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	msgLabelValue  = "value must be empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	msgProtocol    = "must be one of tcp, udp, sctp, icmp"
	msgDirection   = "must be one of ingress, egress"
	msgPortRange   = "must be between 1 and 65535"
	msgPolicyTypes = "must not be empty: list ingress, egress or both"
	msgPeerOneOf   = "must set exactly one of cidr, fqdn and the selectors (environment_selector, project_selector or both)"
	msgPortName    = "must be a port name (IANA_SVC_NAME): 1-15 lowercase letters, digits or '-', with at least one letter, not starting or ending with '-' and without '--'"
	msgCIDRSyntax  = "must be an IPv4 or IPv6 prefix in CIDR notation, such as 10.0.0.0/8 or 2001:db8::/32"
)

var (
	dnsLabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelNameRE = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	// hostLabelRE admits underscores, which real names use (_dmarc,
	// SRV owners) though RFC 1123 host names do not.
	hostLabelRE = regexp.MustCompile(`^[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?$`)
	subdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// errs collects FieldErrors; its zero value is ready to use and stays nil
// when nothing is added, so valid input yields a nil slice.
type errs []FieldError

func (e *errs) add(field, format string, args ...any) {
	*e = append(*e, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// path joins a JSON path and a child name; an empty parent lets the
// provider validate a single attribute without a body around it.
func path(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func index(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// mapKey is the JSON path of a map entry; the key is quoted because label
// keys may contain '.' and '/'.
func mapKey(parent, key string) string {
	return parent + "[" + strconv.Quote(key) + "]"
}

// ValidateName checks an object name: a DNS label (RFC 1123), as Kubernetes
// names namespaces, so it fits in host names and namespace names.
func ValidateName(field, v string) []FieldError {
	var e errs
	switch {
	case v == "":
		e.add(field, "%s; %s", msgRequired, msgName)
	case len(v) > MaxNameLength || !dnsLabelRE.MatchString(v):
		e.add(field, "%s", msgName)
	}
	return e
}

// ValidateDescription checks a free-text description.
func ValidateDescription(field, v string) []FieldError {
	var e errs
	if n := utf8.RuneCountInString(v); n > MaxDescriptionLength {
		e.add(field, "must be at most %d characters (got %d)", MaxDescriptionLength, n)
	}
	return e
}

// ValidateLabels checks a label map with Kubernetes' label syntax. Errors
// are reported in key order so that they are stable.
func ValidateLabels(field string, m map[string]string) []FieldError {
	return validateLabels(field, m, "object", MaxLabels)
}

func validateLabels(field string, m map[string]string, per string, most int) []FieldError {
	var e errs
	if len(m) > most {
		// Checking each of tens of thousands of labels would only bury this.
		e.add(field, "%s", limitMessage("labels", per, "", most, len(m)))
		return e
	}
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	if n > MaxLabelBytes {
		e.add(field, "%s", limitMessage("bytes of labels", per, "keys and values together", MaxLabelBytes, n))
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		f := mapKey(field, k)
		if !validLabelKey(k) {
			e.add(f, "%s", msgLabelKey)
		}
		if !validLabelValue(m[k]) {
			e.add(f, "%s", msgLabelValue)
		}
	}
	return e
}

func validLabelKey(k string) bool {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		if prefix == "" || len(prefix) > MaxLabelPrefixLength || !subdomainRE.MatchString(prefix) {
			return false
		}
		name = rest
	}
	return len(name) <= MaxLabelNameLength && labelNameRE.MatchString(name)
}

func validLabelValue(v string) bool {
	return v == "" || (len(v) <= MaxLabelValueLength && labelNameRE.MatchString(v))
}

// ParseLabelSelector parses the list filter syntax "team=payments,tier=dev"
// into the labels an object must all carry. An empty string selects
// everything. Spaces around terms, keys and values are ignored.
func ParseLabelSelector(s string) (map[string]string, error) {
	sel := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return sel, nil
	}
	if n := strings.Count(s, ",") + 1; n > MaxLabelSelectorTerms {
		return nil, fmt.Errorf("label selector has %d terms, past the limit of %d", n, MaxLabelSelectorTerms)
	}
	for term := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(term, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok:
			return nil, fmt.Errorf("label selector term %q: must be key=value", strings.TrimSpace(term))
		case !validLabelKey(k):
			return nil, fmt.Errorf("label selector term %q: %s", strings.TrimSpace(term), msgLabelKey)
		case !validLabelValue(v):
			return nil, fmt.Errorf("label selector term %q: %s", strings.TrimSpace(term), msgLabelValue)
		}
		if prev, dup := sel[k]; dup && prev != v {
			return nil, fmt.Errorf("label selector term %q: key %q is already required to be %q", strings.TrimSpace(term), k, prev)
		}
		sel[k] = v
	}
	return sel, nil
}

// ValidateState checks a state filter value.
func ValidateState(field, v string) []FieldError {
	var e errs
	if !slices.Contains(States, v) {
		e.add(field, "must be one of %s", strings.Join(States, ", "))
	}
	return e
}

// ValidateSelector checks a selector's match_labels and
// match_expressions, with Kubernetes' rules for label selectors.
func ValidateSelector(field string, s Selector) []FieldError {
	e := errs(ValidateSelectorLabels(path(field, "match_labels"), s.MatchLabels))
	e = append(e, ValidateSelectorExpressions(path(field, "match_expressions"), s.MatchExpressions)...)
	if n := len(s.MatchLabels) + len(s.MatchExpressions); len(s.MatchLabels) <= MaxSelectorLabels && len(s.MatchExpressions) <= MaxSelectorLabels && n > MaxSelectorLabels {
		e.add(field, "%s", limitMessage("terms", "selector", "match_labels and match_expressions together", MaxSelectorLabels, n))
	}
	return e
}

// ValidateSelectorExpressions checks match_expressions as Kubernetes
// does: a label key, a known operator, values for In and NotIn and none
// for Exists and DoesNotExist, each a label value.
func ValidateSelectorExpressions(field string, reqs []SelectorRequirement) []FieldError {
	var e errs
	if len(reqs) > MaxSelectorLabels {
		e.add(field, "%s", limitMessage("match_expressions", "selector", "", MaxSelectorLabels, len(reqs)))
		return e
	}
	for i, r := range reqs {
		f := index(field, i)
		if !validLabelKey(r.Key) {
			e.add(path(f, "key"), "must be a label key: an optional DNS subdomain prefix and '/', then 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
		}
		switch r.Operator {
		case OpIn, OpNotIn:
			if len(r.Values) == 0 {
				e.add(path(f, "values"), "must be non-empty when operator is %s", r.Operator)
			}
		case OpExists, OpDoesNotExist:
			if len(r.Values) > 0 {
				e.add(path(f, "values"), "must be empty when operator is %s", r.Operator)
			}
		default:
			e.add(path(f, "operator"), "must be one of In, NotIn, Exists, DoesNotExist")
		}
		if len(r.Values) > MaxSelectorValues {
			e.add(path(f, "values"), "%s", limitMessage("values", "expression", "", MaxSelectorValues, len(r.Values)))
			continue
		}
		for j, v := range r.Values {
			if !validLabelValue(v) {
				e.add(index(path(f, "values"), j), "must be a label value: empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
			}
		}
	}
	return e
}

// ValidatePortName checks a port name with Kubernetes' IANA_SVC_NAME
// rules, so names written for a Kubernetes container port fit.
func ValidatePortName(field, name string) []FieldError {
	var e errs
	letter := strings.ContainsFunc(name, func(r rune) bool { return 'a' <= r && r <= 'z' })
	if len(name) > 15 || !dnsLabelRE.MatchString(name) || strings.Contains(name, "--") || !letter {
		e.add(field, "%s", msgPortName)
	}
	return e
}

// ValidateSelectorLabels checks a selector's match_labels: label syntax,
// and at most MaxSelectorLabels of them.
func ValidateSelectorLabels(field string, m map[string]string) []FieldError {
	return validateLabels(field, m, "selector", MaxSelectorLabels)
}

// ValidateResources checks the fields of a resources object that are present.
func ValidateResources(field string, r *ResourcesSpec) []FieldError {
	if r == nil {
		return nil
	}
	var e errs
	inRange := func(name string, v *int64, lo, hi int64) {
		if v != nil && (*v < lo || *v > hi) {
			e.add(path(field, name), "must be between %d and %d", lo, hi)
		}
	}
	inRange("cpu_millis", r.CPUMillis, MinCPUMillis, MaxCPUMillis)
	inRange("memory_mb", r.MemoryMB, MinMemoryMB, MaxMemoryMB)
	inRange("disk_gb", r.DiskGB, MinDiskGB, MaxDiskGB)
	inRange("max_processes", r.MaxProcesses, MinMaxProcesses, MaxMaxProcesses)
	return e
}

// ValidateCIDR checks that s is an IPv4 or IPv6 prefix written the one way
// the server writes it back, so that clients never see their value change.
func ValidateCIDR(field, s string) []FieldError {
	_, fe := parseCanonicalPrefix(field, s)
	return fe
}

func parseCanonicalPrefix(field, s string) (netip.Prefix, []FieldError) {
	var e errs
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		e.add(field, "%s", msgCIDRSyntax)
	case p.Addr().Is4In6():
		// An IPv4-mapped prefix would never match: addresses are compared unmapped.
		e.add(field, "must not be an IPv4-mapped IPv6 prefix: write it as IPv4, such as %s", unmapPrefix(p))
	case p.Masked() != p:
		e.add(field, "must not have host bits set: use %s", p.Masked())
	case p.String() != s:
		e.add(field, "must be written canonically: use %s", p)
	}
	return p, e
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	bits := max(p.Bits()-96, 0)
	return netip.PrefixFrom(p.Addr().Unmap(), bits).Masked()
}

// ValidatePeer checks one peer of an ingress (egress false) or egress
// rule.
func ValidatePeer(field string, p Peer, egress bool) []FieldError {
	var e errs
	set := 0
	for _, s := range []bool{p.CIDR != "", p.EnvironmentSelector != nil || p.ProjectSelector != nil, p.FQDN != ""} {
		if s {
			set++
		}
	}
	if set != 1 {
		e.add(field, "%s", msgPeerOneOf)
	}
	if p.FQDN != "" {
		if !egress {
			e.add(path(field, "fqdn"), "is for egress peers only: a name says where traffic goes, not where it comes from")
		} else {
			e = append(e, ValidateFQDN(path(field, "fqdn"), p.FQDN)...)
		}
	}
	if p.EnvironmentSelector != nil {
		e = append(e, ValidateSelector(path(field, "environment_selector"), *p.EnvironmentSelector)...)
	}
	if p.ProjectSelector != nil {
		e = append(e, ValidateSelector(path(field, "project_selector"), *p.ProjectSelector)...)
	}
	if p.CIDR == "" {
		if len(p.Except) > 0 {
			e.add(path(field, "except"), "requires cidr: except carves addresses out of a cidr")
		}
		return e
	}
	cidr, fe := parseCanonicalPrefix(path(field, "cidr"), p.CIDR)
	e = append(e, fe...)
	for i, x := range p.Except {
		f := index(path(field, "except"), i)
		ex, fe := parseCanonicalPrefix(f, x)
		switch {
		case len(fe) > 0:
			e = append(e, fe...)
		case !cidr.IsValid():
			// The cidr is already reported; nothing to compare against.
		case ex.Addr().Is4() != cidr.Addr().Is4():
			e.add(f, "must be the same address family as cidr %s", p.CIDR)
		case ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()):
			e.add(f, "must be strictly inside cidr %s", p.CIDR)
		}
	}
	return e
}

// ValidatePort checks one port entry of a rule.
func ValidatePort(field string, p Port) []FieldError {
	var e errs
	switch p.Protocol {
	case "", ProtocolTCP, ProtocolUDP, ProtocolSCTP:
	case ProtocolICMP:
		for _, f := range []struct {
			name string
			set  bool
		}{{"port", p.Port != nil}, {"end_port", p.EndPort != nil}, {"port_name", p.PortName != ""}} {
			if f.set {
				e.add(path(field, f.name), "must be absent for icmp")
			}
		}
		return e
	default:
		e.add(path(field, "protocol"), "%s", msgProtocol)
	}
	if p.PortName != "" {
		e = append(e, ValidatePortName(path(field, "port_name"), p.PortName)...)
		if p.Port != nil {
			e.add(path(field, "port"), "must be absent with port_name: give the port by number or by name")
		}
		if p.EndPort != nil {
			e.add(path(field, "end_port"), "must be absent with port_name: a named port is one port")
		}
		return e
	}
	if p.Port != nil && (*p.Port < MinPort || *p.Port > MaxPort) {
		e.add(path(field, "port"), "%s", msgPortRange)
	}
	if p.EndPort == nil {
		return e
	}
	switch {
	case p.Port == nil:
		e.add(path(field, "end_port"), "requires port: end_port ends the range that port starts")
	case *p.EndPort > MaxPort || *p.EndPort < MinPort:
		e.add(path(field, "end_port"), "%s", msgPortRange)
	case *p.EndPort < *p.Port:
		e.add(path(field, "end_port"), "must be at least port (%d)", *p.Port)
	}
	return e
}

// ValidateIngressRules checks a list of ingress rules; field is the list's path.
func ValidateIngressRules(field string, rules []IngressRule) []FieldError {
	var e errs
	for i, r := range rules {
		e = append(e, validateRule(index(field, i), "from", r.From, r.Ports)...)
	}
	return e
}

// ValidateEgressRules checks a list of egress rules; field is the list's path.
func ValidateEgressRules(field string, rules []EgressRule) []FieldError {
	var e errs
	for i, r := range rules {
		e = append(e, validateRule(index(field, i), "to", r.To, r.Ports)...)
	}
	return e
}

func validateRule(field, peersName string, peers []Peer, ports []Port) []FieldError {
	var e errs
	for i, p := range peers {
		e = append(e, ValidatePeer(index(path(field, peersName), i), p, peersName == "to")...)
	}
	for i, p := range ports {
		e = append(e, ValidatePort(index(path(field, "ports"), i), p)...)
	}
	return e
}

// ValidatePolicyTypes checks that types lists ingress, egress or both, once each.
func ValidatePolicyTypes(field string, types []string) []FieldError {
	var e errs
	if len(types) == 0 {
		e.add(field, "%s", msgPolicyTypes)
	}
	for i, t := range types {
		switch {
		case t != Ingress && t != Egress:
			e.add(index(field, i), "%s", msgDirection)
		case slices.Index(types, t) < i:
			e.add(index(field, i), "must not repeat %q", t)
		}
	}
	return e
}

// Validate checks a complete policy spec, including that rules are only
// given for directions that policy_types lists (rules of an unlisted
// direction would silently do nothing).
func (s PolicySpec) Validate() []FieldError {
	var e errs
	e = append(e, ValidateName("name", s.Name)...)
	e = append(e, ValidateDescription("description", s.Description)...)
	e = append(e, ValidateSelector("environment_selector", s.EnvironmentSelector)...)
	e = append(e, ValidatePolicyTypes("policy_types", s.PolicyTypes)...)
	e = append(e, ValidateIngressRules("ingress", s.Ingress)...)
	e = append(e, ValidateEgressRules("egress", s.Egress)...)
	e = append(e, ValidatePolicyLimits("", s.Ingress, s.Egress)...)
	if len(s.Ingress) > 0 && !slices.Contains(s.PolicyTypes, Ingress) {
		e.add("ingress", "must be empty unless policy_types contains ingress")
	}
	if len(s.Egress) > 0 && !slices.Contains(s.PolicyTypes, Egress) {
		e.add("egress", "must be empty unless policy_types contains egress")
	}
	return e
}

// Validate checks a policy creation body.
func (c PolicyCreate) Validate() []FieldError {
	return append(requireID("project_id", c.ProjectID), c.PolicySpec.Validate()...)
}

// Validate checks the fields a policy patch sets. Whether the result is a
// valid policy also depends on the fields it leaves alone: use Merge.
func (p PolicyPatch) Validate() []FieldError {
	var e errs
	if p.Name != nil {
		e = append(e, ValidateName("name", *p.Name)...)
	}
	if p.Description != nil {
		e = append(e, ValidateDescription("description", *p.Description)...)
	}
	if p.EnvironmentSelector != nil {
		e = append(e, ValidateSelector("environment_selector", *p.EnvironmentSelector)...)
	}
	if p.PolicyTypes != nil {
		e = append(e, ValidatePolicyTypes("policy_types", *p.PolicyTypes)...)
	}
	if p.Ingress != nil {
		e = append(e, ValidateIngressRules("ingress", *p.Ingress)...)
	}
	if p.Egress != nil {
		e = append(e, ValidateEgressRules("egress", *p.Egress)...)
	}
	return e
}

// Apply returns cur with the patch's fields replaced, normalized. It does
// not validate.
func (p PolicyPatch) Apply(cur PolicySpec) PolicySpec {
	if p.Name != nil {
		cur.Name = *p.Name
	}
	if p.Description != nil {
		cur.Description = *p.Description
	}
	if p.EnvironmentSelector != nil {
		cur.EnvironmentSelector = *p.EnvironmentSelector
	}
	if p.PolicyTypes != nil {
		cur.PolicyTypes = *p.PolicyTypes
	}
	if p.Ingress != nil {
		cur.Ingress = *p.Ingress
	}
	if p.Egress != nil {
		cur.Egress = *p.Egress
	}
	return cur.Normalize()
}

// Merge applies the patch to cur and validates the result: the patch's own
// errors first, and when it has none, the resulting policy's (for example
// ingress rules that a patch of policy_types would leave without effect).
func (p PolicyPatch) Merge(cur PolicySpec) (PolicySpec, []FieldError) {
	if fe := p.Validate(); fe != nil {
		return cur, fe
	}
	next := p.Apply(cur)
	return next, next.Validate()
}

// Validate checks a project creation body.
func (c ProjectCreate) Validate() []FieldError {
	var e errs
	e = append(e, ValidateName("name", c.Name)...)
	e = append(e, ValidateDescription("description", c.Description)...)
	e = append(e, ValidateLabels("labels", c.Labels)...)
	e = append(e, validateQuota(c.EnvironmentQuota)...)
	return e
}

// Validate checks the fields a project patch sets.
func (p ProjectPatch) Validate() []FieldError {
	return append(validateCommonPatch(p.Name, p.Description, p.Labels), validateQuota(p.EnvironmentQuota)...)
}

// ValidateEnvironmentQuota checks an environment quota: 0 (no limit) up to
// MaxEnvironmentQuota.
func ValidateEnvironmentQuota(field string, q int64) []FieldError {
	var e errs
	if q < 0 || q > MaxEnvironmentQuota {
		e.add(field, "must be between 0 (no limit) and %d", MaxEnvironmentQuota)
	}
	return e
}

func validateQuota(q *int64) []FieldError {
	if q == nil {
		return nil
	}
	return ValidateEnvironmentQuota("environment_quota", *q)
}

func validateCommonPatch(name, description *string, labels *map[string]string) []FieldError {
	var e errs
	if name != nil {
		e = append(e, ValidateName("name", *name)...)
	}
	if description != nil {
		e = append(e, ValidateDescription("description", *description)...)
	}
	if labels != nil {
		e = append(e, ValidateLabels("labels", *labels)...)
	}
	return e
}

// Validate checks an environment creation body.
func (c EnvironmentCreate) Validate() []FieldError {
	var e errs
	e = append(e, requireID("project_id", c.ProjectID)...)
	e = append(e, ValidateName("name", c.Name)...)
	e = append(e, ValidateDescription("description", c.Description)...)
	e = append(e, ValidateLabels("labels", c.Labels)...)
	e = append(e, ValidateResources("resources", c.Resources)...)
	if c.Workload != nil {
		e = append(e, c.Workload.Validate("workload")...)
	}
	if c.TTLSeconds != nil && (*c.TTLSeconds < 1 || *c.TTLSeconds > MaxTTLSeconds) {
		e.add("ttl_seconds", "must be between 1 and %d", MaxTTLSeconds)
	}
	return e
}

// Validate checks the fields an environment patch sets.
func (p EnvironmentPatch) Validate() []FieldError {
	e := errs(validateCommonPatch(p.Name, p.Description, p.Labels))
	e = append(e, ValidateResources("resources", p.Resources)...)
	if p.Workload.Value != nil {
		e = append(e, p.Workload.Value.Validate("workload")...)
	}
	if p.TTLSeconds != nil && (*p.TTLSeconds < 0 || *p.TTLSeconds > MaxTTLSeconds) {
		e.add("ttl_seconds", "must be between 0 and %d (0 removes the TTL)", MaxTTLSeconds)
	}
	return nilIfEmpty(e)
}

// Validate checks a configure body of the original design's endpoint.
func (c EnvironmentConfigure) Validate() []FieldError {
	e := errs(validateCommonPatch(nil, c.Description, c.Labels))
	e = append(e, ValidateResources("resources", c.Resources)...)
	if c.Policy != nil {
		e = append(e, ValidateIngressRules("policy.ingress", c.Policy.Ingress)...)
		e = append(e, ValidateEgressRules("policy.egress", c.Policy.Egress)...)
		e = append(e, ValidatePolicyLimits("policy", c.Policy.Ingress, c.Policy.Egress)...)
	}
	return nilIfEmpty(e)
}

// Validate checks a check request. An empty protocol means tcp, as in a Port.
func (c CheckRequest) Validate() []FieldError {
	var e errs
	if c.Direction != Ingress && c.Direction != Egress {
		e.add("direction", "%s", msgDirection)
	}
	if a, err := netip.ParseAddr(c.Address); err == nil && a.Zone() == "" {
		// An address.
	} else if c.Direction == Egress && err != nil && validHostName(NormalizeFQDN(c.Address)) == "" {
		// A host name: the addresses the environment resolved it to.
	} else {
		e.add("address", "must be an IPv4 or IPv6 address, such as 10.1.2.3 or 2001:db8::1, or on egress a host name")
	}
	return append(e, validatePacketPort(c.Protocol, c.Port)...)
}

// validatePacketPort checks the protocol and port of one packet (a check,
// an assertion): an empty protocol means tcp, and only icmp has no port.
func validatePacketPort(protocol string, port int) []FieldError {
	var e errs
	switch protocol {
	case "", ProtocolTCP, ProtocolUDP, ProtocolSCTP:
		if port < MinPort || port > MaxPort {
			e.add("port", "%s for %s", msgPortRange, cmpOr(protocol, ProtocolTCP))
		}
	case ProtocolICMP:
		if port != 0 {
			e.add("port", "must be absent for icmp")
		}
	default:
		e.add("protocol", "%s", msgProtocol)
	}
	return e
}

// Validate checks a token creation body. Whether expires_at is in the
// future needs a clock, so the server checks it.
func (c TokenCreate) Validate() []FieldError {
	e := errs(ValidateName("name", c.Name))
	switch c.Role {
	case RoleAdmin, RoleAuditor:
		if c.ProjectID != "" {
			e.add("project_id", "must be absent for role %s: %s tokens are organization-wide", c.Role, c.Role)
		}
	case RoleEditor, RoleDeveloper, RoleViewer:
		if c.ProjectID == "" {
			e.add("project_id", "is required for role %s", c.Role)
		}
	case RoleSession:
		e.add("role", "session tokens are minted for one environment with POST /v1/environments/{id}/session-tokens")
	default:
		e.add("role", "must be one of %s", strings.Join(Roles, ", "))
	}
	e = append(e, ValidateDeveloper("developer", c.Role, c.Developer)...)
	return nilIfEmpty(e)
}

// ValidateDeveloper checks a token's developer grant against its role:
// admin and developer tokens may exec already.
func ValidateDeveloper(field, role string, developer bool) []FieldError {
	var e errs
	if developer && (role == RoleAdmin || role == RoleDeveloper) {
		e.add(field, "must be absent or false for role %s: it already may exec", role)
	}
	return e
}

func requireID(field, v string) []FieldError {
	var e errs
	if strings.TrimSpace(v) == "" {
		e.add(field, "%s", msgRequired)
	}
	return e
}

func nilIfEmpty(e errs) []FieldError {
	if len(e) == 0 {
		return nil
	}
	return e
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Normalization. The server stores and returns specs in this one form, so a
// client that sends it gets back exactly what it sent: lists and maps are
// never null ([] and {}), a port's protocol is spelled out, and an empty
// except is omitted. Normalize copies; it never shares memory with its input.

// Normalize returns s in canonical form. It is idempotent.
func (s PolicySpec) Normalize() PolicySpec {
	s.EnvironmentSelector = s.EnvironmentSelector.Normalize()
	s.PolicyTypes = append([]string{}, s.PolicyTypes...)
	s.Ingress = NormalizeIngressRules(s.Ingress)
	s.Egress = NormalizeEgressRules(s.Egress)
	return s
}

// Normalize returns the rules in canonical form.
func (c ConfigurePolicy) Normalize() ConfigurePolicy {
	return ConfigurePolicy{Ingress: NormalizeIngressRules(c.Ingress), Egress: NormalizeEgressRules(c.Egress)}
}

// Normalize returns the selector with a non-nil MatchLabels and its own
// copy of MatchExpressions (nil when empty). Expressions keep their order:
// clients compare what they sent with what they read back.
func (s Selector) Normalize() Selector {
	out := Selector{MatchLabels: NormalizeLabels(s.MatchLabels)}
	for _, r := range s.MatchExpressions {
		r.Values = slices.Clone(r.Values)
		if len(r.Values) == 0 {
			r.Values = nil
		}
		out.MatchExpressions = append(out.MatchExpressions, r)
	}
	return out
}

// NormalizeLabels returns a copy of m that is never nil.
func NormalizeLabels(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	maps.Copy(out, m)
	return out
}

// NormalizeIngressRules returns the rules in canonical form, never nil.
func NormalizeIngressRules(rules []IngressRule) []IngressRule {
	return normalizeAll(rules, func(r IngressRule) IngressRule {
		return IngressRule{From: NormalizePeers(r.From), Ports: NormalizePorts(r.Ports)}
	})
}

// NormalizeEgressRules returns the rules in canonical form, never nil.
func NormalizeEgressRules(rules []EgressRule) []EgressRule {
	return normalizeAll(rules, func(r EgressRule) EgressRule {
		return EgressRule{To: NormalizePeers(r.To), Ports: NormalizePorts(r.Ports)}
	})
}

// NormalizePeers returns the peers in canonical form, never nil.
func NormalizePeers(peers []Peer) []Peer { return normalizeAll(peers, NormalizePeer) }

// NormalizePeer returns p with a nil Except when it is empty and a non-nil
// MatchLabels in its selector.
func NormalizePeer(p Peer) Peer {
	if len(p.Except) == 0 {
		p.Except = nil
	} else {
		p.Except = slices.Clone(p.Except)
	}
	for _, sel := range []**Selector{&p.EnvironmentSelector, &p.ProjectSelector} {
		if *sel != nil {
			s := (*sel).Normalize()
			*sel = &s
		}
	}
	return p
}

// NormalizePorts returns the ports in canonical form, never nil.
func NormalizePorts(ports []Port) []Port { return normalizeAll(ports, NormalizePort) }

// NormalizePort returns p with its protocol spelled out (tcp when empty)
// and its own copies of Port and EndPort.
func NormalizePort(p Port) Port {
	p.Protocol = cmpOr(p.Protocol, ProtocolTCP)
	p.Port = clonePtr(p.Port)
	p.EndPort = clonePtr(p.EndPort)
	return p
}

// normalizeAll is the canonical form of a list: each element's, in a new
// slice that is never nil, so it encodes as [] and not null.
func normalizeAll[T any](in []T, normalize func(T) T) []T {
	out := make([]T, 0, len(in))
	for _, v := range in {
		out = append(out, normalize(v))
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Limits of host names (RFC 1035 section 2.3.4).
const (
	maxFQDNLength  = 253
	maxLabelLength = 63
)

// NormalizeFQDN is the canonical form of a host name or pattern: lower
// case, without the root's trailing dot.
func NormalizeFQDN(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// ValidateFQDN checks an fqdn peer: a host name, or "*." and a host name
// of at least two labels, in canonical form. It names the rule broken.
func ValidateFQDN(field, s string) []FieldError {
	var e errs
	n := NormalizeFQDN(s)
	if n != s {
		// Stored as written, so that a plan never shows a difference.
		e.add(field, "must be in canonical form, lower case without a trailing dot: %q", n)
		return e
	}
	if _, err := netip.ParseAddr(n); err == nil {
		e.add(field, "must be a host name, not an IP address: use cidr %q for an address", s)
		return e
	}
	if n == "*" || n == "*." {
		e.add(field, "must not be * alone: that would allow every name; use cidr 0.0.0.0/0 and ::/0 to allow every address")
		return e
	}
	name, wildcard := strings.CutPrefix(n, "*.")
	if strings.Contains(name, "*") {
		e.add(field, "may hold * only as its whole leftmost label (*.example.com): %q has another", s)
		return e
	}
	if msg := validHostName(name); msg != "" {
		e.add(field, "%s", msg)
		return e
	}
	if wildcard && !strings.Contains(name, ".") {
		e.add(field, "must name at least two labels after *. (*.example.com, not *.com)")
	}
	return e
}

// validHostName says what is wrong with a normalized host name, or "".
func validHostName(n string) string {
	switch {
	case n == "":
		return "must be a host name such as registry.npmjs.org"
	case len(n) > maxFQDNLength:
		return fmt.Sprintf("must be at most %d characters long, not %d", maxFQDNLength, len(n))
	}
	for _, l := range strings.Split(n, ".") {
		switch {
		case l == "":
			return "must not have an empty label (two dots in a row, or a leading dot)"
		case len(l) > maxLabelLength:
			return fmt.Sprintf("label %q is %d characters long: a label is at most %d", l, len(l), maxLabelLength)
		case !hostLabelRE.MatchString(l):
			return fmt.Sprintf("label %q must be letters, digits or '-' (underscores allowed), starting and ending with a letter, digit or '_'", l)
		}
	}
	return ""
}

// MatchFQDN reports whether a normalized name matches a normalized
// pattern: equal, or for "*.suffix", exactly one label before suffix.
func MatchFQDN(pattern, name string) bool {
	suffix, wildcard := strings.CutPrefix(pattern, "*.")
	if !wildcard {
		return pattern == name
	}
	head, ok := strings.CutSuffix(name, "."+suffix)
	return ok && head != "" && !strings.Contains(head, ".")
}
