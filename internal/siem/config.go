package siem

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Schemes a sink URL may have.
const (
	SchemeFile      = "file"
	SchemeSyslogUDP = "syslog+udp"
	SchemeSyslogTCP = "syslog+tcp"
	SchemeSyslogTLS = "syslog+tls"
	SchemeHTTPS     = "https"
)

// Formats of a sink's records.
const (
	FormatJSON = "json"
	FormatOCSF = "ocsf"
	FormatCEF  = "cef"
)

// What a sink may be sent (events=).
const (
	EventsAudit   = "audit"
	EventsFlows   = "flows"
	EventsDenials = "denials"
)

// Defaults of a sink's tunables.
const (
	// DefaultRetention is how many records a sink may fall behind before
	// the oldest are skipped (and the gap reported).
	DefaultRetention = 1_000_000
	// DefaultLagAlert is how long a sink may stay behind before an audit
	// event says so.
	DefaultLagAlert = time.Minute
	// DefaultSettle is how long a stream syslog connection must stay up
	// after a write before what was written counts as received.
	DefaultSettle = 2 * time.Second
)

// Sink is one --siem URL, parsed and checked.
type Sink struct {
	// Name identifies the sink in metrics, /readyz, logs, audit events
	// and its cursor in the store: the URL without its query and user
	// information (or name=), so it never holds a secret.
	Name   string
	Scheme string
	// Address is host:port for syslog, the URL to POST to for a webhook
	// (its query without ours), the path for a file.
	Address string
	Format  string
	// Audit, Flows: which sources the sink follows; of a source marked
	// DenialsOnly, only refusals (audit outcome denied, flow verdict
	// denied).
	Audit, Flows                      bool
	AuditDenialsOnly, FlowDenialsOnly bool
	// FromOldest starts a sink with no cursor at the oldest record
	// retained rather than at the head.
	FromOldest bool
	Retention  int64
	LagAlert   time.Duration
	Settle     time.Duration
	// TLS is the client configuration of syslog+tls and https: TLS 1.2 or
	// later, the receiver verified against CA (the system's roots without
	// one), the client certificate when given.
	TLS *tls.Config
	// secret keys the webhook's HMAC-SHA256 signature; never logged.
	secret []byte
}

// Secret reports whether the sink signs what it sends.
func (s Sink) Secret() bool { return len(s.secret) > 0 }

// params are the query parameters the sink URL may carry; any other one
// of a webhook URL stays in the URL posted to.
var params = []string{"format", "events", "ca", "cert", "key", "secret", "secret_file", "name", "retention", "lag_alert", "settle", "from"}

// ParseSink parses and checks one --siem URL, reading the files it names
// (CA, client certificate, secret). Its errors name the rule broken and
// never repeat a secret.
func ParseSink(raw string) (Sink, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the whole URL, secret included.
		return Sink{}, fmt.Errorf("%s: not a URL: want SCHEME://HOST:PORT?format=FORMAT", redacted(raw))
	}
	s := Sink{Scheme: u.Scheme, Format: FormatJSON, Retention: DefaultRetention, LagAlert: DefaultLagAlert}
	shown := redacted(raw)
	fail := func(format string, args ...any) (Sink, error) {
		return Sink{}, fmt.Errorf("%s: %s", shown, fmt.Sprintf(format, args...))
	}
	q := u.Query()
	switch u.Scheme {
	case SchemeSyslogUDP, SchemeSyslogTCP, SchemeSyslogTLS:
		if u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil {
			return fail("a syslog sink is %s://HOST:PORT, with no path or user", u.Scheme)
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return fail("a syslog sink needs HOST:PORT (RFC 5425 suggests 6514 for TLS, 514 otherwise)")
		}
		s.Address = u.Host
		if u.Scheme == SchemeSyslogTCP || u.Scheme == SchemeSyslogTLS {
			s.Settle = DefaultSettle
		}
	case SchemeHTTPS:
		if u.Host == "" || u.User != nil {
			return fail("a webhook is https://HOST[:PORT]/PATH, with no user information (sign with secret= instead)")
		}
		post := *u
		pq := post.Query()
		for _, p := range params {
			pq.Del(p)
		}
		post.RawQuery = pq.Encode()
		post.Fragment = ""
		s.Address = post.String()
	case SchemeFile:
		if u.Host != "" && u.Host != "localhost" || u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return fail("a file sink is file:///ABSOLUTE/PATH")
		}
		s.Address = u.Path
	default:
		return fail("unknown scheme %q: use syslog+udp, syslog+tcp, syslog+tls, https or file", u.Scheme)
	}
	for k := range q {
		if !slices.Contains(params, k) && u.Scheme != SchemeHTTPS {
			return fail("unknown parameter %q: use %s", k, strings.Join(params, ", "))
		}
	}
	if f := q.Get("format"); f != "" {
		if f != FormatJSON && f != FormatOCSF && f != FormatCEF {
			return fail("unknown format %q: use json, ocsf or cef", f)
		}
		s.Format = f
	}
	if err := s.parseEvents(q.Get("events")); err != nil {
		return fail("%v", err)
	}
	if err := s.parseTunables(q); err != nil {
		return fail("%v", err)
	}
	if err := s.loadTLS(q); err != nil {
		return fail("%v", err)
	}
	if err := s.loadSecret(q); err != nil {
		return fail("%v", err)
	}
	s.Name = q.Get("name")
	if s.Name == "" {
		// A secret= mistyped into the path (no ?) stays out of the name,
		// which logs, metrics and /readyz show.
		n := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
		s.Name = redacted(n.String())
	}
	return s, nil
}

