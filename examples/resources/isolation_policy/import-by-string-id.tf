import {
  to = isolation_policy.checkout
  id = "pol_0123456789abcdef"
}
