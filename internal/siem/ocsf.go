package siem

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// OCSFVersion is the OCSF schema version the ocsf format follows.
const OCSFVersion = "1.3.0"

// OCSF classes and categories of what isolationd exports (README, "SIEM
// export", maps each attribute).
const (
	ocsfClassAuthentication  = 3002
	ocsfClassNetworkActivity = 4001
	ocsfClassAPIActivity     = 6003

	ocsfCategoryIAM         = 3
	ocsfCategoryNetwork     = 4
	ocsfCategoryApplication = 6
)

// OCSF status_id and severity_id values.
const (
	ocsfStatusSuccess = 1
	ocsfStatusFailure = 2

	ocsfSeverityInformational = 1
	ocsfSeverityLow           = 2
	ocsfSeverityMedium        = 3
)

// ocsfEvent is an OCSF event of any of our classes: the attributes a
// class does not have stay empty and are left out. Typed, not a map: an
// event is encoded for every sink that asks, on the API's CPU.
type ocsfEvent struct {
	ActivityID   int          `json:"activity_id"`
	ActivityName string       `json:"activity_name"`
	CategoryUID  int          `json:"category_uid"`
	CategoryName string       `json:"category_name"`
	ClassUID     int          `json:"class_uid"`
	ClassName    string       `json:"class_name"`
	TypeUID      int          `json:"type_uid"`
	Time         int64        `json:"time"`
	StartTime    int64        `json:"start_time,omitempty"`
	EndTime      int64        `json:"end_time,omitempty"`
	SeverityID   int          `json:"severity_id"`
	Severity     string       `json:"severity"`
	StatusID     int          `json:"status_id"`
	Status       string       `json:"status"`
	StatusCode   string       `json:"status_code,omitempty"`
	StatusDetail string       `json:"status_detail,omitempty"`
	Message      string       `json:"message,omitempty"`
	Count        int64        `json:"count,omitempty"`
	Metadata     ocsfMetadata `json:"metadata"`

	// API Activity
	Actor        *ocsfActor    `json:"actor,omitempty"`
	API          *ocsfAPI      `json:"api,omitempty"`
	HTTPRequest  *ocsfHTTPReq  `json:"http_request,omitempty"`
	HTTPResponse *ocsfCode     `json:"http_response,omitempty"`
	Resources    []ocsfRes     `json:"resources,omitempty"`
	SrcEndpoint  *ocsfEndpoint `json:"src_endpoint,omitempty"`
	DstEndpoint  *ocsfEndpoint `json:"dst_endpoint,omitempty"`

	// Authentication
	User           *ocsfUser `json:"user,omitempty"`
	Service        *ocsfName `json:"service,omitempty"`
	AuthProtocolID int       `json:"auth_protocol_id,omitempty"`
	AuthProtocol   string    `json:"auth_protocol,omitempty"`
	IsRemote       *bool     `json:"is_remote,omitempty"`

	// Network Activity
	ActionID       int             `json:"action_id,omitempty"`
	Action         string          `json:"action,omitempty"`
	DispositionID  int             `json:"disposition_id,omitempty"`
	Disposition    string          `json:"disposition,omitempty"`
	ConnectionInfo *ocsfConnection `json:"connection_info,omitempty"`
	Traffic        *ocsfTraffic    `json:"traffic,omitempty"`
	FirewallRule   *ocsfRule       `json:"firewall_rule,omitempty"`

	Unmapped any `json:"unmapped,omitempty"`
}

type ocsfMetadata struct {
	Version        string      `json:"version"`
	Product        ocsfProduct `json:"product"`
	UID            string      `json:"uid"`
	Sequence       int64       `json:"sequence"`
	EventCode      string      `json:"event_code"`
	LogName        string      `json:"log_name"`
	OriginalTime   string      `json:"original_time,omitempty"`
	CorrelationUID string      `json:"correlation_uid,omitempty"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version"`
}

type ocsfUser struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
}

type ocsfActor struct {
	User    ocsfUser `json:"user"`
	AppName string   `json:"app_name"`
}

type ocsfName struct {
	Name string `json:"name"`
}

type ocsfAPI struct {
	Operation string    `json:"operation"`
	Service   ocsfName  `json:"service"`
	Request   *ocsfUID  `json:"request,omitempty"`
	Response  *ocsfCode `json:"response,omitempty"`
}

type ocsfUID struct {
	UID string `json:"uid"`
}

type ocsfCode struct {
	Code int `json:"code"`
}

