package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
)

// The OpenAPI document is generated from the route table and the apiv1
// types, so it cannot drift from the code; openapi.json is the committed
// result, and this test fails when it is stale. Regenerate with
//
//	UPDATE_OPENAPI=1 go test ./internal/api -run TestOpenAPIDocumentIsCurrent

func TestOpenAPIDocumentIsCurrent(t *testing.T) {
	want := generateOpenAPI(t)
	if os.Getenv("UPDATE_OPENAPI") == "1" {
		if err := os.WriteFile("openapi.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(api.OpenAPI, want) {
		t.Fatal("internal/api/openapi.json is stale: run UPDATE_OPENAPI=1 go test ./internal/api -run TestOpenAPIDocumentIsCurrent")
	}
}

type obj = map[string]any

// pathParam is a {name} wildcard of a route pattern, or a {name...} one
// that takes the rest of the path (documented as {name}).
var pathParam = regexp.MustCompile(`\{(\w+)(?:\.\.\.)?\}`)

type docGen struct {
	schemas  obj
	requests map[reflect.Type]bool // types reachable from request bodies: no required lists
}

var queryDocs = map[string]obj{
	"limit":         {"description": "Page size, 1-1000 (default 100).", "schema": obj{"type": "integer", "minimum": 1, "maximum": 1000}},
	"cursor":        {"description": "The next_cursor of the previous page.", "schema": obj{"type": "string"}},
	"project_id":    {"description": "Only objects of this project; 404 when there is no such project or it is outside the token's scope.", "schema": obj{"type": "string"}},
	"label":         {"description": "Label selector: at most 16 key=value pairs separated by commas, all of which must match (team=payments,tier=dev).", "schema": obj{"type": "string"}},
	"state":         {"description": "Only environments in this state.", "schema": obj{"type": "string", "enum": apiv1.States}},
	"wait_for":      {"description": "Answer once the environment is in one of these comma-separated states, or `enforced` (its current rules applied) or `deleted` (answered 404). A failed environment answers every wait.", "schema": obj{"type": "string"}},
	"timeout":       {"description": "How long wait_for waits (Go duration such as 30s, or seconds; default 30s). At the timeout the current object is answered with X-Wait-Timeout: true.", "schema": obj{"type": "string"}},
	"action":        {"description": "Only events with this action (environment.create...).", "schema": obj{"type": "string"}},
	"resource_type": {"description": "Only events about this kind of object.", "schema": obj{"type": "string"}},
	"resource_id":   {"description": "Only events about this object.", "schema": obj{"type": "string"}},
	"outcome":       {"description": "Only events with this outcome.", "schema": obj{"type": "string", "enum": []string{"success", "denied", "failure"}}},
	"request_id":    {"description": "Only events of this request.", "schema": obj{"type": "string"}},
	"since":         {"description": "Only events at or after this RFC 3339 time.", "schema": obj{"type": "string", "format": "date-time"}},
	"from_seq":      {"description": "The first event's seq (default 1).", "schema": obj{"type": "integer", "minimum": 1}},
	"to_seq":        {"description": "The last event's seq (default the newest).", "schema": obj{"type": "integer", "minimum": 1}},
	"verdict":       {"description": "Only records with this verdict (denied: the security events).", "schema": obj{"type": "string", "enum": []string{"allowed", "denied"}}},
	"direction":     {"description": "Only records of this direction, from the environment's side.", "schema": obj{"type": "string", "enum": []string{"ingress", "egress"}}},
	"peer":          {"description": "Only records from or to this IPv4 or IPv6 address.", "schema": obj{"type": "string"}},
	"until":         {"description": "Only records before this RFC 3339 time.", "schema": obj{"type": "string", "format": "date-time"}},
	"tail":          {"description": fmt.Sprintf("Only the last N lines (0-%d; default and at most %d, of the newest kept, about 2 MiB).", api.MaxLogTail, api.MaxLogTail), "schema": obj{"type": "integer", "minimum": 0, "maximum": api.MaxLogTail}},
	"follow":        {"description": "Keep the answer open and stream new lines, each flushed, until the client goes away or the environment is deleted.", "schema": obj{"type": "boolean"}},
	"format":        {"description": "text (the default: the lines alone) or ndjson (one {time, stream, line} object per line); wins over Accept.", "schema": obj{"type": "string", "enum": []string{"text", "ndjson"}}},
	"name":          {"description": "The image's name, as workloads give it in workload.image: a local name or a registry reference (busybox, team/dev:1.4, registry.example.com/team/dev:1.4).", "schema": obj{"type": "string", "maxLength": apiv1.MaxImageRefLength}},
}

// routeQueryDocs document a query parameter for one operation where it
// means something else than in queryDocs.
var routeQueryDocs = map[string]map[string]obj{
	"getEnvironmentLogs": {
		"since": {"description": "Only lines written at or after this time: an RFC 3339 date-time, or a duration such as 10m (that long ago).", "schema": obj{"type": "string"}},
	},
	"attachEnvironment": {
		"command":     {"description": "The program and its arguments, one parameter each, in order (command=sh&command=-c&command=...).", "schema": obj{"type": "array", "items": obj{"type": "string"}}},
		"env":         {"description": "NAME=VALUE, repeated: added to the workload's environment.", "schema": obj{"type": "array", "items": obj{"type": "string"}}},
		"working_dir": {"description": "An absolute path; default the workload's working directory.", "schema": obj{"type": "string"}},
		"uid":         {"description": "Run as this uid (default the image's user).", "schema": obj{"type": "integer", "minimum": 0, "maximum": 4294967295}},
		"gid":         {"description": "With uid: run with this gid.", "schema": obj{"type": "integer", "minimum": 0, "maximum": 4294967295}},
		"tty":         {"description": "Give the command a terminal (stdout and stderr are one stream, channel 1).", "schema": obj{"type": "boolean"}},
		"rows":        {"description": fmt.Sprintf("With tty and cols: the terminal's first size, 1-%d (default 24x80).", apiv1.MaxTerminalRows), "schema": obj{"type": "integer", "minimum": 1, "maximum": apiv1.MaxTerminalRows}},
		"cols":        {"description": fmt.Sprintf("With tty and rows: 1-%d.", apiv1.MaxTerminalCols), "schema": obj{"type": "integer", "minimum": 1, "maximum": apiv1.MaxTerminalCols}},
		"timeout":     {"description": fmt.Sprintf("End the command (SIGKILL, reason timeout) after this long, a Go duration, at most %s; default none.", apiv1.MaxExecTimeout), "schema": obj{"type": "string"}},
	},
}

// tagDocs describes each tag of the route table; the document lists them
// in the order the route table first uses them.
var tagDocs = map[string]string{
	"operations":    "Health, readiness, metrics, this document and the caller's identity.",
	"projects":      "Projects group environments and policies; only admins manage them.",
	"environments":  "Isolated environments: an asynchronous lifecycle (pending, provisioning, ready, updating, deleting), their enforcement, and what their rules allow.",
	"flows":         "Flow records: every connection an environment opened or received, allowed or denied, with the rule that allowed it; denied ones are security events (verdict=denied), with ids a reader can follow.",
	"policies":      "Network policies with Kubernetes NetworkPolicy semantics: environments are isolated until a policy selecting them allows traffic.",
	"assertions":    "A project's policy tests: traffic that must stay allowed, or denied. Every write that changes what is allowed (policies, environments, project labels) is checked against them before it commits, and refused with 422 when it would break one.",
	"tokens":        "API tokens and their roles; only admins manage them, and a secret is shown once.",
	"idempotency":   "What became of a write sent with an Idempotency-Key.",
	"audit":         "The tamper-evident audit trail.",
	"console":       "Sign-in and sign-out of the web console at /ui.",
	"images":        "The server's image store: OCI images that admins import (a tar body) or that the server pulls from a registry when a workload names one there, with their layers unpacked once and shared. Images belong to no project: every role reads them, only admins import and delete them.",
	"compatibility": "The compatibility routes: the original design's endpoints (/environments/...), served on top of the v1 model for the clients written against them. They are supported, not deprecated; new clients use the /v1 routes.",
}

var problemTitles = map[int]string{
	400: "Malformed JSON, unknown or wrongly typed fields, or validation failures (errors names each field).",
	401: "Missing, unknown, revoked or expired token.",
	403: "The token's role does not allow this; the detail names the role required (\"requires role editor: ...\").",
	404: "No such object (or outside the token's scope).",
	409: "Conflict: a duplicate name, an illegal state transition, an Idempotency-Key still in flight, a project that is not empty, or a project limit or quota that the request would pass (limit-exceeded, naming the limit).",
	410: "The environment's TTL expired and the server tore it down: expired_at and ttl_seconds say when, and what the TTL was (an environment deleted by a request answers 404).",
	412: "If-Match does not match the current ETag.",
	413: "Body larger than the route takes: 1 MiB of JSON, or the image store's bound for an image archive (4 GiB by default).",
	415: "Content-Type is not what the route takes: application/json, or application/x-tar or application/octet-stream for an image archive.",
	422: "Idempotency-Key reused with a different request.",
	429: "Rate limit exceeded; see Retry-After.",
	500: "Internal error (details are logged, never returned).",
	501: "The server was started without what the route needs (an image store).",
	503: "Not ready, or the store cannot write for now (read-only or failing disk); see Retry-After.",
	507: "The server's disk is full: nothing was changed; retry after Retry-After.",
}

func generateOpenAPI(t *testing.T) []byte {
	g := &docGen{schemas: obj{}, requests: map[reflect.Type]bool{}}
	for _, rt := range api.Routes() {
		if rt.Doc.Request != nil {
			g.markRequest(reflect.TypeOf(rt.Doc.Request))
		}
	}
	g.schemas["Problem"] = g.schemaOf(reflect.TypeOf(apiv1.Problem{}))
	paths := obj{}
	var tags []obj
	tagged := map[string]bool{}
	for _, rt := range api.Routes() {
		if !tagged[rt.Doc.Tag] {
			desc, ok := tagDocs[rt.Doc.Tag]
			if !ok {
				t.Fatalf("%s %s: tag %q is not described in tagDocs", rt.Method, rt.Pattern, rt.Doc.Tag)
			}
			tagged[rt.Doc.Tag] = true
			tags = append(tags, obj{"name": rt.Doc.Tag, "description": desc})
		}
		path := pathParam.ReplaceAllString(rt.Pattern, "{$1}")
		item, _ := paths[path].(obj)
		if item == nil {
			item = obj{}
			paths[path] = item
		}
		item[strings.ToLower(rt.Method)] = g.operation(t, rt)
	}
	doc := obj{
		"openapi": "3.1.0",
		"info": obj{
			"title":       "isolationd API",
			"version":     "1.0.0",
			"description": "The environment-isolation control plane: projects, environments with an asynchronous lifecycle, network policies (Kubernetes NetworkPolicy semantics, isolated by default), enforcement and a tamper-evident audit trail. Errors are RFC 9457 problems. Every object carries an ETag; PATCH and DELETE honour If-Match. POSTs that create honour Idempotency-Key. Every response carries X-Request-Id.",
		},
		"servers":  []obj{{"url": "http://127.0.0.1:8080"}},
		"security": []obj{{"bearerAuth": []string{}}, {"consoleSession": []string{}}},
		"tags":     tags,
		"paths":    paths,
		"components": obj{
			"schemas": g.schemas,
			"securitySchemes": obj{
				"bearerAuth":     obj{"type": "http", "scheme": "bearer", "description": "An API token: the bootstrap admin token (DATA_DIR/admin.token or ISOLATIOND_BOOTSTRAP_TOKEN), or one made with POST /v1/tokens. Roles: admin (everything, exec included), auditor (reads everything and the audit log), editor of a project (reads it, changes its environments and policies), developer of a project (reads its environments and execs into them, nothing else), viewer of a project (reads its environments, policies, effective policy and check); editor, viewer and auditor tokens made with developer: true may also exec in their scope; the roles but developer read the image store, only admins import and delete images. A session token (role session, minted by POST /v1/environments/{id}/session-tokens) execs into its one environment and calls whoami, nothing else. Objects of projects outside a token's scope (for a session token: of other environments) answer 404; a request its role does not allow answers 403 naming the role it requires."},
				"consoleSession": obj{"type": "apiKey", "in": "cookie", "name": api.SessionCookie, "description": "The web console's session cookie, set by POST /v1/ui/sessions: it authenticates as the token that signed in, with its scope and role, but only for reads (a route that changes anything answers 403), and a request other than GET or HEAD must come from the server's own origin (Sec-Fetch-Site or Origin)."},
			},
			"headers": obj{
				"X-Request-Id": obj{"description": "The request's id, as sent or generated.", "schema": obj{"type": "string"}},
				"ETag":         obj{"description": "The object's strong ETag, \"<generation>\".", "schema": obj{"type": "string"}},
			},
		},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (g *docGen) operation(t *testing.T, rt api.Route) obj {
	d := rt.Doc
	op := obj{"operationId": d.OperationID, "summary": d.Summary, "tags": []string{d.Tag}}
	if rt.Perm.Public {
		op["security"] = []obj{}
	}
	if d.Tag == "compatibility" {
		// Supported, not deprecated: said where a reader of an old route
		// would ask.
		op["deprecated"] = false
	}
	var params []obj
	for _, m := range pathParam.FindAllStringSubmatch(rt.Pattern, -1) {
		params = append(params, obj{"name": m[1], "in": "path", "required": true, "schema": obj{"type": "string"}})
	}
	for _, q := range d.Query {
		qd, ok := routeQueryDocs[d.OperationID][q]
		if !ok {
			qd, ok = queryDocs[q]
		}
		if !ok {
			t.Fatalf("%s %s: query parameter %q is not documented in queryDocs", rt.Method, rt.Pattern, q)
		}
		// The server reads an empty value as an absent one (cursor= asks
		// for the first page), so the document allows it.
		p := obj{"name": q, "in": "query", "allowEmptyValue": true}
		for k, v := range qd {
			p[k] = v
		}
		params = append(params, p)
	}
	params = append(params, obj{"name": "X-Request-Id", "in": "header", "description": "Correlates logs and audit events; generated when absent. 1-128 characters of letters, digits and ._:/+=@-.", "schema": obj{"type": "string", "maxLength": 128}})
	if rt.Method == "PATCH" || rt.Method == "DELETE" || rt.Method == "PUT" {
		params = append(params, obj{"name": "If-Match", "in": "header", "description": "Only change the object if its ETag is one of these (or *).", "schema": obj{"type": "string"}})
	}
	if rt.Idempotent {
		params = append(params, obj{"name": "Idempotency-Key", "in": "header", "description": "A retry with the same key and body replays the first response (Idempotent-Replayed: true); kept 24 hours.", "schema": obj{"type": "string", "maxLength": 255}})
	}
	op["parameters"] = params
	if d.Request != nil {
		op["requestBody"] = obj{"required": true, "content": obj{apiv1.MediaJSON: obj{"schema": g.ref(reflect.TypeOf(d.Request))}}}
	}
	if len(d.RequestMedia) > 0 {
		content := obj{}
		for _, mt := range d.RequestMedia {
			content[mt] = obj{"schema": obj{"type": "string", "format": "binary"}}
		}
		op["requestBody"] = obj{"required": true, "content": content}
	}
	responses := obj{}
	success := obj{"description": http.StatusText(d.Status), "headers": obj{"X-Request-Id": obj{"$ref": "#/components/headers/X-Request-Id"}}}
	switch {
	case d.Response != nil:
		success["content"] = obj{apiv1.MediaJSON: obj{"schema": g.ref(reflect.TypeOf(d.Response))}}
		if _, ok := reflect.TypeOf(d.Response).FieldByName("ETag"); ok {
			success["headers"].(obj)["ETag"] = obj{"$ref": "#/components/headers/ETag"}
		}
	case d.OperationID == "watchEnvironment":
		success["content"] = obj{"text/event-stream": obj{"schema": obj{"type": "string"}}}
	case d.OperationID == "getEnvironmentLogs":
		success["content"] = obj{
			"text/plain": obj{"schema": obj{"type": "string"}},
			// NDJSON: one LogLine per line, described as the list of them.
			"application/x-ndjson": obj{"schema": obj{"type": "array", "items": g.ref(reflect.TypeOf(apiv1.LogLine{}))}},
		}
	case d.OperationID == "execEnvironment":
		// NDJSON: one ExecFrame per line, described as the list of them.
		success["content"] = obj{"application/x-ndjson": obj{"schema": obj{"type": "array", "items": g.ref(reflect.TypeOf(apiv1.ExecFrame{}))}}}
	case d.OperationID == "metrics":
		success["content"] = obj{"text/plain": obj{"schema": obj{"type": "string"}}}
	case d.OperationID == "openapi":
		success["content"] = obj{apiv1.MediaJSON: obj{"schema": obj{"type": "object"}}}
	}
	responses[strconv.Itoa(d.Status)] = success
	statuses := append([]int{}, d.Problems...)
	if !rt.Perm.Public {
		statuses = append(statuses, 400, 401, 403, 429, 500, 503)
	}
	if rt.Perm.Verb == auth.VerbWrite {
		statuses = append(statuses, 507)
	}
	if rt.Perm.Scope == api.ScopeEnvironment {
		// The authorize step answers it for every route of one environment.
		statuses = append(statuses, 410)
	}
	slices.Sort(statuses)
	for _, s := range slices.Compact(statuses) {
		responses[strconv.Itoa(s)] = obj{
			"description": problemTitles[s],
			"content":     obj{apiv1.MediaProblem: obj{"schema": obj{"$ref": "#/components/schemas/Problem"}}},
		}
	}
	op["responses"] = responses
	return op
}

func (g *docGen) markRequest(t reflect.Type) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || g.requests[t] || t == reflect.TypeOf(time.Time{}) {
		return
	}
	g.requests[t] = true
	for i := range t.NumField() {
		g.markRequest(t.Field(i).Type)
	}
}

var (
	genericName  = regexp.MustCompile(`^List\[.*\.(\w+)\]$`)
	nullableName = regexp.MustCompile(`^Nullable\[`)
)

func schemaName(t reflect.Type) string {
	if m := genericName.FindStringSubmatch(t.Name()); m != nil {
		return m[1] + "List"
	}
	return t.Name()
}

// ref returns a $ref to t's component schema, adding it when new.
func (g *docGen) ref(t reflect.Type) obj {
	name := schemaName(t)
	if _, ok := g.schemas[name]; !ok {
		g.schemas[name] = obj{} // placeholder against recursion
		g.schemas[name] = g.schemaOf(t)
	}
	return obj{"$ref": "#/components/schemas/" + name}
}

func (g *docGen) typeSchema(t reflect.Type) obj {
	switch {
	case t == reflect.TypeOf(time.Time{}):
		return obj{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Pointer:
		return g.typeSchema(t.Elem())
	case t.Kind() == reflect.Struct && nullableName.MatchString(t.Name()):
		// apiv1.Nullable: absent keeps, null removes, a value replaces.
		value, _ := t.FieldByName("Value")
		return obj{"anyOf": []obj{g.typeSchema(value.Type), {"type": "null"}}}
	case t.Kind() == reflect.Interface:
		return obj{"anyOf": []obj{{}, {"type": "null"}}} // any JSON value, null included
	case t.Kind() == reflect.Struct:
		return g.ref(t)
	case t.Kind() == reflect.Slice:
		return obj{"type": "array", "items": g.typeSchema(t.Elem())}
	case t.Kind() == reflect.Map:
		return obj{"type": "object", "additionalProperties": g.typeSchema(t.Elem())}
	case t.Kind() == reflect.String:
		return obj{"type": "string"}
	case t.Kind() == reflect.Bool:
		return obj{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return obj{"type": "integer"}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return obj{"type": "number"}
	}
	panic(fmt.Sprintf("openapi: no schema for %s", t))
}

// schemaOf describes a struct: its JSON fields (embedded structs
// flattened), required unless omitempty in response types, closed to
// unknown fields in request types (the server rejects them).
func (g *docGen) schemaOf(t reflect.Type) obj {
	props := obj{}
	var required []string
	g.fields(t, props, &required)
	s := obj{"type": "object", "properties": props}
	if g.requests[t] {
		s["additionalProperties"] = false
	} else if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func (g *docGen) fields(t reflect.Type, props obj, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			g.fields(f.Type, props, required)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s := g.typeSchema(f.Type)
		omit := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
		if f.Type.Kind() == reflect.Pointer && !omit {
			// A pointer that is always present may be null (check's matched).
			s = obj{"anyOf": []obj{s, {"type": "null"}}}
		}
		if g.requests[t] && (f.Type.Kind() == reflect.Slice || f.Type.Kind() == reflect.Map) {
			// Requests may send null for a list or map: it means empty.
			s["type"] = []string{s["type"].(string), "null"}
		}
		props[name] = s
		if !omit {
			*required = append(*required, name)
		}
	}
}
