package siem

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/version"
)

// Formatter encodes one record as a sink's format: a single line.
type Formatter func(Record) ([]byte, error)

// FormatterFor returns the encoder of format (json, ocsf or cef).
func FormatterFor(format string) (Formatter, error) {
	switch format {
	case FormatJSON:
		return Record.json, nil
	case FormatOCSF:
		return ocsf, nil
	case FormatCEF:
		return cef, nil
	}
	return nil, fmt.Errorf("unknown format %q: use json, ocsf or cef", format)
}

// PEN is the private enterprise number of our structured data's SD-IDs.
// isolationd has none registered with IANA, so it uses 32473, the number
// RFC 5612 reserves for documentation and examples: a receiver that keys
// on it should expect it to change once one is registered.
const PEN = "32473"

// SD-IDs of the structured data of each source (RFC 5424 section 6.3.2).
const (
	sdAudit = "audit@" + PEN
	sdFlow  = "flow@" + PEN
)

// Syslog facility and severities (RFC 5424 section 6.2.1): every record
// is "log audit"; refusals and failures are warnings, the rest notices.
const (
	facilityLogAudit = 13
	severityWarning  = 4
	severityNotice   = 5
)

// appName is the APP-NAME of every message.
const appName = "isolationd"

// syslogHost is the HOSTNAME of every message: this machine's name, or
// the nil value when it has none RFC 5424 allows (printable ASCII, at
// most 255 characters).
var syslogHost = func() string {
	h, err := os.Hostname()
	if err != nil || h == "" || len(h) > 255 || strings.IndexFunc(h, func(r rune) bool { return r < 33 || r > 126 }) >= 0 {
		return "-"
	}
	return h
}()

var procID = strconv.Itoa(os.Getpid())

// syslogMessage frames body, a record in the sink's format, as an RFC 5424
// message whose structured data carries the record's actor, action,
// outcome, resource, seq and hash (a flow's peers and verdict), so that a
// receiver can route and drop duplicates without decoding the body.
func syslogMessage(r Record, body []byte) []byte {
	var b strings.Builder
	b.Grow(len(body) + 320)
	at, failed, action, sdID, params := syslogFields(r)
	sev := severityNotice
	if failed {
		sev = severityWarning
	}
	b.WriteString("<")
	b.WriteString(strconv.Itoa(facilityLogAudit*8 + sev))
	b.WriteString(">1 ")
	b.WriteString(at.UTC().Format(rfc5424Time))
	b.WriteString(" ")
	b.WriteString(syslogHost)
	b.WriteString(" " + appName + " ")
	b.WriteString(procID)
	b.WriteString(" ")
	b.WriteString(msgID(action))
	b.WriteString(" [" + sdID)
	for _, p := range params {
		if p[1] == "" {
			continue
		}
		b.WriteString(" ")
		b.WriteString(p[0])
		b.WriteString(`="`)
		sdEscape(&b, p[1])
		b.WriteString(`"`)
	}
	b.WriteString("] ")
	b.Write(body)
	return []byte(b.String())
}

// syslogFields are what the header and structured data of r's message
// say: its time, whether it is a refusal or failure, its MSGID, SD-ID and
// SD-PARAMs (empty values left out).
func syslogFields(r Record) (at time.Time, failed bool, action, sdID string, params [][2]string) {
	if f := r.Flow; f != nil {
		rule := ""
		if f.Rule != nil {
			rule = strconv.Itoa(*f.Rule)
		}
		return f.Time, f.Verdict != VerdictAllowed, flowAction(*f), sdFlow, [][2]string{
			{"id", r.UID()},
			{"seq", strconv.FormatInt(f.ID, 10)},
			{"action", flowAction(*f)},
			{"outcome", f.Verdict},
			{"resource", "environment/" + f.EnvironmentID},
			{"project", f.ProjectID},
			{"direction", f.Direction},
			{"protocol", f.Protocol},
			{"src", hostPort(f.SrcAddress, f.SrcPort)},
			{"dst", hostPort(f.DstAddress, f.DstPort)},
			{"fqdn", f.FQDN},
			{"policy", f.PolicyID},
			{"rule", rule},
			{"count", strconv.FormatInt(f.Count, 10)},
		}
	}
	ev := r.Audit
	return ev.Time, ev.Outcome != apiv1.OutcomeSuccess, ev.Action, sdAudit, [][2]string{
		{"id", ev.ID},
		{"seq", strconv.FormatInt(ev.Seq, 10)},
		{"hash", ev.Hash},
		{"actor", ev.Actor.Name},
		{"actor_token", ev.Actor.TokenID},
		{"action", ev.Action},
		{"outcome", ev.Outcome},
		{"resource", resourceName(ev.Resource)},
		{"project", ev.ProjectID},
		{"request", ev.RequestID},
	}
}

// flowAction names what a flow record reports: flow.allowed or
// flow.denied.
func flowAction(f Flow) string { return "flow." + f.Verdict }

// hostPort is an address and port as one value ("" without an address).
func hostPort(addr string, port int) string {
	if addr == "" || port == 0 {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// rfc5424Time is TIMESTAMP: RFC 3339 with at most six fractional digits.
const rfc5424Time = "2006-01-02T15:04:05.000000Z07:00"

// msgID is MSGID: the action, at most 32 printable ASCII characters.
func msgID(action string) string {
	if action == "" {
		return "-"
	}
	id := []byte(action)
	for i, c := range id {
		if c < 33 || c > 126 {
			id[i] = '_'
		}
	}
	if len(id) > 32 {
		id = id[:32]
	}
	return string(id)
}

// sdEscape writes v as a PARAM-VALUE: '"', '\' and ']' escaped with '\'
// (RFC 5424 section 6.3.3).
func sdEscape(b *strings.Builder, v string) {
	for _, c := range []byte(v) {
		if c == '"' || c == '\\' || c == ']' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
}

// resourceName is a resource as one value: type/id.
func resourceName(r apiv1.ResourceRef) string {
	if r.ID == "" {
		return r.Type
	}
	return r.Type + "/" + r.ID
}

// octetCounted frames msg for syslog over TCP and TLS: its length in
// bytes, a space, then the message (RFC 6587 section 3.4.1, RFC 5425
// section 4.3).
func octetCounted(dst, msg []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}

// productVersion is isolationd's version as formats name it.
func productVersion() string { return version.String() }

func millis(t time.Time) int64 { return t.UnixMilli() }

// Export writes src's records from position since to until (0: to the
// head), both included, one line each in format, to w: the backfill of
// isolationd audit export. It returns how many it wrote.
func Export(ctx context.Context, src Source, since, until int64, format string, w io.Writer) (int, error) {
	enc, err := FormatterFor(format)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(w)
	n := 0
	for after := max(since-1, 0); ; {
		recs, err := src.Read(ctx, after, batchSize)
		if err != nil {
			return n, err
		}
		for _, r := range recs {
			if until > 0 && r.Pos > until {
				return n, bw.Flush()
			}
			line, err := enc(r)
			if err != nil {
				return n, fmt.Errorf("%s %d: %w", r.Source, r.Pos, err)
			}
			_, _ = bw.Write(line) // a failed write is WriteByte's error too
			if err := bw.WriteByte('\n'); err != nil {
				return n, err
			}
			n++
			after = r.Pos
		}
		if len(recs) < batchSize {
			return n, bw.Flush()
		}
	}
}
