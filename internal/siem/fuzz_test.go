package siem_test

import (
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
)

// A --siem URL is outside input: whatever it is, ParseSink does not
// panic, and its error never repeats the secret.
func FuzzParseSink(f *testing.F) {
	for _, seed := range []string{
		"syslog+tls://127.0.0.1:6514?format=ocsf&events=audit,denials",
		"https://hooks.example/in?token=a&secret=0123456789abcdef&retention=5&lag_alert=1s",
		"file:///var/log/siem.jsonl?name=x&from=oldest",
		"syslog+udp://[::1]:514?format=cef",
		"https://[::1?secret=0123456789abcdef",
	} {
		f.Add(seed, "0123456789abcdef")
	}
	f.Fuzz(func(t *testing.T, raw, secret string) {
		if len(secret) < 8 || strings.ContainsAny(secret, "&#%+ ") {
			return
		}
		raw = strings.ReplaceAll(raw, "0123456789abcdef", secret)
		// Only a secret that stands nowhere else in the URL (in its host,
		// say) is one whose leak can be told apart.
		secretOnly := strings.Contains(raw, "secret="+secret) && strings.Count(raw, secret) == strings.Count(raw, "secret="+secret)
		s, err := siem.ParseSink(raw)
		if err != nil {
			if secretOnly && strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q repeats the secret", err)
			}
			return
		}
		if s.Name == "" || secretOnly && strings.Contains(s.Name, secret) {
			t.Fatalf("sink %q: a name that is empty or holds the secret", s.Name)
		}
	})
}
