# A project with two environments, an API and its database, each running a
# workload from var.image; one policy that lets them reach each other on
# PostgreSQL's port, and one that lets the API fetch packages from npm and
# GitHub by name. Everything else is denied, the rest of the internet
# included: environments are isolated by default.

locals {
  api_labels = { app = "api", team = var.team, stack = var.project_name }
  db_labels  = { app = "db", team = var.team, stack = var.project_name }
}

resource "isolation_project" "this" {
  name        = var.project_name
  description = "Quickstart: an API, its database and the policy between them"
  labels      = { team = var.team }
}

resource "isolation_environment" "api" {
  project_id  = isolation_project.this.id
  name        = "api"
  description = "The API server"
  labels      = local.api_labels

  # A web server on port 8080, serving the image's /www and logging each
  # request to its output (isolationd env logs ENV). The policy lets no one
  # reach this port: only the database's port is open, between the two.
  workload = {
    image   = var.image
    command = ["httpd", "-f", "-vv", "-p", "8080", "-h", "/www"]
  }
}

resource "isolation_environment" "db" {
  project_id  = isolation_project.this.id
  name        = "db"
  description = "PostgreSQL"
  labels      = local.db_labels

  # A stand-in for PostgreSQL on its port: an echo service that sends back
  # what a client sends, and logs each connection to its output.
  workload = {
    image   = var.image
    command = ["nc", "-ll", "-p", "5432", "-e", "sh", "-c", "echo db: a client connected >&2; exec cat"]
  }

  resources = {
    cpu_millis = 2000
    memory_mb  = 4096
    disk_gb    = 20
  }
}

resource "isolation_policy" "app" {
  project_id  = isolation_project.this.id
  name        = "api-and-db"
  description = "api and db reach each other on 5432"

  # Applies to every environment of this stack: api and db.
  environment_selector = {
    match_labels = { stack = var.project_name }
  }
  policy_types = ["ingress", "egress"]

  ingress = [
    {
      from = [
        { environment_selector = { match_labels = { app = "api" } } },
        { environment_selector = { match_labels = { app = "db" } } },
      ]
      ports = [{ protocol = "tcp", port = 5432 }]
    },
  ]

  egress = [
    {
      to = [
        { environment_selector = { match_labels = { app = "api" } } },
        { environment_selector = { match_labels = { app = "db" } } },
      ]
      ports = [{ protocol = "tcp", port = 5432 }]
    },
  ]
}

resource "isolation_policy" "api_packages" {
  project_id  = isolation_project.this.id
  name        = "api-fetches-packages"
  description = "api reaches the npm registry and GitHub's downloads on 443, by name"

  environment_selector = {
    match_labels = { app = "api", stack = var.project_name }
  }
  policy_types = ["egress"]

  # By name, not address: api's resolver (isolationd's DNS proxy, on the
  # netns driver) lets api reach the addresses these names resolve to, for
  # as long as the answer's TTL, and refuses to resolve any other name for
  # it. A wildcard stands for exactly one more label:
  # objects.githubusercontent.com, not a.b.githubusercontent.com.
  egress = [
    {
      to = [
        { fqdn = "registry.npmjs.org" },
        { fqdn = "*.githubusercontent.com" },
      ]
      ports = [{ protocol = "tcp", port = 443 }]
    },
  ]
}

# What the database may do now, as the server computed it from every policy
# that selects it, with selector peers resolved to environments.
data "isolation_effective_policy" "db" {
  environment_id = isolation_environment.db.id

  # Read after the policy exists, so the outputs show it.
  depends_on = [isolation_policy.app]
}
