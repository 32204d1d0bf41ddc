# Every ready development environment of the payments project.
data "isolation_environments" "dev" {
  project_id = data.isolation_project.payments.id
  labels     = { tier = "dev" }
  state      = "ready"
}

output "dev_environment_ids" {
  value = data.isolation_environments.dev.ids
}

output "dev_addresses" {
  value = { for env in data.isolation_environments.dev.environments : env.name => env.address }
}
