import {
  to = isolation_project.payments
  id = "prj_0123456789abcdef"
}
