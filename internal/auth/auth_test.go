package auth

import (
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestDecide_RoleMatrix(t *testing.T) {
	t.Parallel()
	admin := Principal{TokenID: "a", Role: apiv1.RoleAdmin}
	auditor := Principal{TokenID: "u", Role: apiv1.RoleAuditor}
	editor := Principal{TokenID: "e", Role: apiv1.RoleEditor, ProjectID: "prj_a"}
	viewer := Principal{TokenID: "v", Role: apiv1.RoleViewer, ProjectID: "prj_a"}
	envWrite := Permission{ResourceEnvironment, VerbWrite}
	envRead := Permission{ResourceEnvironment, VerbRead}
	projWrite := Permission{ResourceProject, VerbWrite}
	projRead := Permission{ResourceProject, VerbRead}
	auditRead := Permission{ResourceAudit, VerbRead}
	tokenWrite := Permission{ResourceToken, VerbWrite}
	imageRead := Permission{ResourceImage, VerbRead}
	imageWrite := Permission{ResourceImage, VerbWrite}
	policyRead := Permission{ResourcePolicy, VerbRead}
	exec := Permission{ResourceEnvironment, VerbExec}
	mint := Permission{ResourceEnvironment, VerbSession}
	self := Permission{ResourceSelf, VerbRead}
	developer := Principal{TokenID: "d", Role: apiv1.RoleDeveloper, ProjectID: "prj_a"}
	editorDev := Principal{TokenID: "ed", Role: apiv1.RoleEditor, ProjectID: "prj_a", Developer: true}
	viewerDev := Principal{TokenID: "vd", Role: apiv1.RoleViewer, ProjectID: "prj_a", Developer: true}
	auditorDev := Principal{TokenID: "ud", Role: apiv1.RoleAuditor, Developer: true}
	session := Principal{TokenID: "s", Role: apiv1.RoleSession, ProjectID: "prj_a", EnvironmentID: "env_a"}

	cases := []struct {
		name    string
		p       Principal
		perm    Permission
		project string
		env     string
		refusal Refusal // "" = allowed
		needed  string
	}{
		{"admin writes anything", admin, projWrite, "prj_b", "", "", ""},
		{"auditor reads any project", auditor, envRead, "prj_b", "", "", ""},
		{"auditor reads the audit log", auditor, auditRead, "", "", "", ""},
		{"auditor may not write", auditor, envWrite, "prj_a", "", Forbidden, apiv1.RoleEditor},
		{"editor writes environments of its project", editor, envWrite, "prj_a", "", "", ""},
		{"editor reads its project", editor, projRead, "prj_a", "", "", ""},
		{"editor may not change its project", editor, projWrite, "prj_a", "", Forbidden, apiv1.RoleAdmin},
		{"editor does not see another project", editor, envRead, "prj_b", "", OutOfScope, ""},
		{"editor may not create projects", editor, projWrite, "", "", Forbidden, apiv1.RoleAdmin},
		{"editor may not read the audit log", editor, auditRead, "", "", Forbidden, apiv1.RoleAuditor},
		{"editor may not manage tokens", editor, tokenWrite, "", "", Forbidden, apiv1.RoleAdmin},
		{"viewer reads environments of its project", viewer, envRead, "prj_a", "", "", ""},
		{"viewer may not write", viewer, envWrite, "prj_a", "", Forbidden, apiv1.RoleEditor},
		{"viewer writing elsewhere sees nothing", viewer, envWrite, "prj_b", "", OutOfScope, ""},
		{"editor does not see organization-wide objects", editor, Permission{ResourceToken, VerbRead}, OrgScope, "", OutOfScope, ""},
		{"auditor reads organization-wide objects", auditor, Permission{ResourceToken, VerbRead}, OrgScope, "", "", ""},
		{"auditor may not revoke organization-wide tokens", auditor, tokenWrite, OrgScope, "", Forbidden, apiv1.RoleAdmin},
		{"viewer reads the images", viewer, imageRead, "", "", "", ""},
		{"editor reads the images", editor, imageRead, "", "", "", ""},
		{"auditor reads the images", auditor, imageRead, "", "", "", ""},
		{"admin imports images", admin, imageWrite, "", "", "", ""},
		{"editor may not import images", editor, imageWrite, "", "", Forbidden, apiv1.RoleAdmin},
		{"auditor may not delete images", auditor, imageWrite, "", "", Forbidden, apiv1.RoleAdmin},

		// Exec: admins and developers, and the tokens granted developer.
		{"admin execs anywhere", admin, exec, "prj_b", "env_b", "", ""},
		{"developer execs into its project's environments", developer, exec, "prj_a", "env_a", "", ""},
		{"developer mints session tokens there", developer, mint, "prj_a", "env_a", "", ""},
		{"developer reads its project's environments", developer, envRead, "prj_a", "env_a", "", ""},
		{"developer lists environments", developer, envRead, "", "", "", ""},
		{"developer does not see another project", developer, exec, "prj_b", "env_b", OutOfScope, ""},
		{"developer may not write environments", developer, envWrite, "prj_a", "env_a", Forbidden, apiv1.RoleEditor},
		{"developer may not read its project", developer, projRead, "prj_a", "", Forbidden, apiv1.RoleViewer},
		{"developer may not read policies", developer, policyRead, "prj_a", "", Forbidden, apiv1.RoleViewer},
		{"developer may not read the images", developer, imageRead, "", "", Forbidden, apiv1.RoleViewer},
		{"developer may not read the audit log", developer, auditRead, "", "", Forbidden, apiv1.RoleAuditor},
		{"developer may not manage tokens", developer, tokenWrite, "", "", Forbidden, apiv1.RoleAdmin},
		{"editor may not exec", editor, exec, "prj_a", "env_a", Forbidden, apiv1.RoleDeveloper},
		{"editor may not mint session tokens", editor, mint, "prj_a", "env_a", Forbidden, apiv1.RoleDeveloper},
		{"viewer may not exec", viewer, exec, "prj_a", "env_a", Forbidden, apiv1.RoleDeveloper},
		{"auditor may not exec", auditor, exec, "prj_a", "env_a", Forbidden, apiv1.RoleDeveloper},
		{"editor granted developer execs", editorDev, exec, "prj_a", "env_a", "", ""},
		{"editor granted developer still writes", editorDev, envWrite, "prj_a", "env_a", "", ""},
		{"viewer granted developer execs", viewerDev, exec, "prj_a", "env_a", "", ""},
		{"viewer granted developer mints session tokens", viewerDev, mint, "prj_a", "env_a", "", ""},
		{"viewer granted developer still may not write", viewerDev, envWrite, "prj_a", "env_a", Forbidden, apiv1.RoleEditor},
		{"viewer granted developer does not see another project", viewerDev, exec, "prj_b", "env_b", OutOfScope, ""},
		{"auditor granted developer execs into any project", auditorDev, exec, "prj_b", "env_b", "", ""},
		{"auditor granted developer still may not write", auditorDev, envWrite, "prj_b", "env_b", Forbidden, apiv1.RoleEditor},

		// A session token execs into its environment and does nothing else.
		{"session token execs into its environment", session, exec, "prj_a", "env_a", "", ""},
		{"session token may not read its environment", session, envRead, "prj_a", "env_a", Forbidden, apiv1.RoleViewer},
		{"session token may not mint session tokens", session, mint, "prj_a", "env_a", Forbidden, apiv1.RoleDeveloper},
		{"session token does not see another environment of its project", session, exec, "prj_a", "env_b", OutOfScope, ""},
		{"session token does not see another project", session, exec, "prj_b", "env_c", OutOfScope, ""},
		{"session token may not list environments", session, envRead, "", "", Forbidden, apiv1.RoleViewer},
		{"session token may not read its project", session, projRead, "prj_a", "", Forbidden, apiv1.RoleViewer},

		// Every token asks about itself.
		{"session token asks who it is", session, self, "", "", "", ""},
		{"developer asks who it is", developer, self, "", "", "", ""},
		{"viewer asks who it is", viewer, self, "", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := Decide(tc.p, tc.perm, tc.project, tc.env)
			if tc.refusal == "" {
				if !d.Allowed() {
					t.Fatalf("denied (%s %s), want allowed", d.Refusal, d.Reason)
				}
				return
			}
			if d.Allowed() || d.Refusal != tc.refusal || d.NeededRole != tc.needed {
				t.Fatalf("got allowed=%v refusal=%q needed=%q, want refusal=%q needed=%q", d.Allowed(), d.Refusal, d.NeededRole, tc.refusal, tc.needed)
			}
			if d.Reason == "" {
				t.Fatal("a denial must carry a reason for the audit trail")
			}
			if d.Refusal == Forbidden && d.Reason != "role "+tc.p.Role+" may not "+tc.perm.phrase() {
				t.Fatalf("reason %q does not say what the role may not do", d.Reason)
			}
		})
	}
}

