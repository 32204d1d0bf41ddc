package siem_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
)

// ocsfRequired are the attributes OCSF 1.3 requires of every event and of
// the objects it requires, as paths; "a|b" is satisfied by either (the
// schema's at_least_one constraints).
var ocsfRequired = []string{
	"activity_id", "category_uid", "class_uid", "type_uid", "time", "severity_id",
	"metadata.version", "metadata.product.name", "metadata.product.vendor_name",
	// Recommended, but what receivers drop duplicates and order by.
	"metadata.uid", "metadata.sequence", "status_id",
}

// ocsfClassRequired are each class's own required attributes.
var ocsfClassRequired = map[int][]string{
	6003: {"actor.user.name|actor.user.uid|actor.app_name", "api.operation", "src_endpoint.ip|src_endpoint.hostname|src_endpoint.name"},
	3002: {"user.name|user.uid", "service.name|dst_endpoint.ip", "src_endpoint.ip|src_endpoint.hostname|src_endpoint.name"},
	// Network's at_least_one of src_endpoint and dst_endpoint; the
	// rest is recommended, and what a flow record always has.
	4001: {"src_endpoint.ip|src_endpoint.uid|dst_endpoint.ip|dst_endpoint.uid", "connection_info.direction_id", "traffic.packets", "action_id", "disposition_id"},
}

func ocsfOf(t *testing.T, r siem.Record) map[string]any {
	t.Helper()
	enc, err := siem.FormatterFor(siem.FormatOCSF)
	if err != nil {
		t.Fatal(err)
	}
	b, err := enc(r)
	if err != nil {
		t.Fatal(err)
	}
	var o map[string]any
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("OCSF output is not a JSON object: %v\n%s", err, b)
	}
	return o
}

// lookup finds a dotted path's value; absent, nil, "" and 0 do not count
// as given (0 is "Unknown" in every OCSF enum), except where zero is a
// value of its own (traffic counters).
func lookup(o map[string]any, path string) (any, bool) {
	var v any = o
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	switch x := v.(type) {
	case nil:
		return nil, false
	case string:
		return v, x != ""
	case float64:
		return v, x != 0 || strings.HasPrefix(path, "traffic.")
	}
	return v, true
}

func checkOCSF(t *testing.T, name string, o map[string]any, class int, want map[string]any) {
	t.Helper()
	for _, path := range append(append([]string{}, ocsfRequired...), ocsfClassRequired[class]...) {
		found := false
		for _, alt := range strings.Split(path, "|") {
			if _, ok := lookup(o, alt); ok {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: class %d: required %s missing in %v", name, class, path, o)
		}
	}
	if got, _ := lookup(o, "class_uid"); got != float64(class) {
		t.Errorf("%s: class_uid %v, want %d", name, got, class)
	}
	cat, _ := lookup(o, "category_uid")
	act, _ := lookup(o, "activity_id")
	if typ, _ := lookup(o, "type_uid"); typ != float64(class*100)+act.(float64) || cat != float64(class/1000) {
		t.Errorf("%s: type_uid %v category_uid %v for class %d activity %v", name, typ, cat, class, act)
	}
	for path, v := range want {
		if got, _ := lookup(o, path); got != v {
			t.Errorf("%s: %s = %v, want %v", name, path, got, v)
		}
	}
}

var when = time.Date(2026, 12, 2, 10, 30, 0, 123456789, time.UTC)

func auditRecord(ev apiv1.AuditEvent) siem.Record {
	ev.Time = when
	if ev.ID == "" {
		ev.ID = "evt_0001"
	}
	if ev.Seq == 0 {
		ev.Seq = 7
	}
	ev.Hash = "h7"
	return siem.Record{Source: siem.SourceAudit, Pos: ev.Seq, Audit: &ev}
}

// API Activity (6003): every API call, whatever its outcome, and the
// server's own changes (no source address).
func TestOCSF_APIActivityFillsEveryRequiredAttribute(t *testing.T) {
	t.Parallel()
	admin := apiv1.Actor{TokenID: "tok_1", Name: "admin"}
	for _, c := range []struct {
		name string
		ev   apiv1.AuditEvent
		want map[string]any
	}{
		{"create", apiv1.AuditEvent{Actor: admin, Source: apiv1.Source{IP: "198.18.0.9", UserAgent: "terraform"}, Action: "environment.create",
			Resource: apiv1.ResourceRef{Type: "environment", ID: "env_1"}, Outcome: apiv1.OutcomeSuccess, StatusCode: 202, RequestID: "req_1"},
			map[string]any{"activity_id": 1.0, "status_id": 1.0, "severity_id": 1.0, "api.operation": "environment.create", "src_endpoint.ip": "198.18.0.9",
				"actor.user.uid": "tok_1", "http_response.code": 202.0, "api.request.uid": "req_1", "metadata.uid": "evt_0001", "metadata.sequence": 7.0}},
		{"denied delete", apiv1.AuditEvent{Actor: admin, Source: apiv1.Source{IP: "198.18.0.9"}, Action: "policy.delete", Resource: apiv1.ResourceRef{Type: "policy", ID: "pol_1"},
			Outcome: apiv1.OutcomeDenied, StatusCode: 403, Reason: "role viewer"},
			map[string]any{"activity_id": 4.0, "status_id": 2.0, "severity_id": 3.0, "status_detail": "role viewer", "status_code": "403"}},
		{"failed update", apiv1.AuditEvent{Actor: admin, Source: apiv1.Source{IP: "::1"}, Action: "environment.update", Outcome: apiv1.OutcomeFailure, StatusCode: 500},
			map[string]any{"activity_id": 3.0, "status_id": 2.0, "severity_id": 2.0}},
		{"server's own", apiv1.AuditEvent{Actor: apiv1.Actor{Name: "isolationd"}, Action: "environment.expire", Resource: apiv1.ResourceRef{Type: "environment", ID: "env_2"}, Outcome: apiv1.OutcomeSuccess},
			map[string]any{"src_endpoint.name": "isolationd", "actor.user.name": "isolationd"}},
		{"other verb", apiv1.AuditEvent{Actor: admin, Source: apiv1.Source{IP: "198.18.0.9"}, Action: "siem.lagging", Outcome: apiv1.OutcomeFailure},
			map[string]any{"activity_id": 99.0, "activity_name": "Other"}},
	} {
		checkOCSF(t, c.name, ocsfOf(t, auditRecord(c.ev)), 6003, c.want)
	}
}

// Authentication (3002): a request whose bearer token was refused, one by
// one or counted in an aggregate.
func TestOCSF_AuthenticationFillsEveryRequiredAttribute(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		ev   apiv1.AuditEvent
		want map[string]any
	}{
		{"revoked token", apiv1.AuditEvent{Actor: apiv1.Actor{Name: "anonymous"}, Source: apiv1.Source{IP: "198.18.0.7", UserAgent: "curl"}, Action: "auth.denied",
			Outcome: apiv1.OutcomeDenied, StatusCode: 401, Reason: "revoked token tok_9"},
			map[string]any{"activity_id": 1.0, "status_id": 2.0, "user.uid": "tok_9", "service.name": "isolationd", "is_remote": true,
				"status_detail": "revoked token tok_9", "http_request.user_agent": "curl"}},
		{"aggregate", apiv1.AuditEvent{Actor: apiv1.Actor{Name: "anonymous"}, Source: apiv1.Source{IP: "198.18.0.7"}, Action: "auth.denied.aggregate",
			Outcome: apiv1.OutcomeDenied, StatusCode: 401, Changes: &apiv1.Changes{After: apiv1.DenialAggregate{Count: 12}}},
			map[string]any{"count": 12.0, "user.name": "anonymous"}},
	} {
		checkOCSF(t, c.name, ocsfOf(t, auditRecord(c.ev)), 3002, c.want)
	}
}

