# An environment is imported by its id.
terraform import isolation_environment.checkout env_0123456789abcdef
