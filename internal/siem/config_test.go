package siem_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem/siemtest"
)

// Every kind of sink parses to its address, format and sources, and the
// secure ones verify the receiver with TLS 1.2 or later.
func TestParseSink_EverySchemeItsAddressFormatAndSources(t *testing.T) {
	t.Parallel()
	pki := siemtest.NewPKI(t, t.TempDir())
	for _, c := range []struct {
		url, name, address, format string
		audit, flows, deniedOnly   bool
		secure                     bool
	}{
		{"syslog+udp://10.0.0.1:514", "syslog+udp://10.0.0.1:514", "10.0.0.1:514", "json", true, false, false, false},
		{"syslog+tcp://siem.example:514?format=cef&events=audit,flows", "syslog+tcp://siem.example:514", "siem.example:514", "cef", true, true, false, false},
		{"syslog+tls://127.0.0.1:6514?format=ocsf&ca=" + pki.CA + "&cert=" + pki.ClientCert + "&key=" + pki.ClientKey, "syslog+tls://127.0.0.1:6514", "127.0.0.1:6514", "ocsf", true, false, false, true},
		{"https://hooks.example/in?token=abc&format=ocsf&events=denials&secret=0123456789abcdef", "https://hooks.example/in", "https://hooks.example/in?token=abc", "ocsf", true, true, true, true},
		{"file:///var/log/isolationd/siem.jsonl?name=local", "local", "/var/log/isolationd/siem.jsonl", "json", true, false, false, false},
	} {
		s, err := siem.ParseSink(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if s.Name != c.name || s.Address != c.address || s.Format != c.format || s.Audit != c.audit || s.Flows != c.flows || s.AuditDenialsOnly != c.deniedOnly {
			t.Errorf("%s parsed to %+v", c.url, s)
		}
		if c.secure && (s.TLS == nil || s.TLS.MinVersion < tls.VersionTLS12 || s.TLS.InsecureSkipVerify) {
			t.Errorf("%s: TLS %+v: want verification with TLS 1.2 or later", c.url, s.TLS)
		}
	}
}

// Bad configuration fails at start with a message naming the parameter
// and the rule, never the secret.
func TestParseSink_BadConfigurationFailsWithAClearMessage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := siemtest.NewPKI(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ url, want string }{
		{"kafka://broker:9092", `unknown scheme "kafka"`},
		{"syslog+tls://127.0.0.1:6514?format=leef", `unknown format "leef": use json, ocsf or cef`},
		{"syslog+udp://127.0.0.1:514?events=audit,metrics", `unknown events "metrics"`},
		{"syslog+tcp://127.0.0.1", "needs HOST:PORT"},
		{"syslog+tcp://127.0.0.1:514/path", "no path or user"},
		{"http://[::1", "not a URL"},
		{"file://relative/path", "file:///ABSOLUTE/PATH"},
		{"syslog+tls://127.0.0.1:6514?ca=" + filepath.Join(dir, "missing.pem"), "ca=" + filepath.Join(dir, "missing.pem") + ": no such file or directory"},
		{"syslog+tls://127.0.0.1:6514?ca=" + notPEM, "no PEM certificate in the file"},
		{"syslog+tls://127.0.0.1:6514?cert=" + pki.ClientCert, "cert= and key= go together"},
		{"syslog+tls://127.0.0.1:6514?cert=" + pki.ClientCert + "&key=" + pki.ServerKey, "cert=" + pki.ClientCert},
		{"syslog+udp://127.0.0.1:514?ca=" + pki.CA, "apply to syslog+tls and https only"},
		{"syslog+tcp://127.0.0.1:514?secret=0123456789abcdef", "apply to https webhooks only"},
		{"https://hooks.example/in?secret=short", "at least 16 characters"},
		{"syslog+tcp://127.0.0.1:514?retention=0", "retention=0: want a whole number of records, at least 1"},
		{"syslog+tcp://127.0.0.1:514?lag_alert=soon", "lag_alert=soon: want a positive duration"},
		{"https://hooks.example/in?settle=1s", "settle= applies to syslog+tcp and syslog+tls only"},
		{"file:///tmp/x?from=yesterday", "from=yesterday"},
		{"file:///tmp/x?colour=red", `unknown parameter "colour"`},
	} {
		_, err := siem.ParseSink(c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.url, err, c.want)
		}
	}
	// A secret never shows in an error, even of a URL that does not parse.
	for _, raw := range []string{"https://hooks.example/in?secret=sup3r-s3cret-value-xyz&format=x", "https://[::1?secret=sup3r-s3cret-value-xyz"} {
		if _, err := siem.ParseSink(raw); err == nil || strings.Contains(err.Error(), "sup3r") {
			t.Errorf("%s: error %v shows the secret", raw, err)
		}
	}
}

// Two sinks of one name would share a cursor; config files hold one URL
// a line, with comments, and their errors name the line.
func TestParseSinks_ConfigFileLinesAndDuplicateNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "siem.conf")
	if err := os.WriteFile(conf, []byte("# sinks\nfile:///tmp/a.jsonl\n\nsyslog+udp://127.0.0.1:514?format=cef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sinks, err := siem.ParseSinks([]string{"file:///tmp/b.jsonl"}, []string{conf})
	if err != nil || len(sinks) != 3 {
		t.Fatalf("ParseSinks = %v, %v; want 3 sinks", sinks, err)
	}
	if _, err := siem.ParseSinks([]string{"file:///tmp/a.jsonl"}, []string{conf}); err == nil || !strings.Contains(err.Error(), "two sinks named file:///tmp/a.jsonl: give one of them name=") {
		t.Errorf("duplicate sink: %v", err)
	}
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("file:///tmp/a.jsonl\nsyslog+udp://127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := siem.ParseSinks(nil, []string{bad}); err == nil || !strings.Contains(err.Error(), "--siem-config "+bad+" line 2") {
		t.Errorf("bad config line: %v", err)
	}
}
