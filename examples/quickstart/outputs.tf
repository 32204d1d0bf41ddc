output "project_id" {
  description = "The project's id."
  value       = isolation_project.this.id
}

output "environments" {
  description = "Each environment's id, state, address and workload state (not_run on a server running the simulate driver)."
  value = {
    for name, env in {
      api = isolation_environment.api
      db  = isolation_environment.db
      } : name => {
      id             = env.id
      state          = env.state
      address        = env.address
      workload_state = env.workload_state
    }
  }
}

output "policy_id" {
  description = "The policy's id."
  value       = isolation_policy.app.id
}

# Each rule of the database's effective policy in words: its peers (a host
# name, a CIDR with the ranges carved out of it, or the environments a
# selector matches now) and its ports.
locals {
  db_rules = {
    for direction, rules in {
      ingress = data.isolation_effective_policy.db.ingress
      egress  = data.isolation_effective_policy.db.egress
      } : direction => [
      for rule in rules : {
        peers = [
          for peer in rule.peers : (
            peer.fqdn != null ? peer.fqdn :
            peer.cidr == null ? join(",", peer.environments[*].name) :
            try(length(peer.except), 0) == 0 ? peer.cidr :
            "${peer.cidr} except ${join(", ", sort(peer.except))}"
          )
        ]
        ports = [
          for port in rule.ports : (
            port.port == null ? port.protocol :
            port.end_port == null ? "${port.protocol}/${port.port}" :
            "${port.protocol}/${port.port}-${port.end_port}"
          )
        ]
      }
    ]
  }
}

output "db_effective_policy" {
  description = "The policies that select the database and the traffic they allow it."
  value = {
    policies = data.isolation_effective_policy.db.policies[*].name
    ingress  = [for rule in local.db_rules.ingress : { from = rule.peers, ports = rule.ports }]
    egress   = [for rule in local.db_rules.egress : { to = rule.peers, ports = rule.ports }]
  }
}
