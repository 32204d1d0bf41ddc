# A policy is imported by its id, or by its project's name and its own.
terraform import isolation_policy.checkout pol_01a219d9-8387-7e2b-92d3-8b652eeeb47a
terraform import isolation_policy.checkout payments/checkout