type ocsfHTTPReq struct {
	UserAgent string `json:"user_agent,omitempty"`
	UID       string `json:"uid,omitempty"`
}

type ocsfRes struct {
	Type string `json:"type"`
	UID  string `json:"uid,omitempty"`
}

type ocsfEndpoint struct {
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Name     string `json:"name,omitempty"`
	UID      string `json:"uid,omitempty"`
}

type ocsfConnection struct {
	DirectionID  int    `json:"direction_id"`
	Direction    string `json:"direction"`
	ProtocolName string `json:"protocol_name,omitempty"`
	ProtocolNum  int    `json:"protocol_num,omitempty"`
}

type ocsfTraffic struct {
	Packets int64 `json:"packets"`
	Bytes   int64 `json:"bytes"`
}

type ocsfRule struct {
	UID  string `json:"uid"`
	Name string `json:"name,omitempty"`
}

// ocsfAuditUnmapped holds what OCSF has no attribute for: the project,
// the chain's links and the change itself.
type ocsfAuditUnmapped struct {
	ProjectID string         `json:"project_id"`
	PrevHash  string         `json:"prev_hash"`
	Hash      string         `json:"hash"`
	KeyID     string         `json:"key_id,omitempty"`
	Changes   *apiv1.Changes `json:"changes,omitempty"`
}

type ocsfFlowUnmapped struct {
	EnvironmentID string `json:"environment_id"`
	ProjectID     string `json:"project_id"`
}

// ocsf encodes r as an OCSF 1.3 event: token authentication failures as
// Authentication (3002), every other audit event as API Activity (6003),
// flow records as Network Activity (4001).
func ocsf(r Record) ([]byte, error) {
	return json.Marshal(ocsfOf(r))
}

func ocsfOf(r Record) *ocsfEvent {
	if r.Flow != nil {
		return ocsfNetworkActivity(*r.Flow)
	}
	if isAuthFailure(*r.Audit) {
		return ocsfAuthentication(*r.Audit)
	}
	return ocsfAPIActivity(*r.Audit)
}

// isAuthFailure: a request refused because its bearer token was missing,
// unknown, malformed, revoked or expired (the API answers them 401 under
// action auth.denied, or counts them in auth.denied.aggregate).
func isAuthFailure(ev apiv1.AuditEvent) bool {
	return ev.StatusCode == 401 && (ev.Action == "auth.denied" || ev.Action == "auth.denied.aggregate")
}

var ocsfSeverityName = map[int]string{ocsfSeverityInformational: "Informational", ocsfSeverityLow: "Low", ocsfSeverityMedium: "Medium"}

// ocsfHeader is the classification, severity, status and metadata of an
// event: which product made it, its id (what receivers drop duplicates
// by) and its position.
func ocsfHeader(category int, categoryName string, class int, className string, activity int, activityName string,
	severity, status int, uid string, seq int64, code, logName string) *ocsfEvent {
	statusName := "Success"
	if status == ocsfStatusFailure {
		statusName = "Failure"
	}
	return &ocsfEvent{
		CategoryUID: category, CategoryName: categoryName, ClassUID: class, ClassName: className,
		ActivityID: activity, ActivityName: activityName, TypeUID: class*100 + activity,
		SeverityID: severity, Severity: ocsfSeverityName[severity], StatusID: status, Status: statusName,
		Metadata: ocsfMetadata{
			Version: OCSFVersion, Product: ocsfProduct{Name: appName, VendorName: "isolationhq", Version: productVersion()},
			UID: uid, Sequence: seq, EventCode: code, LogName: logName,
		},
	}
}

// ocsfAudit is what every audit event's class has: the header, time,
// message, status and the chain's own fields under unmapped.
func ocsfAudit(ev apiv1.AuditEvent, category int, categoryName string, class int, className string, activity int, activityName string) *ocsfEvent {
	status, severity := ocsfStatusSuccess, ocsfSeverityInformational
	switch ev.Outcome {
	case apiv1.OutcomeFailure:
		status, severity = ocsfStatusFailure, ocsfSeverityLow
	case apiv1.OutcomeDenied:
		status, severity = ocsfStatusFailure, ocsfSeverityMedium
	}
	o := ocsfHeader(category, categoryName, class, className, activity, activityName, severity, status, ev.ID, ev.Seq, ev.Action, "audit")
	o.Metadata.OriginalTime = ev.Time.UTC().Format(rfc5424Time)
	o.Metadata.CorrelationUID = ev.RequestID
	o.Time = millis(ev.Time)
	o.Message = ocsfMessage(ev)
	o.StatusDetail = ev.Reason
	if ev.StatusCode != 0 {
		o.StatusCode = strconv.Itoa(ev.StatusCode)
	}
	o.Unmapped = ocsfAuditUnmapped{ProjectID: ev.ProjectID, PrevHash: ev.PrevHash, Hash: ev.Hash, KeyID: ev.KeyID, Changes: ev.Changes}
	o.SrcEndpoint = ocsfSrcEndpoint(ev)
	return o
}

