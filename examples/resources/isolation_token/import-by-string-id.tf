# The secret of an imported token stays null in state: the server keeps
# only a hash of it.
import {
  to = isolation_token.siem
  id = "tok_01a219d9-83a1-7d54-8c3b-2f1e0a9b7c6d"
}
