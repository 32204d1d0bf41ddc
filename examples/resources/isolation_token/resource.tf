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
