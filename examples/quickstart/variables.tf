variable "project_name" {
  description = "Name of the project that holds the quickstart's environments."
  type        = string
  default     = "quickstart"
}

variable "team" {
  description = "Team label put on the project and both environments."
  type        = string
  default     = "platform"
}

variable "image" {
  description = "Image both workloads run: a local image's name (`isolationd image import NAME PATH`) or a registry reference. It needs busybox's httpd, nc, sh and cat, and a page in /www; `make demo` builds one from Debian's busybox-static and imports it under this name."
  type        = string
  default     = "quickstart/busybox:1"
}
