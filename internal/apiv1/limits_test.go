package apiv1

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func rules(n, peers, ports, excepts int) []IngressRule {
	out := make([]IngressRule, n)
	for i := range out {
		for range peers {
			p := Peer{CIDR: "10.0.0.0/8"}
			for k := range excepts {
				p.Except = append(p.Except, fmt.Sprintf("10.%d.0.0/16", k))
			}
			out[i].From = append(out[i].From, p)
		}
		for j := range ports {
			out[i].Ports = append(out[i].Ports, Port{Port: ptr(1 + j)})
		}
	}
	return out
}

func TestValidatePolicyLimits_CountsOverTheWholePolicyAndNamesTheFirstEntryPast(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		ingress []IngressRule
		egress  []EgressRule
		want    []FieldError
	}{
		{"every limit reached", rules(1, 100, 100, 1), nil, nil},
		{"100 rules over both directions", rules(60, 0, 0, 0), make([]EgressRule, 40), nil},
		{"101 rules", rules(60, 0, 0, 0), make([]EgressRule, 41), []FieldError{
			fe("egress[40]", "is past the limit of 100 rules per policy (ingress and egress together): it has 101")}},
		{"101 peers over two rules", rules(2, 50, 0, 0), []EgressRule{{To: []Peer{{CIDR: "10.0.0.0/8"}}}}, []FieldError{
			fe("egress[0].to[0]", "is past the limit of 100 peers per policy (from and to entries over all rules): it has 101")}},
		{"101 ports", rules(1, 0, 101, 0), nil, []FieldError{
			fe("ingress[0].ports[100]", "is past the limit of 100 ports per policy (over all rules): it has 101")}},
		{"102 except entries", rules(1, 2, 0, 51), nil, []FieldError{
			fe("ingress[0].from[1].except[49]", "is past the limit of 100 except entries per policy (over all peers): it has 102")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, ValidatePolicyLimits("", tc.ingress, tc.egress)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLabelLimits_CountLabelsAndTheirBytes(t *testing.T) {
	t.Parallel()
	labels := func(n, valueLen int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", valueLen)
		}
		return m
	}
	if fe := ValidateLabels("labels", labels(64, 60)); fe != nil {
		t.Errorf("64 labels of 63 bytes: %v", fe)
	}
	if got := ValidateLabels("labels", labels(65, 1)); len(got) != 1 || got[0].Field != "labels" || !strings.Contains(got[0].Message, "limit of 64 labels per object: it has 65") {
		t.Errorf("65 labels: %v", got)
	}
	if got := ValidateLabels("labels", labels(64, 63)); len(got) != 1 || !strings.Contains(got[0].Message, "limit of 4096 bytes of labels per object") {
		t.Errorf("4,288 bytes: %v", got)
	}
	if got := ValidateSelector("environment_selector", Selector{MatchLabels: labels(17, 1)}); len(got) != 1 || got[0].Field != "environment_selector.match_labels" {
		t.Errorf("17 selector labels: %v", got)
	}
	terms := strings.TrimSuffix(strings.Repeat("a=b,", MaxLabelSelectorTerms), ",")
	if _, err := ParseLabelSelector(terms); err != nil {
		t.Errorf("16 terms: %v", err)
	}
	if _, err := ParseLabelSelector(terms + ",c=d"); err == nil || !strings.Contains(err.Error(), "17 terms, past the limit of 16") {
		t.Errorf("17 terms: %v", err)
	}
}
