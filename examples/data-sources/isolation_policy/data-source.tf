# By id.
data "isolation_policy" "checkout" {
  id = "pol_0123456789abcdef"
}

# By project and name.
data "isolation_policy" "ping" {
  project_id = isolation_project.payments.id
  name       = "ping"
}

output "checkout_policy_types" {
  value = data.isolation_policy.checkout.policy_types
}
