import {
  to = isolation_environment.checkout
  id = "env_0123456789abcdef"
}
