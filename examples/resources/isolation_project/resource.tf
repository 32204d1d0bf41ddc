resource "isolation_project" "payments" {
  name        = "payments"
  description = "The payments team's environments"
  labels = {
    team        = "payments"
    cost-center = "cc-1234"
  }
}
