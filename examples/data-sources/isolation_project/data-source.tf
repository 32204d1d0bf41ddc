# By name.
data "isolation_project" "payments" {
  name = "payments"
}

# By id.
data "isolation_project" "by_id" {
  id = "prj_01a219d9-832d-73d3-951b-0d6ab185764f"
}

output "payments_labels" {
  value = data.isolation_project.payments.labels
}
