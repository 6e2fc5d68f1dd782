variable "worker_id" {
  description = "The worker's id in Trellis."
  type        = string
}

variable "worker_name" {
  description = "The worker's name, as Trellis shows it."
  type        = string
}

variable "worker_token" {
  description = "The worker's token; Tendril passes it as TF_VAR_worker_token, never in tfvars."
  type        = string
  sensitive   = true
}

variable "region" {
  description = "The AWS region of the worker."
  type        = string
}

variable "image_repository" {
  description = "The Tendril image repository."
  type        = string
  default     = "ghcr.io/bobikenobi12/tendril"
}

variable "image_tag" {
  description = "The Tendril image tag."
  type        = string
}

variable "trellis_url" {
  description = "The Trellis the worker serves."
  type        = string
}

variable "cpu" {
  description = "Fargate CPU units of the task."
  type        = number
  default     = 1024
}

variable "memory" {
  description = "Fargate memory (MiB) of the task."
  type        = number
  default     = 2048
}

variable "vpc_id" {
  description = "The VPC of the task; empty for the region's default VPC."
  type        = string
  default     = ""
}

variable "subnet_ids" {
  description = "The subnets of the task; empty for the default VPC's."
  type        = list(string)
  default     = []
}

variable "assign_public_ip" {
  description = "Whether the task gets a public IP (needed in public subnets to pull the image)."
  type        = bool
  default     = true
}
