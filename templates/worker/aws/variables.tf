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

# The bucket the worker keeps Terraform state in. Without these settings a
# cloud-hosted worker would keep state on the task's disk, which is gone
# with the task, so they are required.

variable "state_endpoint" {
  description = "The S3-compatible endpoint of the Terraform state bucket (SUPABASE_S3_ENDPOINT)."
  type        = string

  validation {
    condition     = trimspace(var.state_endpoint) != ""
    error_message = "state_endpoint is empty: a worker without the state bucket would keep Terraform state on the task's disk."
  }
}

variable "state_region" {
  description = "The region of the Terraform state bucket (SUPABASE_S3_REGION)."
  type        = string

  validation {
    condition     = trimspace(var.state_region) != ""
    error_message = "state_region is empty."
  }
}

variable "state_key_id" {
  description = "The access key id of the state bucket (SUPABASE_STORAGE_KEY_ID); pass it as TF_VAR_state_key_id, never in tfvars."
  type        = string
  sensitive   = true

  validation {
    condition     = trimspace(var.state_key_id) != ""
    error_message = "state_key_id is empty."
  }
}

variable "state_secret_key" {
  description = "The secret key of the state bucket (SUPABASE_STORAGE_SECRET_KEY); pass it as TF_VAR_state_secret_key, never in tfvars."
  type        = string
  sensitive   = true

  validation {
    condition     = trimspace(var.state_secret_key) != ""
    error_message = "state_secret_key is empty."
  }
}

variable "infracost_api_key" {
  description = "The Infracost API key (INFRACOST_API_KEY) for cost estimates of plans; empty for none. Pass it as TF_VAR_infracost_api_key."
  type        = string
  sensitive   = true
  default     = ""
}
