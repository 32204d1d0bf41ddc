# Every live token of the payments project (never their secrets), for
# example to review who can change its environments.
data "isolation_tokens" "payments" {
  project_id = data.isolation_project.payments.id
}

output "payments_editors" {
  value = [for t in data.isolation_tokens.payments.tokens : t.name if t.role == "editor"]
}
