resource "isolation_environment" "checkout" {
  project_id  = isolation_project.payments.id
  name        = "checkout-dev"
  description = "Checkout service, development"
  labels = {
    app  = "checkout"
    tier = "dev"
  }

  resources = {
    cpu_millis = 2000
    memory_mb  = 4096
    disk_gb    = 20
  }

  # Torn down by the server a week after creation.
  ttl_seconds = 604800

  timeouts {
    create = "10m"
    delete = "10m"
  }
}
