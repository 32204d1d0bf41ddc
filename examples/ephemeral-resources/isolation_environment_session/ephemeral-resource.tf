# A credential that may exec into the checkout environment, and do nothing
# else, for this run only. The provider's token must be allowed to exec
# there (an admin or developer token, or one made with developer = true).
# Terraform revokes it when the run is done, and never writes it to the
# state or to a plan.
ephemeral "isolation_environment_session" "checkout" {
  environment_id = isolation_environment.checkout.id
  ttl            = "10m"
}

# Migrate the checkout database once the environment is up: the
# provisioner runs isolationd env exec with the session credential as its
# token (its output is hidden, as the credential is sensitive).
resource "terraform_data" "migrate" {
  triggers_replace = [isolation_environment.checkout.workload.image]

  provisioner "local-exec" {
    command = "isolationd env exec ${isolation_environment.checkout.id} -- /usr/local/bin/checkout migrate"
    environment = {
      ISOLATION_ENDPOINT = "https://isolation.example.com"
      ISOLATION_TOKEN    = ephemeral.isolation_environment_session.checkout.token
    }
  }
}
