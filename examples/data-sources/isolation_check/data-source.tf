# Checkout must reach the internet on 443: the apply fails, saying why,
# when the policies it depends on would deny that.
data "isolation_check" "checkout_https" {
  environment_id = isolation_environment.checkout.id
  direction      = "egress"
  protocol       = "tcp"
  address        = "203.0.113.10"
  port           = 443
  depends_on     = [isolation_policy.checkout]

  lifecycle {
    postcondition {
      condition     = self.allowed
      error_message = "checkout cannot reach the internet on 443: ${coalesce(self.reason, "denied")}"
    }
  }
}

# A check block only warns: SSH into checkout from anywhere stays denied.
check "checkout_has_no_ssh" {
  data "isolation_check" "checkout_ssh" {
    environment_id = isolation_environment.checkout.id
    direction      = "ingress"
    address        = "198.51.100.7"
    port           = 22
  }

  assert {
    condition     = !data.isolation_check.checkout_ssh.allowed
    error_message = "checkout takes SSH, allowed by policy ${coalesce(data.isolation_check.checkout_ssh.policy_name, "?")}"
  }
}
