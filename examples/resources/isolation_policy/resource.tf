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
      # Names resolve through the environment's own resolver (isolationd's
      # DNS proxy), which needs no rule; DNS to any other resolver is
      # blocked unless a rule like this one lists udp 53.
      ports = [{ protocol = "tcp", port = 443 }]
    },
  ]
}

# Lets build environments fetch packages by name, and nothing else: the
# addresses their resolver answers for these names are allowed on 443 for
# the answer's TTL. "*.githubusercontent.com" stands for exactly one more
# label (objects.githubusercontent.com, not a.b.githubusercontent.com).
resource "isolation_policy" "builds" {
  project_id   = isolation_project.payments.id
  name         = "builds"
  description  = "Builds: out to the package registries by name"
  policy_types = ["egress"]

  environment_selector = {
    match_labels = { app = "build" }
  }

  egress = [
    {
      to = [
        { fqdn = "registry.npmjs.org" },
        { fqdn = "proxy.golang.org" },
        { fqdn = "*.githubusercontent.com" },
      ]
      ports = [{ port = 443 }]
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

# Lets the CI runners of any project labelled team = "platform" (but not
# the sandbox ones) scrape the checkout environments' metrics, on the port
# each checkout environment's workload declares under the name "metrics"
# (workload.ports), and reach their SCTP signalling range. The runners'
# own project needs an egress policy that allows it too: a connection
# across projects passes only when both ends allow it.
resource "isolation_policy" "from_platform_ci" {
  project_id   = isolation_project.payments.id
  name         = "from-platform-ci"
  policy_types = ["ingress"]

  environment_selector = {
    match_expressions = [{ key = "app", operator = "In", values = ["checkout", "checkout-canary"] }]
  }

  ingress = [
    {
      from = [{
        project_selector = { match_labels = { team = "platform" } }
        environment_selector = {
          match_labels      = { role = "ci-runner" }
          match_expressions = [{ key = "sandbox", operator = "DoesNotExist" }]
        }
      }]
      ports = [
        { port_name = "metrics" },
        { protocol = "sctp", port = 2905, end_port = 2910 },
      ]
    },
  ]
}
