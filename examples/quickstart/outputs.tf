output "project_id" {
  description = "The project's id."
  value       = isolation_project.this.id
}

output "environments" {
  description = "Each environment's id, state and address."
  value = {
    for name, env in {
      api = isolation_environment.api
      db  = isolation_environment.db
      } : name => {
      id      = env.id
      state   = env.state
      address = env.address
    }
  }
}

output "policy_id" {
  description = "The policy's id."
  value       = isolation_policy.app.id
}

output "db_effective_policy" {
  description = "The policies that select the database and the traffic they allow it."
  value = {
    policies = data.isolation_effective_policy.db.policies[*].name
    ingress = [
      for rule in data.isolation_effective_policy.db.ingress : {
        from  = [for peer in rule.peers : peer.cidr != null ? peer.cidr : join(",", peer.environments[*].name)]
        ports = [for port in rule.ports : "${port.protocol}/${port.port}"]
      }
    ]
    egress = [
      for rule in data.isolation_effective_policy.db.egress : {
        to    = [for peer in rule.peers : peer.cidr != null ? peer.cidr : join(",", peer.environments[*].name)]
        ports = [for port in rule.ports : "${port.protocol}/${port.port}"]
      }
    ]
  }
}
