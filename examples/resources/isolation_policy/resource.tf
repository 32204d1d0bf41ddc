# Lets checkout environments take HTTPS from the gateways and reach
# their database and the internet (but not private address space).
resource "isolation_policy" "checkout" {
  project_id  = isolation_project.payments.id
  name        = "checkout"
  description = "Checkout: in from the gateways, out to its database and the internet"

  environment_selector = {
    match_labels = { app = "checkout" }
  }
  policy_types = ["ingress", "egress"]

  ingress = [
    {
      from  = [{ environment_selector = { match_labels = { app = "gateway" } } }]
      ports = [{ port = 8443 }]
    },
  ]

  egress = [
    {
      to    = [{ environment_selector = { match_labels = { app = "checkout-db" } } }]
      ports = [{ protocol = "tcp", port = 5432 }]
    },
    {
      to = [{
        cidr   = "0.0.0.0/0"
        except = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
      }]
      ports = [
        { protocol = "tcp", port = 443 },
        { protocol = "udp", port = 53 },
      ]
    },
  ]
}

# A policy that selects every environment of the project (an empty
# selector) and allows ICMP between them. Leaving out ports would
# allow every port and protocol.
resource "isolation_policy" "ping" {
  project_id           = isolation_project.payments.id
  name                 = "ping"
  environment_selector = {}
  policy_types         = ["ingress"]

  ingress = [
    {
      from  = [{ environment_selector = {} }]
      ports = [{ protocol = "icmp" }]
    },
  ]
}
