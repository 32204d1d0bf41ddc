# By project and name.
data "isolation_environment" "checkout" {
  project_id = data.isolation_project.payments.id
  name       = "checkout-dev"
}

# By id.
data "isolation_environment" "by_id" {
  id = "env_01a219d9-833f-7117-9bca-34edcecd8482"
}

output "checkout_address" {
  value = data.isolation_environment.checkout.address
}
