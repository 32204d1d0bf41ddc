package siem

import (
	"strconv"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// cef encodes r as one ArcSight Common Event Format (CEF:0) line: the
// action is the signature id, refusals and failures are more severe, and
// the chain's fields travel in the extension's custom strings.
func cef(r Record) ([]byte, error) {
	if r.Flow != nil {
		return cefFlow(*r.Flow), nil
	}
	ev := r.Audit
	sev := "3"
	switch ev.Outcome {
	case apiv1.OutcomeFailure:
		sev = "6"
	case apiv1.OutcomeDenied:
		sev = "7"
	}
	return cefLine(ev.Action, ev.Action+" "+ev.Outcome, sev, [][2]string{
		{"rt", strconv.FormatInt(millis(ev.Time), 10)},
		{"externalId", ev.ID},
		{"outcome", ev.Outcome},
		{"reason", ev.Reason},
		{"suser", ev.Actor.Name},
		{"suid", ev.Actor.TokenID},
		{"src", ev.Source.IP},
		{"requestClientApplication", ev.Source.UserAgent},
		{"act", ev.Action},
		{"cn1Label", "seq"}, {"cn1", strconv.FormatInt(ev.Seq, 10)},
		{"cn2Label", "status"}, {"cn2", statusText(ev.StatusCode)},
		{"cs1Label", "resource"}, {"cs1", resourceName(ev.Resource)},
		{"cs2Label", "hash"}, {"cs2", ev.Hash},
		{"cs3Label", "project"}, {"cs3", ev.ProjectID},
		{"cs4Label", "request"}, {"cs4", ev.RequestID},
	}), nil
}

// cefFlow is a flow record as a CEF line: denied flows are more severe.
func cefFlow(f Flow) []byte {
	sev := "3"
	if f.Verdict != VerdictAllowed {
		sev = "7"
	}
	return cefLine(flowAction(f), f.Direction+" "+f.Protocol+" "+f.Verdict, sev, [][2]string{
		{"rt", strconv.FormatInt(millis(f.Time), 10)},
		{"externalId", Record{Flow: &f}.UID()},
		{"outcome", f.Verdict},
		{"act", flowAction(f)},
		{"proto", f.Protocol},
		{"src", f.SrcAddress}, {"spt", portText(f.SrcPort)},
		{"dst", f.DstAddress}, {"dpt", portText(f.DstPort)},
		{"dhost", f.FQDN},
		{"cnt", strconv.FormatInt(f.Count, 10)},
		{"in", strconv.FormatInt(f.Bytes, 10)},
		{"cn1Label", "seq"}, {"cn1", strconv.FormatInt(f.ID, 10)},
		{"cs1Label", "resource"}, {"cs1", "environment/" + f.EnvironmentID},
		{"cs3Label", "project"}, {"cs3", f.ProjectID},
		{"cs5Label", "policy"}, {"cs5", f.PolicyID},
	})
}

func portText(p int) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(p)
}

// cefLine writes the header (signature id, name, severity) and the
// extension's non-empty pairs.
func cefLine(signature, name, sev string, ext [][2]string) []byte {
	var b strings.Builder
	b.WriteString("CEF:0|isolationhq|isolationd|")
	cefHeader(&b, productVersion())
	b.WriteByte('|')
	cefHeader(&b, signature)
	b.WriteByte('|')
	cefHeader(&b, name)
	b.WriteByte('|')
	b.WriteString(sev)
	b.WriteByte('|')
	first := true
	for _, kv := range ext {
		if kv[1] == "" {
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(kv[0])
		b.WriteByte('=')
		cefValue(&b, kv[1])
	}
	return []byte(b.String())
}

func statusText(code int) string {
	if code == 0 {
		return ""
	}
	return strconv.Itoa(code)
}

// cefHeader escapes a header field: '\' and '|'; line breaks become spaces.
func cefHeader(b *strings.Builder, v string) {
	for _, c := range v {
		switch c {
		case '\\', '|':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\r', '\n':
			b.WriteByte(' ')
		default:
			b.WriteRune(c)
		}
	}
}

// cefValue escapes an extension value: '\' and '='; line breaks as \n.
func cefValue(b *strings.Builder, v string) {
	for _, c := range v {
		switch c {
		case '\\', '=':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\n', '\r':
			b.WriteString(`\n`)
		default:
			b.WriteRune(c)
		}
	}
}
