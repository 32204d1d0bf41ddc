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
