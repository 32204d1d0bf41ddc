package apiv1_test

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

type validator interface{ Validate() []apiv1.FieldError }

// bodyKinds are the request bodies the server decodes and validates.
var bodyKinds = []func() validator{
	func() validator { return &apiv1.ProjectCreate{} },
	func() validator { return &apiv1.ProjectPatch{} },
	func() validator { return &apiv1.EnvironmentCreate{} },
	func() validator { return &apiv1.EnvironmentPatch{} },
	func() validator { return &apiv1.EnvironmentConfigure{} },
	func() validator { return &apiv1.PolicyCreate{} },
	func() validator { return &apiv1.PolicyPatch{} },
	func() validator { return &apiv1.CheckRequest{} },
	func() validator { return &apiv1.TokenCreate{} },
	func() validator { return &apiv1.SessionTokenCreate{} },
}

// strictDecode decodes as the server does: one JSON value, no unknown
// fields, nothing after it.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// FuzzRequestBodyValidate decodes arbitrary bytes as each request body and
// validates them. Validation never panics and is deterministic, every
// error names a field of the body and a rule, and what it accepts encodes
// to JSON that decodes and validates again, to the same bytes. A policy
// patch it accepts merges into a valid policy or names why not.
func FuzzRequestBodyValidate(f *testing.F) {
	for i, s := range []string{
		`{"name":"payments","description":"team","labels":{"team":"payments","example.com/tier":"dev"}}`,
		`{"name":"Bad_Name","labels":{"-x":"y","k":"-"}}`,
		`{"labels":{}}`,
		`{"project_id":"prj_1","name":"web","labels":{"tier":"web"},"resources":{"cpu_millis":500,"memory_mb":256,"disk_gb":5},"ttl_seconds":3600}`,
		`{"ttl_seconds":0,"resources":{"memory_mb":63}}`,
		`{"description":"x","policy":{"ingress":[{"from":[{"cidr":"10.0.0.0/8"}]}],"egress":null}}`,
		`{"project_id":"prj_1","name":"db","environment_selector":{"match_labels":{"tier":"db"}},"policy_types":["ingress"],"ingress":[{"from":[{"environment_selector":{"match_labels":{"tier":"web"}}}],"ports":[{"port":5432}]}]}`,
		`{"policy_types":["egress"],"egress":[{"to":[{"cidr":"2001:db8::/32","except":["2001:db8:1::/48"]}],"ports":[{"protocol":"udp","port":53,"end_port":54}]}]}`,
		`{"direction":"egress","protocol":"tcp","address":"10.1.2.3","port":443}`,
		`{"name":"ci","role":"editor","project_id":"prj_1","expires_at":"2030-01-02T03:04:05Z"}`,
	} {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		newBody := bodyKinds[int(kind)%len(bodyKinds)]
		in := newBody()
		if strictDecode(data, in) != nil {
			return
		}
		fe := in.Validate()
		if diff := cmp.Diff(fe, in.Validate()); diff != "" {
			t.Fatalf("Validate is not deterministic:\n%s", diff)
		}
		fields := jsonFields(reflect.TypeOf(in).Elem())
		for _, e := range fe {
			root, _, _ := strings.Cut(strings.SplitN(e.Field, "[", 2)[0], ".")
			if e.Message == "" || !fields[root] {
				t.Fatalf("%T: error %+v must name a field of the body (one of %v) and a rule", in, e, fields)
			}
		}
		if fe != nil {
			return
		}
		first, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("%T accepted but does not encode: %v", in, err)
		}
		again := newBody()
		if err := strictDecode(first, again); err != nil {
			t.Fatalf("%T accepted, encoded %s, does not decode: %v", in, first, err)
		}
		if fe := again.Validate(); fe != nil {
			t.Fatalf("%T accepted, re-decoded from %s, is refused: %+v", in, first, fe)
		}
		second, err := json.Marshal(again)
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("%T does not round-trip:\n %s\n %s (%v)", in, first, second, err)
		}
		if p, ok := in.(*apiv1.PolicyPatch); ok {
			checkMerge(t, *p)
		}
	})
}

// checkMerge applies an accepted patch to policies of each shape: what
// Merge accepts is a valid, normalized policy.
func checkMerge(t *testing.T, p apiv1.PolicyPatch) {
	port := 443
	for _, cur := range []apiv1.PolicySpec{
		{Name: "in", PolicyTypes: []string{apiv1.Ingress}, Ingress: []apiv1.IngressRule{{Ports: []apiv1.Port{{Port: &port}}}}},
		{Name: "both", PolicyTypes: []string{apiv1.Egress, apiv1.Ingress}, Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{CIDR: "0.0.0.0/0"}}}}},
	} {
		cur = cur.Normalize()
		next, fe := p.Merge(cur)
		if fe != nil {
			continue
		}
		if fe := next.Validate(); fe != nil {
			t.Fatalf("merge accepted a policy that does not validate: %+v", fe)
		}
		if diff := cmp.Diff(next, next.Normalize()); diff != "" {
			t.Fatalf("merged policy is not normalized:\n%s", diff)
		}
	}
}

// jsonFields are the top-level JSON names of a struct type, embedded
// structs included.
func jsonFields(typ reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if sf.Anonymous {
			for k := range jsonFields(sf.Type) {
				out[k] = true
			}
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		out[name] = true
	}
	return out
}
