import {
  to = isolation_project.payments
  id = "prj_01a219d9-832d-73d3-951b-0d6ab185764f"
}
