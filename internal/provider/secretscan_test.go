package provider

import (
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
)

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
		if _, err := l.Write([]byte(tc.text)); err != nil {
			t.Fatal(err)
		}
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