func ocsfMessage(ev apiv1.AuditEvent) string {
	msg := ev.Actor.Name + " " + ev.Action
	if n := resourceName(ev.Resource); n != "" {
		msg += " " + n
	}
	msg += ": " + ev.Outcome
	if ev.Reason != "" {
		msg += " (" + ev.Reason + ")"
	}
	return msg
}

// ocsfSrcEndpoint is where the request came from; the server's own
// changes (no source address) come from isolationd itself.
func ocsfSrcEndpoint(ev apiv1.AuditEvent) *ocsfEndpoint {
	if ev.Source.IP == "" {
		return &ocsfEndpoint{Name: appName, Hostname: syslogHost}
	}
	return &ocsfEndpoint{IP: ev.Source.IP}
}

// ocsfAPIActivity maps an audit event to API Activity (6003): the
// action's last word decides the activity (create, read, update, delete,
// or other).
func ocsfAPIActivity(ev apiv1.AuditEvent) *ocsfEvent {
	activity, name := apiActivity(ev.Action)
	o := ocsfAudit(ev, ocsfCategoryApplication, "Application Activity", ocsfClassAPIActivity, "API Activity", activity, name)
	o.Actor = &ocsfActor{User: ocsfUser{Name: ev.Actor.Name, UID: ev.Actor.TokenID}, AppName: appName}
	o.API = &ocsfAPI{Operation: ev.Action, Service: ocsfName{Name: appName}}
	if ev.RequestID != "" {
		o.API.Request = &ocsfUID{UID: ev.RequestID}
	}
	if ev.StatusCode != 0 {
		o.API.Response = &ocsfCode{Code: ev.StatusCode}
		o.HTTPResponse = &ocsfCode{Code: ev.StatusCode}
	}
	if ev.Source.UserAgent != "" {
		o.HTTPRequest = &ocsfHTTPReq{UserAgent: ev.Source.UserAgent}
	}
	if ev.Resource.Type != "" {
		o.Resources = []ocsfRes{{Type: ev.Resource.Type, UID: ev.Resource.ID}}
	}
	return o
}

// apiActivity is the API Activity activity_id of an action and its name.
func apiActivity(action string) (int, string) {
	verb := action[strings.LastIndexByte(action, '.')+1:]
	switch verb {
	case "create", "import", "bootstrap", "start", "pull":
		return 1, "Create"
	case "read", "get", "list", "export":
		return 2, "Read"
	case "update", "patch", "configure", "repair", "enforced", "enforce_failed", "expire", "provision", "ready", "fail", "drift", "workload":
		return 3, "Update"
	case "delete", "revoke", "remove", "end":
		return 4, "Delete"
	}
	return 99, "Other"
}

// ocsfAuthentication maps a token authentication failure to
// Authentication (3002), activity Logon: the user is who the token would
// have been (its id when the server knows it), the service isolationd.
func ocsfAuthentication(ev apiv1.AuditEvent) *ocsfEvent {
	o := ocsfAudit(ev, ocsfCategoryIAM, "Identity & Access Management", ocsfClassAuthentication, "Authentication", 1, "Logon")
	o.User = &ocsfUser{Name: ev.Actor.Name, UID: ev.Actor.TokenID}
	if id := tokenInReason(ev.Reason); id != "" && ev.Actor.TokenID == "" {
		o.User.UID = id
	}
	o.Service = &ocsfName{Name: appName}
	o.AuthProtocolID, o.AuthProtocol = 99, "Bearer token"
	remote := ev.Source.IP != ""
	o.IsRemote = &remote
	if ev.Source.UserAgent != "" || ev.RequestID != "" {
		o.HTTPRequest = &ocsfHTTPReq{UserAgent: ev.Source.UserAgent, UID: ev.RequestID}
	}
	o.Count = aggregateCount(ev)
	return o
}

