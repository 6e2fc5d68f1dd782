variable "region" {
  description = "The region of this pool (and of the scaler, when created here)."
  type        = string
}

variable "trellis_url" {
  description = "The Trellis the workers serve."
  type        = string
}

variable "image_repository" {
  description = "The Tendril image repository."
  type        = string
  default     = "ghcr.io/bobikenobi12/tendril"
}

variable "image_tag" {
  description = "The Tendril image tag the workers start with (UPDATE_WORKER changes it later)."
  type        = string
}

variable "workers" {
  description = "The pool's workers by name: each a registered worker id, and its task size."
  type = map(object({
    worker_id = string
    cpu       = optional(number, 1024)
    memory    = optional(number, 2048)
  }))
  default = {}
}

variable "worker_tokens" {
  description = "Each worker's token, by the same names as workers (kept in Secrets Manager for the task)."
  type        = map(string)
  sensitive   = true
  default     = {}
}

variable "state_endpoint" {
  description = "The S3-compatible endpoint of the bucket the workers keep Terraform state in (SUPABASE_S3_ENDPOINT)."
  type        = string
}

variable "state_region" {
  description = "The region of the state bucket (SUPABASE_S3_REGION)."
  type        = string
}

variable "state_key_id" {
  description = "The state bucket's access key id (kept in Secrets Manager for the tasks); pass it as TF_VAR_state_key_id."
  type        = string
  sensitive   = true
}

variable "state_secret_key" {
  description = "The state bucket's secret key (kept in Secrets Manager for the tasks); pass it as TF_VAR_state_secret_key."
  type        = string
  sensitive   = true
}

variable "infracost_api_key" {
  description = "The Infracost API key for the workers' cost estimates, empty for none; pass it as TF_VAR_infracost_api_key."
  type        = string
  sensitive   = true
  default     = ""
}

variable "vpc_id" {
  description = "The VPC of the tasks; empty for the region's default VPC."
  type        = string
  default     = ""
}

variable "subnet_ids" {
  description = "The subnets of the tasks; empty for the default VPC's."
  type        = list(string)
  default     = []
}

variable "assign_public_ip" {
  description = "Whether tasks get a public IP (needed in public subnets to pull the image)."
  type        = bool
  default     = true
}

variable "create_scaler" {
  description = "Create the scaler Lambda in this region (one scaler serves every pool region)."
  type        = bool
  default     = true
}

variable "scaler_zip" {
  description = "A zip holding the Tendril binary as `bootstrap`, built for Amazon Linux 2023 (see README)."
  type        = string
  default     = "tendril-scaler.zip"
}

variable "scaler_architecture" {
  description = "x86_64 or arm64: the architecture the bootstrap was built for."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.scaler_architecture)
    error_message = "scaler_architecture is x86_64 or arm64."
  }
}

variable "scaler_regions" {
  description = "The regions whose tendril:pool services the scaler manages; empty for this region only."
  type        = list(string)
  default     = []
}

variable "scaler_extra_services" {
  description = "Services outside the tag search for the scaler to manage (the WORKERS setting)."
  type = list(object({
    region    = string
    cluster   = string
    service   = string
    worker_id = string
  }))
  default = []
}

variable "supabase_url" {
  description = "The Supabase project of Trellis, whose provision_jobs the scaler counts."
  type        = string
  default     = ""
}

variable "supabase_service_role_key_secret_arn" {
  description = "The Secrets Manager secret holding Supabase's service-role key (created outside Terraform, so the key is never in its state)."
  type        = string
  default     = ""
}

variable "scaler_url_auth" {
  description = "How calls to the Function URL are checked: secret (a public URL: a call with the shared-secret header runs a full pass, one without it, such as today's Trellis's bare POST, a scale-up-only pass) or aws-iam (SigV4-signed calls only; AWS refuses Trellis's unsigned POST, so jobs wait for the minute's pass)."
  type        = string
  default     = "secret"

  validation {
    condition     = contains(["secret", "aws-iam"], var.scaler_url_auth)
    error_message = "scaler_url_auth is secret or aws-iam."
  }
}

variable "scaler_url_invokers" {
  description = "With aws-iam: the IAM principals (ARNs) allowed to call the Function URL, i.e. Trellis's."
  type        = list(string)
  default     = []
}

variable "scaler_idle_time" {
  description = "How long a worker stays idle before its service is scaled to 0."
  type        = string
  default     = "5m"
}

variable "scaler_startup_budget" {
  description = "How long a service may want a task without running one before the scaler counts it as not starting (no capacity; reported) and starts another for waiting jobs."
  type        = string
  default     = "5m"
}

variable "scaler_recover_stale_jobs" {
  description = "Whether each full pass first calls rpc/recover_stale_jobs (Trellis's database has it)."
  type        = bool
  default     = true
}
