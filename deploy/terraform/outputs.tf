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
  description = "For Trellis: POST here when a job is queued."
  value       = one(aws_lambda_function_url.scaler[*].function_url)
}

output "scaler_url_auth" {
  description = "secret: send the header below; aws-iam: sign the call with SigV4 (service lambda)."
  value       = var.scaler_url_auth
}

output "scaler_secret_header" {
  description = "The header Trellis sends the shared secret in."
  value       = "x-tendril-scaler-secret"
}

output "scaler_url_secret" {
  description = "For Trellis, with secret auth: the header's value (also in Secrets Manager)."
  value       = one(random_password.url_secret[*].result)
  sensitive   = true
}

output "scaler_url_secret_arn" {
  description = "The Secrets Manager secret holding the header's value."
  value       = one(aws_secretsmanager_secret.url_secret[*].arn)
}