// tokenInReason finds the token id a refusal's reason names ("revoked
// token tok_...").
func tokenInReason(reason string) string {
	for _, w := range strings.Fields(reason) {
		if strings.HasPrefix(w, "tok_") {
			return w
		}
	}
	return ""
}

// aggregateCount is how many refusals an aggregate event counts (0 for
// any other event).
func aggregateCount(ev apiv1.AuditEvent) int64 {
	if !strings.HasSuffix(ev.Action, ".aggregate") || ev.Changes == nil {
		return 0
	}
	b, err := json.Marshal(ev.Changes.After)
	if err != nil {
		return 0
	}
	var agg apiv1.DenialAggregate
	if json.Unmarshal(b, &agg) != nil {
		return 0
	}
	return int64(agg.Count)
}

// Network Activity activity_id and action_id values.
const (
	ocsfNetworkRefuse  = 5
	ocsfNetworkTraffic = 6
	ocsfActionAllowed  = 1
	ocsfActionDenied   = 2
	ocsfDirInbound     = 1
	ocsfDirOutbound    = 2
)

// ocsfNetworkActivity maps a flow record to Network Activity (4001): an
// allowed flow is Traffic (its packets and bytes when the kernel forgot
// the connection), a denied one Refuse. The environment's side of the
// connection carries its id as the endpoint's uid.
func ocsfNetworkActivity(f Flow) *ocsfEvent {
	activity, name, status, severity := ocsfNetworkTraffic, "Traffic", ocsfStatusSuccess, ocsfSeverityInformational
	action, actionName, disposition := ocsfActionAllowed, "Allowed", "Allowed"
	if f.Verdict != VerdictAllowed {
		activity, name, status, severity = ocsfNetworkRefuse, "Refuse", ocsfStatusFailure, ocsfSeverityMedium
		action, actionName, disposition = ocsfActionDenied, "Denied", "Blocked"
	}
	o := ocsfHeader(ocsfCategoryNetwork, "Network Activity", ocsfClassNetworkActivity, "Network Activity", activity, name,
		severity, status, Record{Flow: &f}.UID(), f.ID, flowAction(f), "flows")
	o.Time = millis(f.Time)
	if !f.FirstSeen.IsZero() {
		o.StartTime = millis(f.FirstSeen)
	}
	if !f.LastSeen.IsZero() {
		o.EndTime = millis(f.LastSeen)
	}
	o.Count = f.Count
	o.ActionID, o.Action, o.DispositionID, o.Disposition = action, actionName, action, disposition
	src := &ocsfEndpoint{IP: f.SrcAddress, Port: f.SrcPort}
	dst := &ocsfEndpoint{IP: f.DstAddress, Port: f.DstPort, Hostname: f.FQDN}
	conn := &ocsfConnection{DirectionID: ocsfDirOutbound, Direction: "Outbound", ProtocolName: f.Protocol, ProtocolNum: ipProtocols[f.Protocol]}
	if f.Direction == "ingress" {
		conn.DirectionID, conn.Direction = ocsfDirInbound, "Inbound"
		dst.UID = f.EnvironmentID
	} else {
		src.UID = f.EnvironmentID
	}
	// A denied record without a peer counts packets the kernel could not
	// itemise: only the environment's side is known.
	if *src != (ocsfEndpoint{}) {
		o.SrcEndpoint = src
	}
	if *dst != (ocsfEndpoint{}) {
		o.DstEndpoint = dst
	}
	o.ConnectionInfo = conn
	o.Traffic = &ocsfTraffic{Packets: f.Packets, Bytes: f.Bytes}
	if f.PolicyID != "" {
		o.FirewallRule = &ocsfRule{UID: f.PolicyID}
		if f.Rule != nil {
			o.FirewallRule.Name = "rule " + strconv.Itoa(*f.Rule)
		}
	}
	o.Message = ocsfFlowMessage(f)
	o.Unmapped = ocsfFlowUnmapped{EnvironmentID: f.EnvironmentID, ProjectID: f.ProjectID}
	return o
}

// ipProtocols are the IANA numbers of the protocols flow records name.
var ipProtocols = map[string]int{"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}

func ocsfFlowMessage(f Flow) string {
	msg := strings.Join(strings.Fields(f.Direction+" "+f.Protocol), " ") + " " + orUnknown(hostPort(f.SrcAddress, f.SrcPort)) + " -> " + orUnknown(hostPort(f.DstAddress, f.DstPort))
	if f.FQDN != "" {
		msg += " (" + f.FQDN + ")"
	}
	return msg + ": " + f.Verdict
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}
