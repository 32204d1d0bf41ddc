data "isolation_effective_policy" "checkout" {
  environment_id = isolation_environment.checkout.id
}

# The policies that select the environment.
output "checkout_policies" {
  value = data.isolation_effective_policy.checkout.policies[*].name
}

# Every address the environment may reach on TCP 5432, with selector
# peers resolved to the environments they match now.
output "checkout_db_addresses" {
  value = flatten([
    for rule in data.isolation_effective_policy.checkout.egress : [
      for peer in rule.peers : peer.environments[*].address
    ] if contains(try([for p in rule.ports : p.port], []), 5432)
  ])
}
