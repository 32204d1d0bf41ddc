package provider

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/logbuf"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// Every isolationd the acceptance suite starts writes its debug log and its
// audit events into one transcript; after the whole suite has run, TestMain
// scans it for any token secret. Targeted tests scan the Terraform CLI's and
// the provider's TRACE logs; this catches a secret leaking from the server
// side in any test, including ones written later.
var transcript = &scanLog{}

type scanLog struct {
	logbuf.Buffer
	mu      sync.Mutex
	secrets []string // admin secrets of the servers started, which do not all look like tokens we mint
}

func (l *scanLog) remember(secret string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, secret)
}

// observed makes a server's logs and audit events part of the transcript.
func observed(cfg server.Config) server.Config {
	cfg.Logger = slog.New(slog.NewJSONHandler(transcript, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.AuditLog = transcript
	return cfg
}

// mintedSecret matches every secret isolationd makes (auth.NewSecret).
var mintedSecret = regexp.MustCompile(`isot_[A-Za-z0-9_-]{43}`)

// scan reports where a secret appears, never the secret itself.
func (l *scanLog) scan() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	text := []byte(l.String())
	// The scan proves something only if servers logged requests and audited them.
	if !bytes.Contains(text, []byte(`"request_id"`)) || !bytes.Contains(text, []byte(`"prev_hash"`)) {
		return fmt.Errorf("the server transcript (%d bytes) holds no requests or audit events: the scan would prove nothing", len(text))
	}
	if loc := mintedSecret.FindIndex(text); loc != nil {
		return fmt.Errorf("a token secret appears in the server logs or audit events at byte %d of %d", loc[0], len(text))
	}
	for i, s := range l.secrets {
		if s != "" && bytes.Contains(text, []byte(s)) {
			return fmt.Errorf("the admin secret of server #%d appears in the server logs or audit events", i+1)
		}
	}
	return nil
}

// scanTranscript runs after the whole suite.
func scanTranscript() int {
	if err := transcript.scan(); err != nil {
		fmt.Fprintln(os.Stderr, "acceptance tests: secrets:", err)
		return 1
	}
	return 0
}

func TestSecretScan_FindsMintedAndAdminSecretsButNeverPrintsThem(t *testing.T) {
	t.Parallel()
	base := `{"msg":"request","request_id":"req_1"}` + "\n" + `{"seq":1,"prev_hash":"00"}` + "\n"
	minted, err := auth.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		text, admin string
		leaks       bool
	}{
		"clean":               {base, "an-admin-secret-of-length", false},
		"minted secret":       {base + `{"msg":"oops","token":"` + minted + `"}`, "", true},
		"admin secret":        {base + `{"msg":"oops","h":"Bearer an-admin-secret-of-length"}`, "an-admin-secret-of-length", true},
		"nothing to scan yet": {"", "", true},
	} {
		l := &scanLog{}
		l.Write([]byte(tc.text))
		l.remember(tc.admin)
		err := l.scan()
		if (err != nil) != tc.leaks {
			t.Errorf("%s: scan() = %v, want failure %v", name, err, tc.leaks)
		}
		if err != nil && (strings.Contains(err.Error(), minted) || strings.Contains(err.Error(), "an-admin-secret")) {
			t.Errorf("%s: the scan's error repeats the secret", name)
		}
	}
}
