package apiv1

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

func fe(field, message string) FieldError { return FieldError{Field: field, Message: message} }

// validator is what every request body's validation looks like.
type validator interface{ Validate() []FieldError }

// fieldErrorCase is one row of a validation table: an input and the field
// errors its validation returns.
type fieldErrorCase[T any] struct {
	name string
	in   T
	want []FieldError
}

// wantFieldErrors checks each case, in parallel, against validate.
func wantFieldErrors[T any](t *testing.T, validate func(T) []FieldError, cases []fieldErrorCase[T]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, validate(tc.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateName_AcceptsDNSLabelsOnly(t *testing.T) {
	t.Parallel()
	wantFieldErrors(t, func(in string) []FieldError { return ValidateName("name", in) }, []fieldErrorCase[string]{
		{"single letter", "a", nil},
		{"digits and hyphen", "web-01", nil},
		{"starts with digit", "1st", nil},
		{"63 characters", strings.Repeat("a", 63), nil},
		{"empty", "", []FieldError{fe("name", "is required; "+msgName)}},
		{"64 characters", strings.Repeat("a", 64), []FieldError{fe("name", msgName)}},
		{"uppercase", "Web", []FieldError{fe("name", msgName)}},
		{"leading hyphen", "-web", []FieldError{fe("name", msgName)}},
		{"trailing hyphen", "web-", []FieldError{fe("name", msgName)}},
		{"underscore", "web_1", []FieldError{fe("name", msgName)}},
		{"dot", "web.1", []FieldError{fe("name", msgName)}},
		{"unicode", "wéb", []FieldError{fe("name", msgName)}},
	})
}

func TestValidateDescription_CountsCharactersNotBytes(t *testing.T) {
	t.Parallel()
	if got := ValidateDescription("description", strings.Repeat("é", MaxDescriptionLength)); got != nil {
		t.Errorf("1024 two-byte characters: got %v, want valid", got)
	}
	want := []FieldError{fe("description", "must be at most 1024 characters (got 1025)")}
	if diff := cmp.Diff(want, ValidateDescription("description", strings.Repeat("x", 1025))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestValidateLabels_FollowsKubernetesSyntax(t *testing.T) {
	t.Parallel()
	wantFieldErrors(t, func(in map[string]string) []FieldError { return ValidateLabels("labels", in) }, []fieldErrorCase[map[string]string]{
		{"nil", nil, nil},
		{"simple", map[string]string{"team": "payments", "tier": "dev"}, nil},
		{"empty value", map[string]string{"team": ""}, nil},
		{"prefixed key", map[string]string{"example.com/team": "a.b_c-d"}, nil},
		{"uppercase and underscore", map[string]string{"Team_Name": "Pay_1"}, nil},
		{"63-char key and value", map[string]string{strings.Repeat("k", 63): strings.Repeat("v", 63)}, nil},
		{"64-char key", map[string]string{strings.Repeat("k", 64): "v"},
			[]FieldError{fe(`labels["`+strings.Repeat("k", 64)+`"]`, msgLabelKey)}},
		{"64-char value", map[string]string{"k": strings.Repeat("v", 64)},
			[]FieldError{fe(`labels["k"]`, msgLabelValue)}},
		{"empty key", map[string]string{"": "v"}, []FieldError{fe(`labels[""]`, msgLabelKey)}},
		{"empty prefix", map[string]string{"/team": "v"}, []FieldError{fe(`labels["/team"]`, msgLabelKey)}},
		{"empty name after prefix", map[string]string{"example.com/": "v"}, []FieldError{fe(`labels["example.com/"]`, msgLabelKey)}},
		{"uppercase prefix", map[string]string{"Example.com/team": "v"}, []FieldError{fe(`labels["Example.com/team"]`, msgLabelKey)}},
		{"two slashes", map[string]string{"a/b/c": "v"}, []FieldError{fe(`labels["a/b/c"]`, msgLabelKey)}},
		{"value with space", map[string]string{"team": "pay ments"}, []FieldError{fe(`labels["team"]`, msgLabelValue)}},
		{"value ending in dot", map[string]string{"team": "pay."}, []FieldError{fe(`labels["team"]`, msgLabelValue)}},
		{"bad key and value, sorted by key", map[string]string{"z z": "ok", "a": "-bad"}, []FieldError{
			fe(`labels["a"]`, msgLabelValue),
			fe(`labels["z z"]`, msgLabelKey),
		}},
	})
}

func TestValidateState_AcceptsLifecycleStatesOnly(t *testing.T) {
	t.Parallel()
	for _, s := range States {
		if got := ValidateState("state", s); got != nil {
			t.Errorf("%s: %v", s, got)
		}
	}
	want := []FieldError{fe("state", "must be one of pending, provisioning, ready, updating, failed, deleting, expired")}
	if diff := cmp.Diff(want, ValidateState("state", "Ready")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseLabelSelector(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{in: "", want: map[string]string{}},
		{in: "team=payments", want: map[string]string{"team": "payments"}},
		{in: "team=payments,tier=dev", want: map[string]string{"team": "payments", "tier": "dev"}},
		{in: " team = payments , tier=dev ", want: map[string]string{"team": "payments", "tier": "dev"}},
		{in: "team=", want: map[string]string{"team": ""}},
		{in: "example.com/team=a,team=a", want: map[string]string{"example.com/team": "a", "team": "a"}},
		{in: "team=a,team=a", want: map[string]string{"team": "a"}},
		{in: "team", wantErr: `label selector term "team": must be key=value`},
		{in: "team=a,,tier=b", wantErr: `label selector term "": must be key=value`},
		{in: "=a", wantErr: `label selector term "=a": ` + msgLabelKey},
		{in: "team=a b", wantErr: `label selector term "team=a b": ` + msgLabelValue},
		{in: "team=a=b", wantErr: `label selector term "team=a=b": ` + msgLabelValue},
		{in: "team=a,team=b", wantErr: `label selector term "team=b": key "team" is already required to be "a"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseLabelSelector(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidatePeer_FQDN(t *testing.T) {
	t.Parallel()
	const f = "egress[0].to[0]"
	long := strings.Repeat("a", 64)
	name250 := strings.Repeat(strings.Repeat("b", 49)+".", 5) + "com" // 253 characters
	wantFieldErrors(t, func(in Peer) []FieldError { return ValidatePeer(f, in, true) }, []fieldErrorCase[Peer]{
		{"name", Peer{FQDN: "registry.npmjs.org"}, nil},
		{"pattern", Peer{FQDN: "*.github.com"}, nil},
		{"single label", Peer{FQDN: "localhost"}, nil},
		{"underscore", Peer{FQDN: "_dmarc.example.com"}, nil},
		{"253 characters", Peer{FQDN: name250}, nil},
		{"star alone", Peer{FQDN: "*"}, []FieldError{fe(f+".fqdn", "must not be * alone: that would allow every name; use cidr 0.0.0.0/0 and ::/0 to allow every address")}},
		{"two stars", Peer{FQDN: "*.*.com"}, []FieldError{fe(f+".fqdn", `may hold * only as its whole leftmost label (*.example.com): "*.*.com" has another`)}},
		{"star inside a label", Peer{FQDN: "api*.example.com"}, []FieldError{fe(f+".fqdn", `may hold * only as its whole leftmost label (*.example.com): "api*.example.com" has another`)}},
		{"star over a top-level domain", Peer{FQDN: "*.com"}, []FieldError{fe(f+".fqdn", "must name at least two labels after *. (*.example.com, not *.com)")}},
		{"ipv4 literal", Peer{FQDN: "10.0.0.1"}, []FieldError{fe(f+".fqdn", `must be a host name, not an IP address: use cidr "10.0.0.1" for an address`)}},
		{"ipv6 literal", Peer{FQDN: "2001:db8::1"}, []FieldError{fe(f+".fqdn", `must be a host name, not an IP address: use cidr "2001:db8::1" for an address`)}},
		{"label too long", Peer{FQDN: long + ".com"}, []FieldError{fe(f+".fqdn", `label "`+long+`" is 64 characters long: a label is at most 63`)}},
		{"name too long", Peer{FQDN: "a" + name250}, []FieldError{fe(f+".fqdn", "must be at most 253 characters long, not 254")}},
		{"empty label", Peer{FQDN: "a..com"}, []FieldError{fe(f+".fqdn", "must not have an empty label (two dots in a row, or a leading dot)")}},
		{"upper case", Peer{FQDN: "Example.com"}, []FieldError{fe(f+".fqdn", `must be in canonical form, lower case without a trailing dot: "example.com"`)}},
		{"trailing dot", Peer{FQDN: "example.com."}, []FieldError{fe(f+".fqdn", `must be in canonical form, lower case without a trailing dot: "example.com"`)}},
		{"bad character", Peer{FQDN: "exa mple.com"}, []FieldError{fe(f+".fqdn", `label "exa mple" must be letters, digits or '-' (underscores allowed), starting and ending with a letter, digit or '_'`)}},
		{"leading hyphen", Peer{FQDN: "-a.com"}, []FieldError{fe(f+".fqdn", `label "-a" must be letters, digits or '-' (underscores allowed), starting and ending with a letter, digit or '_'`)}},
	})
}

func TestMatchFQDN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "www.example.com", false},
		{"*.example.com", "www.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "wwwexample.com", false},
	} {
		if got := MatchFQDN(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchFQDN(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestValidatePeer(t *testing.T) {
	t.Parallel()
	const f = "ingress[0].from[1]"
	wantFieldErrors(t, func(in Peer) []FieldError { return ValidatePeer(f, in, false) }, []fieldErrorCase[Peer]{
		{"ipv4 cidr", Peer{CIDR: "10.0.0.0/8"}, nil},
		{"ipv6 cidr", Peer{CIDR: "2001:db8::/32"}, nil},
		{"host route", Peer{CIDR: "10.1.2.3/32"}, nil},
		{"everything", Peer{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "192.168.0.0/16"}}, nil},
		{"ipv6 except", Peer{CIDR: "2001:db8::/32", Except: []string{"2001:db8:1::/48", "2001:db8::1/128"}}, nil},
		{"selector", Peer{EnvironmentSelector: &Selector{MatchLabels: map[string]string{"tier": "db"}}}, nil},
		{"empty selector", Peer{EnvironmentSelector: &Selector{}}, nil},
		{"project selector", Peer{ProjectSelector: &Selector{MatchLabels: map[string]string{"team": "ci"}}}, nil},
		{"both selectors", Peer{ProjectSelector: &Selector{}, EnvironmentSelector: &Selector{}}, nil},
		{"cidr and project selector", Peer{CIDR: "10.0.0.0/8", ProjectSelector: &Selector{}}, []FieldError{fe(f, msgPeerOneOf)}},
		{"neither", Peer{}, []FieldError{fe(f, msgPeerOneOf)}},
		{"both", Peer{CIDR: "10.0.0.0/8", EnvironmentSelector: &Selector{}}, []FieldError{fe(f, msgPeerOneOf)}},
		{"fqdn on ingress", Peer{FQDN: "example.com"}, []FieldError{fe(f+".fqdn", "is for egress peers only: a name says where traffic goes, not where it comes from")}},
		{"fqdn and cidr", Peer{FQDN: "example.com", CIDR: "10.0.0.0/8"}, []FieldError{fe(f, msgPeerOneOf), fe(f+".fqdn", "is for egress peers only: a name says where traffic goes, not where it comes from")}},
		{"not a cidr", Peer{CIDR: "10.0.0.300/8"}, []FieldError{fe(f+".cidr", msgCIDRSyntax)}},
		{"bare address", Peer{CIDR: "10.0.0.1"}, []FieldError{fe(f+".cidr", msgCIDRSyntax)}},
		{"prefix too long", Peer{CIDR: "10.0.0.0/33"}, []FieldError{fe(f+".cidr", msgCIDRSyntax)}},
		{"zone", Peer{CIDR: "fe80::%eth0/64"}, []FieldError{fe(f+".cidr", msgCIDRSyntax)}},
		{"host bits", Peer{CIDR: "10.1.2.3/8"}, []FieldError{fe(f+".cidr", "must not have host bits set: use 10.0.0.0/8")}},
		{"ipv6 host bits", Peer{CIDR: "2001:db8::1/32"}, []FieldError{fe(f+".cidr", "must not have host bits set: use 2001:db8::/32")}},
		{"uppercase ipv6", Peer{CIDR: "2001:DB8::/32"}, []FieldError{fe(f+".cidr", "must be written canonically: use 2001:db8::/32")}},
		{"long ipv6", Peer{CIDR: "2001:db8:0:0:0:0:0:0/32"}, []FieldError{fe(f+".cidr", "must be written canonically: use 2001:db8::/32")}},
		{"ipv4-mapped", Peer{CIDR: "::ffff:10.0.0.0/104"}, []FieldError{fe(f+".cidr", "must not be an IPv4-mapped IPv6 prefix: write it as IPv4, such as 10.0.0.0/8")}},
		{"except outside", Peer{CIDR: "10.0.0.0/8", Except: []string{"11.0.0.0/16"}},
			[]FieldError{fe(f+".except[0]", "must be strictly inside cidr 10.0.0.0/8")}},
		{"except equal", Peer{CIDR: "10.0.0.0/8", Except: []string{"10.0.0.0/8"}},
			[]FieldError{fe(f+".except[0]", "must be strictly inside cidr 10.0.0.0/8")}},
		{"except wider", Peer{CIDR: "10.1.0.0/16", Except: []string{"10.0.0.0/8"}},
			[]FieldError{fe(f+".except[0]", "must be strictly inside cidr 10.1.0.0/16")}},
		{"except other family", Peer{CIDR: "10.0.0.0/8", Except: []string{"2001:db8::/48"}},
			[]FieldError{fe(f+".except[0]", "must be the same address family as cidr 10.0.0.0/8")}},
		{"except host bits", Peer{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.1/16"}},
			[]FieldError{fe(f+".except[0]", "must not have host bits set: use 10.1.0.0/16")}},
		{"second except bad", Peer{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16", "junk"}},
			[]FieldError{fe(f+".except[1]", msgCIDRSyntax)}},
		{"except with invalid cidr is only checked for syntax", Peer{CIDR: "junk", Except: []string{"10.1.0.0/16"}},
			[]FieldError{fe(f+".cidr", msgCIDRSyntax)}},
		{"except without cidr", Peer{EnvironmentSelector: &Selector{}, Except: []string{"10.0.0.0/8"}},
			[]FieldError{fe(f+".except", "requires cidr: except carves addresses out of a cidr")}},
		{"bad selector label", Peer{EnvironmentSelector: &Selector{MatchLabels: map[string]string{"tier": "a b"}}},
			[]FieldError{fe(f+`.environment_selector.match_labels["tier"]`, msgLabelValue)}},
	})
}

func TestValidatePort(t *testing.T) {
	t.Parallel()
	const f = "egress[2].ports[0]"
	wantFieldErrors(t, func(in Port) []FieldError { return ValidatePort(f, in) }, []fieldErrorCase[Port]{
		{"empty means every tcp port", Port{}, nil},
		{"tcp port", Port{Protocol: "tcp", Port: ptr(443)}, nil},
		{"udp range", Port{Protocol: "udp", Port: ptr(1), EndPort: ptr(65535)}, nil},
		{"range of one", Port{Port: ptr(8080), EndPort: ptr(8080)}, nil},
		{"icmp", Port{Protocol: "icmp"}, nil},
		{"port 0", Port{Port: ptr(0)}, []FieldError{fe(f+".port", msgPortRange)}},
		{"port 70000", Port{Port: ptr(70000)}, []FieldError{fe(f+".port", msgPortRange)}},
		{"negative port", Port{Port: ptr(-1)}, []FieldError{fe(f+".port", msgPortRange)}},
		{"end below port", Port{Port: ptr(8080), EndPort: ptr(8079)}, []FieldError{fe(f+".end_port", "must be at least port (8080)")}},
		{"end above max", Port{Port: ptr(8080), EndPort: ptr(65536)}, []FieldError{fe(f+".end_port", msgPortRange)}},
		{"end without port", Port{EndPort: ptr(80)}, []FieldError{fe(f+".end_port", "requires port: end_port ends the range that port starts")}},
		{"unknown protocol", Port{Protocol: "gre"}, []FieldError{fe(f+".protocol", msgProtocol)}},
		{"uppercase protocol", Port{Protocol: "TCP", Port: ptr(0)}, []FieldError{fe(f+".protocol", msgProtocol), fe(f+".port", msgPortRange)}},
		{"icmp with ports", Port{Protocol: "icmp", Port: ptr(8), EndPort: ptr(9)}, []FieldError{
			fe(f+".port", "must be absent for icmp"),
			fe(f+".end_port", "must be absent for icmp"),
		}},
		{"sctp range", Port{Protocol: "sctp", Port: ptr(80), EndPort: ptr(81)}, nil},
		{"named port", Port{Protocol: "tcp", PortName: "serve-80"}, nil},
		{"named port with a number", Port{PortName: "http", Port: ptr(80), EndPort: ptr(81)}, []FieldError{
			fe(f+".port", "must be absent with port_name: give the port by number or by name"),
			fe(f+".end_port", "must be absent with port_name: a named port is one port"),
		}},
		{"named port without a letter", Port{PortName: "8080"}, []FieldError{fe(f+".port_name", msgPortName)}},
		{"named port too long", Port{PortName: "a234567890123456"}, []FieldError{fe(f+".port_name", msgPortName)}},
		{"named port with double dash", Port{PortName: "a--b"}, []FieldError{fe(f+".port_name", msgPortName)}},
		{"named port upper case", Port{PortName: "HTTP"}, []FieldError{fe(f+".port_name", msgPortName)}},
		{"icmp with a named port", Port{Protocol: "icmp", PortName: "ping"}, []FieldError{fe(f+".port_name", "must be absent for icmp")}},
	})
}

func TestValidateSelector_MatchExpressions(t *testing.T) {
	t.Parallel()
	const f = "ingress[0].from[0].project_selector"
	m := f + ".match_expressions"
	wantFieldErrors(t, func(in Selector) []FieldError { return ValidateSelector(f, in) }, []fieldErrorCase[Selector]{
		{"in", Selector{MatchExpressions: []SelectorRequirement{{Key: "ns", Operator: OpIn, Values: []string{"x", "y"}}}}, nil},
		{"not in", Selector{MatchExpressions: []SelectorRequirement{{Key: "ns", Operator: OpNotIn, Values: []string{"x"}}}}, nil},
		{"exists", Selector{MatchExpressions: []SelectorRequirement{{Key: "example.com/ns", Operator: OpExists}}}, nil},
		{"does not exist", Selector{MatchExpressions: []SelectorRequirement{{Key: "ns", Operator: OpDoesNotExist}}}, nil},
		{"in without values", Selector{MatchExpressions: []SelectorRequirement{{Key: "ns", Operator: OpIn}}},
			[]FieldError{fe(m+"[0].values", "must be non-empty when operator is In")}},
		{"exists with values", Selector{MatchExpressions: []SelectorRequirement{{Key: "ns", Operator: OpExists, Values: []string{"x"}}}},
			[]FieldError{fe(m+"[0].values", "must be empty when operator is Exists")}},
		{"unknown operator", Selector{MatchExpressions: []SelectorRequirement{{Key: "ns", Operator: "in", Values: []string{"x"}}}},
			[]FieldError{fe(m+"[0].operator", "must be one of In, NotIn, Exists, DoesNotExist")}},
		{"bad key and value", Selector{MatchExpressions: []SelectorRequirement{{Key: "-ns", Operator: OpNotIn, Values: []string{"a b"}}}},
			[]FieldError{
				fe(m+"[0].key", "must be a label key: an optional DNS subdomain prefix and '/', then 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"),
				fe(m+"[0].values[0]", "must be a label value: empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"),
			}},
	})
}

func TestValidatePortName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"http", "serve-80", "a", "x1", "abcdefghijklmno"} {
		if fe := ValidatePortName("n", ok); fe != nil {
			t.Errorf("%q: %v", ok, fe)
		}
	}
	for _, bad := range []string{"", "80", "-http", "http-", "a--b", "Http", "abcdefghijklmnop", "a_b"} {
		if fe := ValidatePortName("n", bad); len(fe) != 1 {
			t.Errorf("%q: got %v, want one error", bad, fe)
		}
	}
}

func validSpec() PolicySpec {
	return PolicySpec{
		Name:                "allow-web",
		EnvironmentSelector: Selector{MatchLabels: map[string]string{"tier": "web"}},
		PolicyTypes:         []string{Ingress, Egress},
		Ingress: []IngressRule{{
			From:  []Peer{{CIDR: "10.0.0.0/8", Except: []string{"10.9.0.0/16"}}},
			Ports: []Port{{Port: ptr(443)}},
		}},
		Egress: []EgressRule{{To: []Peer{{EnvironmentSelector: &Selector{MatchLabels: map[string]string{"tier": "db"}}}}}},
	}
}

func TestPolicySpecValidate(t *testing.T) {
	t.Parallel()
	wantFieldErrors(t, func(change func(*PolicySpec)) []FieldError {
		s := validSpec()
		change(&s)
		return s.Validate()
	}, []fieldErrorCase[func(*PolicySpec)]{
		{"valid", func(*PolicySpec) {}, nil},
		{"ingress only, empty rules", func(s *PolicySpec) { s.PolicyTypes = []string{Ingress}; s.Egress = nil; s.Ingress = []IngressRule{} }, nil},
		{"empty rule", func(s *PolicySpec) { s.Ingress = []IngressRule{{}} }, nil},
		{"missing name", func(s *PolicySpec) { s.Name = "" }, []FieldError{fe("name", "is required; "+msgName)}},
		{"long description", func(s *PolicySpec) { s.Description = strings.Repeat("d", 1025) },
			[]FieldError{fe("description", "must be at most 1024 characters (got 1025)")}},
		{"bad selector", func(s *PolicySpec) { s.EnvironmentSelector.MatchLabels = map[string]string{"-x": "y"} },
			[]FieldError{fe(`environment_selector.match_labels["-x"]`, msgLabelKey)}},
		{"nil policy_types", func(s *PolicySpec) { s.PolicyTypes = nil; s.Ingress = nil; s.Egress = nil },
			[]FieldError{fe("policy_types", msgPolicyTypes)}},
		{"unknown policy type", func(s *PolicySpec) { s.PolicyTypes = []string{Ingress, "Egress"}; s.Egress = nil },
			[]FieldError{fe("policy_types[1]", msgDirection)}},
		{"duplicate policy type", func(s *PolicySpec) { s.PolicyTypes = []string{Egress, Ingress, Egress} },
			[]FieldError{fe("policy_types[2]", `must not repeat "egress"`)}},
		{"ingress rules without ingress type", func(s *PolicySpec) { s.PolicyTypes = []string{Egress} },
			[]FieldError{fe("ingress", "must be empty unless policy_types contains ingress")}},
		{"egress rules without egress type", func(s *PolicySpec) { s.PolicyTypes = []string{Ingress} },
			[]FieldError{fe("egress", "must be empty unless policy_types contains egress")}},
		{"nested paths", func(s *PolicySpec) {
			s.Ingress = append(s.Ingress, IngressRule{
				From:  []Peer{{CIDR: "10.0.0.0/8"}, {CIDR: "10.0.0.0/8", Except: []string{"10.0.0.0/8"}}},
				Ports: []Port{{Protocol: "tcp", Port: ptr(8080), EndPort: ptr(80)}},
			})
			s.Egress[0].Ports = []Port{{Protocol: "gre"}}
		}, []FieldError{
			fe("ingress[1].from[1].except[0]", "must be strictly inside cidr 10.0.0.0/8"),
			fe("ingress[1].ports[0].end_port", "must be at least port (8080)"),
			fe("egress[0].ports[0].protocol", msgProtocol),
		}},
	})
}

func TestPolicyCreateValidate_RequiresProject(t *testing.T) {
	t.Parallel()
	if got := (PolicyCreate{ProjectID: "p1", PolicySpec: validSpec()}).Validate(); got != nil {
		t.Errorf("valid create: %v", got)
	}
	want := []FieldError{fe("project_id", "is required"), fe("policy_types", msgPolicyTypes)}
	got := PolicyCreate{PolicySpec: PolicySpec{Name: "x"}}.Validate()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestPolicyPatchMerge_ChecksTheResultingPolicy(t *testing.T) {
	t.Parallel()
	cur := validSpec().Normalize()

	t.Run("own field errors come first and leave the policy alone", func(t *testing.T) {
		t.Parallel()
		got, errs := PolicyPatch{Name: ptr("Bad"), PolicyTypes: &[]string{}}.Merge(cur)
		want := []FieldError{fe("name", msgName), fe("policy_types", msgPolicyTypes)}
		if diff := cmp.Diff(want, errs); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(cur, got); diff != "" {
			t.Errorf("policy changed (-want +got):\n%s", diff)
		}
	})
	t.Run("dropping a type whose rules stay is an error", func(t *testing.T) {
		t.Parallel()
		_, errs := PolicyPatch{PolicyTypes: &[]string{Egress}}.Merge(cur)
		want := []FieldError{fe("ingress", "must be empty unless policy_types contains ingress")}
		if diff := cmp.Diff(want, errs); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("dropping a type with its rules is fine and normalized", func(t *testing.T) {
		t.Parallel()
		got, errs := PolicyPatch{PolicyTypes: &[]string{Egress}, Ingress: &[]IngressRule{}, Description: ptr("db only")}.Merge(cur)
		if errs != nil {
			t.Fatal(errs)
		}
		want := cur
		want.PolicyTypes = []string{Egress}
		want.Ingress = []IngressRule{}
		want.Description = "db only"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("an empty patch changes nothing", func(t *testing.T) {
		t.Parallel()
		got, errs := PolicyPatch{}.Merge(cur)
		if errs != nil {
			t.Fatal(errs)
		}
		if diff := cmp.Diff(cur, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestEnvironmentCreateValidate(t *testing.T) {
	t.Parallel()
	wantFieldErrors(t, EnvironmentCreate.Validate, []fieldErrorCase[EnvironmentCreate]{
		{"minimal", EnvironmentCreate{ProjectID: "p", Name: "dev"}, nil},
		{"full at the limits", EnvironmentCreate{ProjectID: "p", Name: "dev", Labels: map[string]string{"a": "b"},
			Resources:  &ResourcesSpec{CPUMillis: ptr[int64](100), MemoryMB: ptr[int64](262144), DiskGB: ptr[int64](1)},
			TTLSeconds: ptr[int64](MaxTTLSeconds)}, nil},
		{"everything wrong", EnvironmentCreate{Name: "Dev", Labels: map[string]string{"a": " "},
			Resources:  &ResourcesSpec{CPUMillis: ptr[int64](99), MemoryMB: ptr[int64](262145), DiskGB: ptr[int64](0)},
			TTLSeconds: ptr[int64](0)}, []FieldError{
			fe("project_id", "is required"),
			fe("name", msgName),
			fe(`labels["a"]`, msgLabelValue),
			fe("resources.cpu_millis", "must be between 100 and 64000"),
			fe("resources.memory_mb", "must be between 64 and 262144"),
			fe("resources.disk_gb", "must be between 1 and 2048"),
			fe("ttl_seconds", "must be between 1 and 31536000"),
		}},
		{"cpu above max", EnvironmentCreate{ProjectID: "p", Name: "dev", Resources: &ResourcesSpec{CPUMillis: ptr[int64](64001)}},
			[]FieldError{fe("resources.cpu_millis", "must be between 100 and 64000")}},
		{"ttl above a year", EnvironmentCreate{ProjectID: "p", Name: "dev", TTLSeconds: ptr[int64](MaxTTLSeconds + 1)},
			[]FieldError{fe("ttl_seconds", "must be between 1 and 31536000")}},
	})
}

func TestPatchValidate_ChecksOnlyPresentFields(t *testing.T) {
	t.Parallel()
	wantFieldErrors(t, validator.Validate, []fieldErrorCase[validator]{
		{"empty environment patch", EnvironmentPatch{}, nil},
		{"ttl 0 clears", EnvironmentPatch{TTLSeconds: ptr[int64](0)}, nil},
		{"negative ttl", EnvironmentPatch{TTLSeconds: ptr[int64](-1)},
			[]FieldError{fe("ttl_seconds", "must be between 0 and 31536000 (0 removes the TTL)")}},
		{"environment patch fields", EnvironmentPatch{Name: ptr(""), Description: ptr(strings.Repeat("d", 1025)),
			Labels: &map[string]string{"k": "-"}, Resources: &ResourcesSpec{MemoryMB: ptr[int64](63)}}, []FieldError{
			fe("name", "is required; "+msgName),
			fe("description", "must be at most 1024 characters (got 1025)"),
			fe(`labels["k"]`, msgLabelValue),
			fe("resources.memory_mb", "must be between 64 and 262144"),
		}},
		{"empty project patch", ProjectPatch{}, nil},
		{"project patch", ProjectPatch{Name: ptr("ok"), Labels: &map[string]string{"a/b/c": ""}},
			[]FieldError{fe(`labels["a/b/c"]`, msgLabelKey)}},
		{"project create", ProjectCreate{Name: "payments", Labels: map[string]string{"team": "pay"}}, nil},
		{"project create without name", ProjectCreate{}, []FieldError{fe("name", "is required; "+msgName)}},
		{"empty policy patch", PolicyPatch{}, nil},
		{"policy patch rules", PolicyPatch{Ingress: &[]IngressRule{{From: []Peer{{}}}}, Egress: &[]EgressRule{{Ports: []Port{{Port: ptr(0)}}}}},
			[]FieldError{fe("ingress[0].from[0]", msgPeerOneOf), fe("egress[0].ports[0].port", msgPortRange)}},
		{"configure", EnvironmentConfigure{Description: ptr("x"), Policy: &ConfigurePolicy{
			Ingress: []IngressRule{{From: []Peer{{CIDR: "10.0.0.1/8"}}}},
			Egress:  []EgressRule{{To: []Peer{{CIDR: "::/0"}}, Ports: []Port{{Protocol: "udp", Port: ptr(53)}}}},
		}}, []FieldError{fe("policy.ingress[0].from[0].cidr", "must not have host bits set: use 10.0.0.0/8")}},
		{"configure resources and labels", EnvironmentConfigure{Labels: &map[string]string{"": ""}, Resources: &ResourcesSpec{DiskGB: ptr[int64](2049)}},
			[]FieldError{fe(`labels[""]`, msgLabelKey), fe("resources.disk_gb", "must be between 1 and 2048")}},
	})
}

func TestCheckRequestValidate(t *testing.T) {
	t.Parallel()
	wantFieldErrors(t, CheckRequest.Validate, []fieldErrorCase[CheckRequest]{
		{"tcp", CheckRequest{Direction: Ingress, Protocol: "tcp", Address: "10.0.0.1", Port: 443}, nil},
		{"protocol defaults to tcp", CheckRequest{Direction: Egress, Address: "2001:db8::1", Port: 65535}, nil},
		{"icmp without port", CheckRequest{Direction: Egress, Protocol: "icmp", Address: "::ffff:10.0.0.1"}, nil},
		{"tcp without port", CheckRequest{Direction: Ingress, Protocol: "tcp", Address: "10.0.0.1"},
			[]FieldError{fe("port", "must be between 1 and 65535 for tcp")}},
		{"udp port too high", CheckRequest{Direction: Ingress, Protocol: "udp", Address: "10.0.0.1", Port: 65536},
			[]FieldError{fe("port", "must be between 1 and 65535 for udp")}},
		{"icmp with port", CheckRequest{Direction: Ingress, Protocol: "icmp", Address: "10.0.0.1", Port: 8},
			[]FieldError{fe("port", "must be absent for icmp")}},
		{"everything wrong", CheckRequest{Direction: "in", Protocol: "gre", Address: "10.0.0.0/8"}, []FieldError{
			fe("direction", msgDirection),
			fe("address", "must be an IPv4 or IPv6 address, such as 10.1.2.3 or 2001:db8::1, or on egress a host name"),
			fe("protocol", msgProtocol),
		}},
		{"zone", CheckRequest{Direction: Ingress, Address: "fe80::1%eth0", Port: 1},
			[]FieldError{fe("address", "must be an IPv4 or IPv6 address, such as 10.1.2.3 or 2001:db8::1, or on egress a host name")}},
		{"host name on egress", CheckRequest{Direction: Egress, Address: "Registry.npmjs.org.", Port: 443}, nil},
		{"host name on ingress", CheckRequest{Direction: Ingress, Address: "registry.npmjs.org", Port: 443},
			[]FieldError{fe("address", "must be an IPv4 or IPv6 address, such as 10.1.2.3 or 2001:db8::1, or on egress a host name")}},
	})
}

func TestTokenCreateValidate_ScopesRolesToProjects(t *testing.T) {
	t.Parallel()
	wantFieldErrors(t, TokenCreate.Validate, []fieldErrorCase[TokenCreate]{
		{"admin", TokenCreate{Name: "ci", Role: RoleAdmin}, nil},
		{"auditor", TokenCreate{Name: "siem", Role: RoleAuditor}, nil},
		{"editor", TokenCreate{Name: "deploy", Role: RoleEditor, ProjectID: "p"}, nil},
		{"viewer", TokenCreate{Name: "dash", Role: RoleViewer, ProjectID: "p"}, nil},
		{"developer", TokenCreate{Name: "alice", Role: RoleDeveloper, ProjectID: "p"}, nil},
		{"viewer granted developer", TokenCreate{Name: "bob", Role: RoleViewer, ProjectID: "p", Developer: true}, nil},
		{"editor granted developer", TokenCreate{Name: "bob", Role: RoleEditor, ProjectID: "p", Developer: true}, nil},
		{"auditor granted developer", TokenCreate{Name: "sre", Role: RoleAuditor, Developer: true}, nil},
		{"admin granted developer", TokenCreate{Name: "ci", Role: RoleAdmin, Developer: true},
			[]FieldError{fe("developer", "must be absent or false for role admin: it already may exec")}},
		{"developer granted developer", TokenCreate{Name: "alice", Role: RoleDeveloper, ProjectID: "p", Developer: true},
			[]FieldError{fe("developer", "must be absent or false for role developer: it already may exec")}},
		{"developer without project", TokenCreate{Name: "alice", Role: RoleDeveloper},
			[]FieldError{fe("project_id", "is required for role developer")}},
		{"session", TokenCreate{Name: "s", Role: RoleSession, ProjectID: "p"},
			[]FieldError{fe("role", "session tokens are minted for one environment with POST /v1/environments/{id}/session-tokens")}},
		{"editor without project", TokenCreate{Name: "deploy", Role: RoleEditor},
			[]FieldError{fe("project_id", "is required for role editor")}},
		{"viewer without project", TokenCreate{Name: "dash", Role: RoleViewer},
			[]FieldError{fe("project_id", "is required for role viewer")}},
		{"admin with project", TokenCreate{Name: "ci", Role: RoleAdmin, ProjectID: "p"},
			[]FieldError{fe("project_id", "must be absent for role admin: admin tokens are organization-wide")}},
		{"auditor with project", TokenCreate{Name: "ci", Role: RoleAuditor, ProjectID: "p"},
			[]FieldError{fe("project_id", "must be absent for role auditor: auditor tokens are organization-wide")}},
		{"unknown role, bad name", TokenCreate{Name: "CI bot", Role: "owner"}, []FieldError{
			fe("name", msgName),
			fe("role", "must be one of admin, auditor, editor, developer, viewer"),
		}},
	})
}

func TestSessionTokenCreateValidate_TakesADurationFromAMinuteToADay(t *testing.T) {
	t.Parallel()
	wantFieldErrors(t, SessionTokenCreate.Validate, []fieldErrorCase[SessionTokenCreate]{
		{"default", SessionTokenCreate{}, nil},
		{"a minute", SessionTokenCreate{TTL: "1m"}, nil},
		{"a day", SessionTokenCreate{TTL: "24h"}, nil},
		{"mixed units", SessionTokenCreate{TTL: "1h30m"}, nil},
		{"too short", SessionTokenCreate{TTL: "59s"}, []FieldError{fe("ttl", "must be between 1m and 24h, got 59s")}},
		{"too long", SessionTokenCreate{TTL: "24h1s"}, []FieldError{fe("ttl", "must be between 1m and 24h, got 24h1s")}},
		{"negative", SessionTokenCreate{TTL: "-15m"}, []FieldError{fe("ttl", "must be between 1m and 24h, got -15m")}},
		{"no unit", SessionTokenCreate{TTL: "900"}, []FieldError{fe("ttl", `must be a duration such as 15m or 1h30m, got "900"`)}},
	})
	for in, want := range map[string]time.Duration{"": DefaultSessionTTL, "1m": time.Minute, "1h30m": 90 * time.Minute} {
		if got := (SessionTokenCreate{TTL: in}).Duration(); got != want {
			t.Errorf("Duration of ttl %q = %s, want %s", in, got, want)
		}
	}
}

func TestNormalize_FillsDefaultsAndNeverReturnsNullLists(t *testing.T) {
	t.Parallel()
	in := PolicySpec{
		Name:        "p",
		PolicyTypes: []string{Ingress},
		Ingress: []IngressRule{
			{},
			{From: []Peer{{CIDR: "10.0.0.0/8", Except: []string{}}, {EnvironmentSelector: &Selector{}}}, Ports: []Port{{Port: ptr(80)}, {Protocol: "icmp"}}},
		},
	}
	got, err := json.Marshal(in.Normalize())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"p","description":"","environment_selector":{"match_labels":{}},"policy_types":["ingress"],` +
		`"ingress":[{"from":[],"ports":[]},{"from":[{"cidr":"10.0.0.0/8"},{"environment_selector":{"match_labels":{}}}],` +
		`"ports":[{"protocol":"tcp","port":80},{"protocol":"icmp"}]}],"egress":[]}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNormalize_RoundTripsByteForByte(t *testing.T) {
	t.Parallel()
	// encode is the normalized form as it goes over the wire.
	encode := func(s PolicySpec) []byte {
		b, err := json.Marshal(s.Normalize())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := encode(validSpec())
	var back PolicySpec
	if err := json.Unmarshal(first, &back); err != nil {
		t.Fatal(err)
	}
	if second := encode(back); string(first) != string(second) {
		t.Errorf("a client sending the normalized form gets back something else:\n sent %s\n got  %s", first, second)
	}
}

func TestNormalize_DoesNotAliasItsInput(t *testing.T) {
	t.Parallel()
	in := validSpec()
	out := in.Normalize()
	*out.Ingress[0].Ports[0].Port = 1
	out.Ingress[0].From[0].Except[0] = "changed"
	out.EnvironmentSelector.MatchLabels["tier"] = "changed"
	out.Egress[0].To[0].EnvironmentSelector.MatchLabels["tier"] = "changed"
	out.PolicyTypes[0] = "changed"
	if diff := cmp.Diff(validSpec(), in); diff != "" {
		t.Errorf("input changed through the output (-want +got):\n%s", diff)
	}
}

func FuzzParseLabelSelector(f *testing.F) {
	for _, s := range []string{"", "team=payments,tier=dev", "a=", "example.com/x=y", "a=b,a=c", "=,="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseLabelSelector(s)
		if err != nil {
			return
		}
		// Whatever parses is a valid label set, and reparses to itself.
		if fe := ValidateLabels("labels", sel); fe != nil {
			t.Fatalf("%q parsed to invalid labels %v: %v", s, sel, fe)
		}
		var terms []string
		for k, v := range sel {
			terms = append(terms, k+"="+v)
		}
		again, err := ParseLabelSelector(strings.Join(terms, ","))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sel, again); diff != "" {
			t.Fatalf("reparse (-want +got):\n%s", diff)
		}
	})
}

func TestWorkloadSpecValidate_NamedPortsAreUniqueServiceNames(t *testing.T) {
	t.Parallel()
	const f = "workload.ports"
	wantFieldErrors(t, func(in []WorkloadPort) []FieldError {
		return WorkloadSpec{Image: "busybox", Ports: in}.Validate("workload")
	}, []fieldErrorCase[[]WorkloadPort]{
		{"tcp, udp and sctp", []WorkloadPort{{Name: "http", Port: 80}, {Name: "dns", Port: 53, Protocol: "udp"}, {Name: "serve-81", Port: 81, Protocol: "sctp"}}, nil},
		{"duplicate name", []WorkloadPort{{Name: "http", Port: 80}, {Name: "http", Port: 81}},
			[]FieldError{fe(f+"[1].name", `must be unique: "http" names another port of the workload`)}},
		{"bad name, port and protocol", []WorkloadPort{{Name: "80", Port: 0, Protocol: "icmp"}}, []FieldError{
			fe(f+"[0].name", msgPortName),
			fe(f+"[0].port", msgPortRange),
			fe(f+"[0].protocol", "must be one of tcp, udp, sctp"),
		}},
	})
}
