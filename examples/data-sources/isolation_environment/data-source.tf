# By project and name.
data "isolation_environment" "checkout" {
  project_id = data.isolation_project.payments.id
  name       = "checkout-dev"
}

# By id.
data "isolation_environment" "by_id" {
  id = "env_0123456789abcdef"
}

output "checkout_address" {
  value = data.isolation_environment.checkout.address
}
