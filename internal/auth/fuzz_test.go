package auth

import (
	"regexp"
	"strings"
	"testing"
)

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// FuzzBearerToken feeds arbitrary Authorization header values to
// BearerToken. A secret is taken exactly as sent after "Bearer " (the
// scheme in any case), never with whitespace trimmed or normalised, and
// putting it back in a header gives it again; its hash is 64 hex digits.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{
		"Bearer isot_abc", "bearer isot_abc", "BEARER x", "Bearer  isot_abc", "Bearer isot_abc ",
		"Bearer \u00a0isot_abc\u2003", "Bearer\tisot_abc", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "", " Bearer x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		secret, ok := BearerToken(header)
		if !ok {
			if secret != "" {
				t.Fatalf("BearerToken(%q) refused but returned %q", header, secret)
			}
			return
		}
		scheme, rest, _ := strings.Cut(header, " ")
		if !strings.EqualFold(scheme, "Bearer") || secret == "" || secret != rest {
			t.Fatalf("BearerToken(%q) = %q: want the exact text after the scheme, %q", header, secret, rest)
		}
		if again, ok := BearerToken("Bearer " + secret); !ok || again != secret {
			t.Fatalf("BearerToken(%q) = %q, %v: want %q back", "Bearer "+secret, again, ok, secret)
		}
		if h := HashSecret(secret); !hexSHA256.MatchString(h) || h != HashSecret(secret) {
			t.Fatalf("HashSecret(%q) = %q: want the same 64 hex digits every time", secret, h)
		}
	})
}
