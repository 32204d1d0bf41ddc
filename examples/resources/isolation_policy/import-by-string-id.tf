import {
  to = isolation_policy.checkout
  id = "pol_01a219d9-8387-7e2b-92d3-8b652eeeb47a"
}
