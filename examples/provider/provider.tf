terraform {
  required_providers {
    isolation = {
      source = "isolationhq/isolation"
    }
  }
}

# The endpoint and token are best left to the ISOLATION_ENDPOINT and
# ISOLATION_TOKEN environment variables, which keep the token out of
# the configuration.
provider "isolation" {
  endpoint = "https://isolation.example.com"
}
