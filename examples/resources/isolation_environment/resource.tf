resource "isolation_environment" "checkout" {
  project_id  = isolation_project.payments.id
  name        = "checkout-dev"
  description = "Checkout service, development"
  labels = {
    app  = "checkout"
    tier = "dev"
  }

  resources = {
    cpu_millis    = 2000
    memory_mb     = 4096
    disk_gb       = 20
    max_processes = 512
  }

  # What the environment runs. Changing it restarts the workload in place:
  # same address, same home volume (/home). The simulate driver records it
  # and runs nothing.
  workload = {
    image       = "registry.example.com/payments/checkout:1.4"
    command     = ["/usr/local/bin/checkout"]
    args        = ["--listen", ":8080"]
    env         = { LOG_LEVEL = "debug" }
    working_dir = "/home"
    restart     = "on-failure"
    # Named ports, for policy rules that give a port_name instead of a number.
    ports = [
      { name = "http", port = 8080 },
      { name = "metrics", port = 9100 },
    ]
  }

  # Torn down by the server a week after creation.
  ttl_seconds = 604800

  timeouts {
    create = "10m"
    delete = "10m"
  }
}

output "checkout_workload" {
  # not_run on a simulate server; running, exited or crash_looping where it runs.
  value = isolation_environment.checkout.workload_state
}
