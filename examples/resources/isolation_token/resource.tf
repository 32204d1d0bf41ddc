# A token for the payments team's CI pipeline: it may create, change and
# delete the project's environments and policies, and sees no other
# project. It stops working at the end of the year; moving expires_at
# rotates it (a new token replaces the old one, which is revoked).
resource "isolation_token" "payments_ci" {
  name       = "payments-ci"
  role       = "editor"
  project_id = isolation_project.payments.id
  expires_at = "2030-12-31T23:59:59Z"
}

# A developer of the payments project: reads its environments and execs
# into them (isolationd env exec and env shell, or
# isolation_environment_session), and nothing else.
resource "isolation_token" "alice" {
  name       = "alice"
  role       = "developer"
  project_id = isolation_project.payments.id
}

# An on-call reader who may also get a shell when something breaks.
resource "isolation_token" "oncall" {
  name       = "oncall"
  role       = "viewer"
  project_id = isolation_project.payments.id
  developer  = true
}

# An organization-wide, read-only token for the security team's SIEM.
resource "isolation_token" "siem" {
  name = "siem-reader"
  role = "auditor"
}

# The secret is in the state (keep the state encrypted and access to it
# restricted); hand it on only through sensitive values.
output "payments_ci_token" {
  value     = isolation_token.payments_ci.secret
  sensitive = true
}
