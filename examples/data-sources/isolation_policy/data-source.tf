# By id.
data "isolation_policy" "checkout" {
  id = "pol_01a219d9-8387-7e2b-92d3-8b652eeeb47a"
}

# By project and name.
data "isolation_policy" "ping" {
  project_id = isolation_project.payments.id
  name       = "ping"
}

output "checkout_policy_types" {
  value = data.isolation_policy.checkout.policy_types
}
