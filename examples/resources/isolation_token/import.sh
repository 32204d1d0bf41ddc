# A token is imported by its id. Its secret cannot be imported: the server
# keeps only a hash of it, so an imported token has no secret in state.
terraform import isolation_token.siem tok_01a219d9-83a1-7d54-8c3b-2f1e0a9b7c6d
