import {
  to = isolation_environment.checkout
  id = "env_01a219d9-833f-7117-9bca-34edcecd8482"
}