// Network Activity (4001): flow records, allowed (Traffic) or denied
// (Refuse), egress or ingress, with or without a peer.
func TestOCSF_NetworkActivityFillsEveryRequiredAttribute(t *testing.T) {
	t.Parallel()
	rule := 2
	for _, c := range []struct {
		name string
		f    siem.Flow
		want map[string]any
	}{
		{"allowed egress", siem.Flow{ID: 41, EnvironmentID: "env_1", ProjectID: "prj_1", Direction: "egress", Protocol: "tcp", SrcAddress: "198.18.0.2", SrcPort: 40000,
			DstAddress: "198.19.0.5", DstPort: 443, FQDN: "api.example", Verdict: siem.VerdictAllowed, PolicyID: "pol_1", Rule: &rule, Packets: 10, Bytes: 4200, Count: 1},
			map[string]any{"src_endpoint.ip": "198.18.0.2", "dst_endpoint.ip": "198.19.0.5", "activity_id": 6.0, "action_id": 1.0, "disposition_id": 1.0, "status_id": 1.0, "src_endpoint.uid": "env_1", "dst_endpoint.port": 443.0,
				"dst_endpoint.hostname": "api.example", "connection_info.direction_id": 2.0, "connection_info.protocol_num": 6.0, "traffic.bytes": 4200.0,
				"firewall_rule.uid": "pol_1", "firewall_rule.name": "rule 2", "metadata.uid": "flow-41", "metadata.sequence": 41.0}},
		{"denied ingress", siem.Flow{ID: 42, EnvironmentID: "env_1", Direction: "ingress", Protocol: "udp", SrcAddress: "198.19.0.9", DstAddress: "198.18.0.2", DstPort: 53,
			Verdict: siem.VerdictDenied, Packets: 3, Count: 3},
			map[string]any{"activity_id": 5.0, "action_id": 2.0, "disposition_id": 2.0, "status_id": 2.0, "dst_endpoint.uid": "env_1", "connection_info.direction_id": 1.0, "count": 3.0}},
		{"denied, peers not itemised", siem.Flow{ID: 43, EnvironmentID: "env_1", Direction: "egress", SrcAddress: "198.18.0.2", Verdict: siem.VerdictDenied, Packets: 900, Count: 900},
			map[string]any{"activity_id": 5.0, "src_endpoint.ip": "198.18.0.2", "traffic.packets": 900.0}},
	} {
		f := c.f
		f.Time, f.FirstSeen, f.LastSeen = when, when.Add(-time.Second), when
		o := ocsfOf(t, siem.Record{Source: siem.SourceFlows, Pos: f.ID, Flow: &f})
		if _, ok := o["dst_endpoint"]; ok && c.f.DstAddress == "" {
			t.Errorf("%s: a flow without a peer has a dst_endpoint: %v", c.name, o["dst_endpoint"])
		}
		checkOCSF(t, c.name, o, 4001, c.want)
	}
}
