package validators

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

func TestName_AcceptsDNSLabelsAndNamesTheAttributeOtherwise(t *testing.T) {
	t.Parallel()
	p := path.Root("name")
	tests := []struct {
		value types.String
		want  []finding
	}{
		{types.StringValue("web-1"), nil},
		{types.StringNull(), nil},
		{types.StringUnknown(), nil},
		{types.StringValue("Web"), []finding{{"name", `name must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit, got "Web".`}}},
		{types.StringValue(""), []finding{{"name", `name is required; must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit, got "".`}}},
	}
	for _, tc := range tests {
		resp := &validator.StringResponse{}
		Name().ValidateString(context.Background(), validator.StringRequest{Path: p, ConfigValue: tc.value}, resp)
		if diff := cmp.Diff(tc.want, diagFindings(resp.Diagnostics)); diff != "" {
			t.Errorf("Name(%s) (-want +got):\n%s", tc.value, diff)
		}
	}
}

func TestLabels_PointsAtTheOffendingEntryAndSkipsUnknownValues(t *testing.T) {
	t.Parallel()
	p := path.Root("labels")
	m := func(elems map[string]attr.Value) types.Map { return types.MapValueMust(types.StringType, elems) }
	tests := []struct {
		name  string
		value types.Map
		want  []finding
	}{
		{"valid", m(map[string]attr.Value{"team": types.StringValue("a"), "example.com/tier": types.StringValue("")}), nil},
		{"unknown value is checked later", m(map[string]attr.Value{"team": types.StringUnknown()}), nil},
		{"null map", types.MapNull(types.StringType), nil},
		{"bad key", m(map[string]attr.Value{"bad key": types.StringValue("x")}), []finding{{
			`labels["bad key"]`, `Label "bad key": key must be a label key: an optional DNS subdomain prefix and '/', then 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit.`,
		}}},
		{"bad value", m(map[string]attr.Value{"team": types.StringValue("a b")}), []finding{{
			`labels["team"]`, `Label "team": value must be empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit.`,
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := &validator.MapResponse{}
			Labels().ValidateMap(context.Background(), validator.MapRequest{Path: p, ConfigValue: tc.value}, resp)
			if diff := cmp.Diff(tc.want, diagFindings(resp.Diagnostics)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResourceFieldAndTTL_UseTheAPIRangesAndTheFullPath(t *testing.T) {
	t.Parallel()
	res := path.Root("resources")
	tests := []struct {
		name  string
		v     validator.Int64
		path  path.Path
		value int64
		want  []finding
	}{
		{"cpu in range", ResourceField("cpu_millis"), res.AtName("cpu_millis"), 100, nil},
		{"cpu too small", ResourceField("cpu_millis"), res.AtName("cpu_millis"), 99, []finding{{"resources.cpu_millis", "resources.cpu_millis must be between 100 and 64000, got 99."}}},
		{"memory too big", ResourceField("memory_mb"), res.AtName("memory_mb"), 262145, []finding{{"resources.memory_mb", "resources.memory_mb must be between 64 and 262144, got 262145."}}},
		{"disk zero", ResourceField("disk_gb"), res.AtName("disk_gb"), 0, []finding{{"resources.disk_gb", "resources.disk_gb must be between 1 and 2048, got 0."}}},
		{"ttl one second", TTLSeconds(), path.Root("ttl_seconds"), 1, nil},
		{"ttl zero", TTLSeconds(), path.Root("ttl_seconds"), 0, []finding{{"ttl_seconds", "ttl_seconds must be between 1 and 31536000 seconds (one year); remove the attribute for no TTL, got 0."}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := &validator.Int64Response{}
			tc.v.ValidateInt64(context.Background(), validator.Int64Request{Path: tc.path, ConfigValue: types.Int64Value(tc.value)}, resp)
			if diff := cmp.Diff(tc.want, diagFindings(resp.Diagnostics)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckHTTPURL(t *testing.T) {
	t.Parallel()
	for v, ok := range map[string]bool{
		"http://127.0.0.1:8080":         true,
		"https://isolation.example.com": true,
		"isolation.example.com":         false,
		"localhost:8080":                false,
		"ftp://example.com":             false,
		"https://user:pw@example.com":   false,
		"":                              false,
	} {
		if err := CheckHTTPURL(v); (err == nil) != ok {
			t.Errorf("CheckHTTPURL(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

func TestLabels_ReportTheAPILimitsOnTheWholeMap(t *testing.T) {
	t.Parallel()
	many := func(n int, value string) types.Map {
		elems := map[string]attr.Value{}
		for i := range n {
			elems[fmt.Sprintf("k%03d", i)] = types.StringValue(value)
		}
		return types.MapValueMust(types.StringType, elems)
	}
	tests := []struct {
		name  string
		v     validator.Map
		value types.Map
		want  []finding
	}{
		{"64 labels", Labels(), many(64, "v"), nil},
		{"65 labels", Labels(), many(65, "v"), []finding{{"labels", "labels is past the limit of 64 labels per object: it has 65."}}},
		{"too many bytes", Labels(), many(64, strings.Repeat("v", 63)), []finding{{"labels", "labels is past the limit of 4096 bytes of labels per object (keys and values together): it has 4288."}}},
		{"17 selector labels", SelectorLabels(), many(17, "v"), []finding{{"labels", "labels is past the limit of 16 labels per selector: it has 17."}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := &validator.MapResponse{}
			tc.v.ValidateMap(context.Background(), validator.MapRequest{Path: path.Root("labels"), ConfigValue: tc.value}, resp)
			if diff := cmp.Diff(tc.want, diagFindings(resp.Diagnostics)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
