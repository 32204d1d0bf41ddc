# Checkout environments must keep reaching their database: a policy
# change, a relabelled environment or a new one that would deny it is
# refused, and the apply that tries fails naming this assertion.
# depends_on makes Terraform create it after the policy it tests and
# destroy it before.
resource "isolation_assertion" "checkout_reaches_db" {
  project_id = isolation_project.payments.id
  name       = "checkout-reaches-db"
  from       = { environment_selector = { match_labels = { app = "checkout" } } }
  to         = { environment_selector = { match_labels = { app = "checkout-db" } } }
  port       = 5432
  expect     = "allow"

  depends_on = [isolation_policy.checkout]
}

# Nothing of the project may reach private address space on SSH: the
# packet goes to the prefix's first and last address.
resource "isolation_assertion" "no_ssh_to_private" {
  project_id = isolation_project.payments.id
  name       = "no-ssh-to-private"
  from       = { environment_selector = {} }
  to         = { cidr = "10.0.0.0/8" }
  port       = 22
  expect     = "deny"
}

# Builds reach package registries by name, and no other host.
resource "isolation_assertion" "builds_only_registries" {
  project_id = isolation_project.payments.id
  name       = "builds-not-pastebin"
  from       = { environment_selector = { match_labels = { app = "build" } } }
  to         = { fqdn = "pastebin.com" }
  port       = 443
  expect     = "deny"
}
