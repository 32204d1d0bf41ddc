terraform {
  required_version = ">= 1.5"

  required_providers {
    isolation = {
      source = "isolationhq/isolation"
    }
  }
}

# Configured from ISOLATION_ENDPOINT and ISOLATION_TOKEN.
provider "isolation" {}