func TestDecide_ReasonNamesTheResourceInPlainWords(t *testing.T) {
	t.Parallel()
	viewer := Principal{TokenID: "v", Role: apiv1.RoleViewer, ProjectID: "prj_a"}
	for perm, want := range map[Permission]string{
		{ResourcePolicy, VerbWrite}:        "role viewer may not write policies",
		{ResourceAudit, VerbRead}:          "role viewer may not read the audit log",
		{ResourceToken, VerbRead}:          "role viewer may not read tokens",
		{ResourceEnvironment, VerbWrite}:   "role viewer may not write environments",
		{ResourceEnvironment, VerbExec}:    "role viewer may not exec into environments",
		{ResourceEnvironment, VerbSession}: "role viewer may not mint session tokens for environments",
	} {
		if d := Decide(viewer, perm, "prj_a", "env_a"); d.Reason != want {
			t.Errorf("%v: reason %q, want %q", perm, d.Reason, want)
		}
	}
}

func TestSecret_IsRandomPrefixedAndHashedStably(t *testing.T) {
	t.Parallel()
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if a == b || !strings.HasPrefix(a, SecretPrefix) || len(a) < 40 {
		t.Fatalf("weak or repeated secrets: %q %q", a, b)
	}
	// Stable: hashing the same secret again gives the same hash.
	hash, again := HashSecret(a), HashSecret(a)
	if hash != again || hash == HashSecret(b) || strings.Contains(hash, a) {
		t.Fatal("hash must be stable, distinct and not contain the secret")
	}
}

func TestBearerToken_IsTakenExactlyWithoutNormalisingWhitespace(t *testing.T) {
	t.Parallel()
	for header, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER isot_x-y.z~": "isot_x-y.z~",
		// Refused: whitespace around or inside the secret, of any kind.
		"Bearer  abc": "", "Bearer abc ": "", "Bearer\tabc": "", "Bearer a bc": "",
		"Bearer \u00a0abc": "", "Bearer abc\u00a0": "", "Bearer abc\u2003": "", "Bearer \u2003abc": "",
		"Bearer abc\u200b": "", "Bearer abc\r": "", "Bearer \ufeffabc": "", "Bearer abç": "",
		"Basic abc": "", "Bearer": "", "": "", "Bearer ": "", " Bearer abc": "",
	} {
		got, ok := BearerToken(header)
		if got != want || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", header, got, ok, want)
		}
	}
}
