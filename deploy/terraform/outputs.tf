output "workers" {
  description = "Each worker's ECS cluster and service."
  value = {
    for name, worker in module.worker : name => {
      cluster = worker.cluster_name
      service = worker.service_name
    }
  }
}

output "scaler_function_url" {
  description = "For Trellis (SCALER_FUNCTION_URL): its bare POST here when a job is queued runs a scale-up-only pass (with secret auth; with aws-iam AWS refuses the unsigned POST)."
  value       = one(aws_lambda_function_url.scaler[*].function_url)
}

output "scaler_url_auth" {
  description = "secret: a call without the header below (today's Trellis) runs a scale-up-only pass, one with it a full pass; aws-iam: only SigV4-signed calls (service lambda) get through, so today's Trellis, which cannot sign, pings in vain."
  value       = var.scaler_url_auth
}

output "scaler_secret_header" {
  description = "The header a caller sends the shared secret in for a full pass (Trellis's ping needs none)."
  value       = "x-tendril-scaler-secret"
}

output "scaler_url_secret" {
  description = "With secret auth: the header's value for a full pass (also in Secrets Manager); a wrong value is refused with 401."
  value       = one(random_password.url_secret[*].result)
  sensitive   = true
}

output "scaler_url_secret_arn" {
  description = "The Secrets Manager secret holding the header's value."
  value       = one(aws_secretsmanager_secret.url_secret[*].arn)
}