// redacted is raw as errors show it: the value of secret= replaced.
func redacted(raw string) string {
	return secretParam.ReplaceAllString(raw, "${1}REDACTED")
}

// secretParam is any secret=VALUE, wherever it stands: a URL that does
// not parse may have it anywhere.
var secretParam = regexp.MustCompile(`(?i)(secret=)[^&#]*`)

func (s *Sink) parseEvents(v string) error {
	if v == "" {
		v = EventsAudit
	}
	var audit, flows, denials bool
	for _, e := range strings.Split(v, ",") {
		switch e {
		case EventsAudit:
			audit = true
		case EventsFlows:
			flows = true
		case EventsDenials:
			denials = true
		default:
			return fmt.Errorf("unknown events %q: use a comma-separated list of audit, flows and denials", e)
		}
	}
	// denials adds the refusals of each source not named whole.
	s.Audit, s.Flows = audit || denials, flows || denials
	s.AuditDenialsOnly, s.FlowDenialsOnly = !audit, !flows
	return nil
}

func (s *Sink) parseTunables(q url.Values) error {
	if v := q.Get("retention"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("retention=%s: want a whole number of records, at least 1", v)
		}
		s.Retention = n
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"lag_alert", &s.LagAlert}, {"settle", &s.Settle}} {
		v := q.Get(d.name)
		if v == "" {
			continue
		}
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			return fmt.Errorf("%s=%s: want a positive duration such as 30s", d.name, v)
		}
		if d.name == "settle" && s.Scheme != SchemeSyslogTCP && s.Scheme != SchemeSyslogTLS {
			return fmt.Errorf("settle= applies to syslog+tcp and syslog+tls only: the others know when a record is received")
		}
		*d.dst = t
	}
	switch q.Get("from") {
	case "", "head":
	case "oldest":
		s.FromOldest = true
	default:
		return fmt.Errorf("from=%s: use head (the default: what happens from the first start on) or oldest (everything retained)", q.Get("from"))
	}
	return nil
}

func (s *Sink) loadTLS(q url.Values) error {
	ca, cert, key := q.Get("ca"), q.Get("cert"), q.Get("key")
	secure := s.Scheme == SchemeSyslogTLS || s.Scheme == SchemeHTTPS
	if !secure && (ca != "" || cert != "" || key != "") {
		return fmt.Errorf("ca=, cert= and key= apply to syslog+tls and https only")
	}
	if !secure {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if host, _, err := net.SplitHostPort(s.hostPort()); err == nil {
		cfg.ServerName = host
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return fmt.Errorf("ca=%s: %v", ca, errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("ca=%s: no PEM certificate in the file", ca)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return fmt.Errorf("cert= and key= go together (the client certificate and its private key)")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("cert=%s, key=%s: %v", cert, key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	s.TLS = cfg
	return nil
}

// hostPort is the receiver's host:port (a webhook's default port is 443).
func (s *Sink) hostPort() string {
	if s.Scheme != SchemeHTTPS {
		return s.Address
	}
	u, err := url.Parse(s.Address)
	if err != nil {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return u.Host
}

func (s *Sink) loadSecret(q url.Values) error {
	secret, file := q.Get("secret"), q.Get("secret_file")
	if (secret != "" || file != "") && s.Scheme != SchemeHTTPS {
		return fmt.Errorf("secret= and secret_file= apply to https webhooks only")
	}
	switch {
	case secret != "" && file != "":
		return fmt.Errorf("give secret= or secret_file=, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("secret_file=%s: %v", file, errors.Unwrap(err))
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return fmt.Errorf("secret_file=%s is empty", file)
		}
	}
	if secret != "" && len(secret) < 16 {
		return fmt.Errorf("the webhook secret must be at least 16 characters")
	}
	s.secret = []byte(secret)
	return nil
}

// ParseSinks parses every --siem URL and the lines of every --siem-config
// file (one URL a line; blank lines and lines starting with # skipped),
// refusing two sinks of one name: they would share a cursor.
func ParseSinks(urls []string, configFiles []string) ([]Sink, error) {
	type origin struct{ where, raw string }
	var all []origin
	for _, u := range urls {
		all = append(all, origin{"--siem", u})
	}
	for _, f := range configFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--siem-config %s: %v", f, errors.Unwrap(err))
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			all = append(all, origin{fmt.Sprintf("--siem-config %s line %d", f, n), line})
		}
	}
	var sinks []Sink
	for _, o := range all {
		s, err := ParseSink(o.raw)
		if err != nil {
			return nil, fmt.Errorf("%s %w", o.where, err)
		}
		if i := slices.IndexFunc(sinks, func(t Sink) bool { return t.Name == s.Name }); i >= 0 {
			return nil, fmt.Errorf("%s: two sinks named %s: give one of them name=", o.where, s.Name)
		}
		sinks = append(sinks, s)
	}
	return sinks, nil
}
