# By name.
data "isolation_project" "payments" {
  name = "payments"
}

# By id.
data "isolation_project" "by_id" {
  id = "prj_0123456789abcdef"
}

output "payments_labels" {
  value = data.isolation_project.payments.labels
}
