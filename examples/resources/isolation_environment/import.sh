# An environment is imported by its id, or by its project's name and its own.
terraform import isolation_environment.checkout env_01a219d9-833f-7117-9bca-34edcecd8482
terraform import isolation_environment.checkout payments/checkout
