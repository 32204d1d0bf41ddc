# A policy is imported by its id.
terraform import isolation_policy.checkout pol_0123456789abcdef
