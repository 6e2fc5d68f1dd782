output "cluster_name" {
  value = aws_ecs_cluster.this.name
}

output "service_name" {
  value = aws_ecs_service.this.name
}

output "task_definition_arn" {
  value = aws_ecs_task_definition.this.arn
}

output "log_group" {
  value = aws_cloudwatch_log_group.this.name
}

output "worker_token_secret_arn" {
  value = aws_secretsmanager_secret.container["GRAPE_WORKER_TOKEN"].arn
}

output "task_role_arn" {
  value = aws_iam_role.task.arn
}

output "security_group_id" {
  value = aws_security_group.this.id
}
