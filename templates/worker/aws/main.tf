# A cloud-hosted Tendril on AWS: one ECS Fargate service that runs at most
# one task (a task is one registered worker), its task definition, roles, log
# group, an egress-only security group, and the worker token and the Terraform
# state bucket's keys in Secrets Manager (the bucket's endpoint and region are
# plain environment): a worker's state never stays on the task's disk, which
# is gone with the task. DEPLOY_WORKER applies it with the worker state key
# workers/<first 8 characters of worker_id>/terraform.tfstate. The service
# starts with one task so the new Tendril boots and shows ONLINE; later
# changes to its desired count (the scaler's) and task definition
# (UPDATE_WORKER's) are not Terraform's to undo.
#
# It has no provider block, so that deploy/terraform can also use it as a
# module (with for_each): the AWS provider takes its region from AWS_REGION,
# which DEPLOY_WORKER sets to var.region, and a check below refuses any other.

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.25"
    }
  }

  backend "s3" {}
}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {
  lifecycle {
    postcondition {
      condition     = self.name == var.region
      error_message = "The AWS provider's region is not var.region: set AWS_REGION to it (or pass a provider for that region)."
    }
  }
}

data "aws_vpc" "default" {
  count   = var.vpc_id == "" ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = length(var.subnet_ids) == 0 ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [local.vpc_id]
  }
}

locals {
  short_id   = substr(var.worker_id, 0, 8)
  name       = "tendril-${local.short_id}"
  vpc_id     = var.vpc_id != "" ? var.vpc_id : data.aws_vpc.default[0].id
  subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : data.aws_subnets.default[0].ids
  tags = {
    "tendril:pool"      = "true"
    "tendril:worker-id" = var.worker_id
    "tendril:name"      = var.worker_name
  }
}

resource "aws_ecs_cluster" "this" {
  #checkov:skip=CKV_AWS_65:a cluster per worker, of one task at most: Container Insights would bill its metrics every month for each worker, while Trellis already shows each worker's state and jobs and the log group holds its log
  name = local.name
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts it with its own key; Tendril masks every secret it knows before a line leaves the process, so a customer-managed KMS key per worker adds cost and no protection worth it
  #checkov:skip=CKV_AWS_338:the job logs users read are kept by Trellis; this is the worker's own log, for debugging, and 30 days bounds its cost
  name              = "/tendril/${local.short_id}"
  retention_in_days = 30
  tags              = local.tags
}

# The container's secrets, each in a secret of its own that only the task's
# execution role may read: the worker token, the state bucket's keys and,
# when given, the Infracost key. Keyed by the environment variable the
# container gets; the value is the secret's name under tendril/<short id>/.
locals {
  secret_names = merge(
    {
      GRAPE_WORKER_TOKEN          = "worker-token"
      SUPABASE_STORAGE_KEY_ID     = "storage-key-id"
      SUPABASE_STORAGE_SECRET_KEY = "storage-secret-key"
    },
    # Only whether a key is given decides the set of secrets, not the key.
    nonsensitive(var.infracost_api_key != "") ? { INFRACOST_API_KEY = "infracost-api-key" } : {},
  )
  secret_values = {
    GRAPE_WORKER_TOKEN          = var.worker_token
    SUPABASE_STORAGE_KEY_ID     = var.state_key_id
    SUPABASE_STORAGE_SECRET_KEY = var.state_secret_key
    INFRACOST_API_KEY           = var.infracost_api_key
  }
}

resource "aws_secretsmanager_secret" "container" {
  #checkov:skip=CKV_AWS_149:the AWS-managed key encrypts it; a customer-managed KMS key per worker would cost money each month, and IAM already limits who reads it (of this template's roles, the execution role alone)
  #checkov:skip=CKV2_AWS_57:the values come from outside AWS (Trellis issues the worker token, Supabase the storage keys, Infracost its key): a rotation Lambda cannot make new ones, and a re-deploy with new values replaces them
  for_each = local.secret_names

  name                    = "tendril/${local.short_id}/${each.value}"
  recovery_window_in_days = 0
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "container" {
  for_each = local.secret_names

  secret_id     = aws_secretsmanager_secret.container[each.key].id
  secret_string = local.secret_values[each.key]
}

# The worker token's secret had a resource of its own before.
moved {
  from = aws_secretsmanager_secret.worker_token
  to   = aws_secretsmanager_secret.container["GRAPE_WORKER_TOKEN"]
}

moved {
  from = aws_secretsmanager_secret_version.worker_token
  to   = aws_secretsmanager_secret_version.container["GRAPE_WORKER_TOKEN"]
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secret" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for secret in aws_secretsmanager_secret.container : secret.arn]
  }
}

resource "aws_iam_role_policy" "execution_secret" {
  name   = "read-container-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secret.json
}

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

# The running Tendril protects its own task from scale-in while a job runs.
data "aws_iam_policy_document" "task_protection" {
  statement {
    actions = ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]
    resources = [
      "arn:aws:ecs:${var.region}:${data.aws_caller_identity.current.account_id}:task/${local.name}/*",
    ]
  }
}

resource "aws_iam_role_policy" "task_protection" {
  name   = "task-protection"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_protection.json
}

resource "aws_security_group" "this" {
  name = local.name
  #checkov:skip=CKV_AWS_382:jobs run the vine's Terraform, Helm and cloud CLIs, which reach whatever endpoints the vine names (cloud APIs, clusters, databases, git over SSH) on their own ports; the group lets nothing in
  description = "Tendril ${var.worker_name}: egress only"
  vpc_id      = local.vpc_id
  tags        = local.tags

  egress {
    description = "Trellis, the state bucket, and what jobs reach"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_ecs_task_definition" "this" {
  #checkov:skip=CKV_AWS_336:Tendril's tools write outside the work directory (Terraform, Helm and the AWS, Azure and Google CLIs keep caches and temporary files where each chooses), so a read-only root would break jobs; the task's disk is gone with the task
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  tags                     = local.tags

  runtime_platform {
    cpu_architecture        = "X86_64"
    operating_system_family = "LINUX"
  }

  container_definitions = jsonencode([
    {
      name        = "tendril"
      image       = "${var.image_repository}:${var.image_tag}"
      essential   = true
      stopTimeout = 120
      environment = [
        { name = "GRAPE_WORKER_MODE", value = "cloud-hosted" },
        { name = "GRAPE_WORKER_ID", value = var.worker_id },
        { name = "TRELLIS_URL", value = var.trellis_url },
        { name = "SUPABASE_S3_ENDPOINT", value = var.state_endpoint },
        { name = "SUPABASE_S3_REGION", value = var.state_region },
        { name = "TENDRIL_HEALTH_ADDR", value = "127.0.0.1:9460" },
      ]
      # ECS replaces an unhealthy task, even one in the middle of a job (task
      # protection guards against scale-in only): so only ten minutes of
      # failed checks in a row (Trellis silent, or the work dir unwritable)
      # count as unhealthy.
      healthCheck = {
        command     = ["CMD", "tendril", "health"]
        interval    = 60
        timeout     = 10
        retries     = 10
        startPeriod = 120
      }
      secrets = [
        for name, secret in aws_secretsmanager_secret.container : { name = name, valueFrom = secret.arn }
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "tendril"
        }
      }
    },
  ])
}

resource "aws_ecs_service" "this" {
  #checkov:skip=CKV_AWS_333:assign_public_ip is a setting: in the default VPC (public subnets, no NAT) the task needs a public IP to pull its image and reach Trellis; set it to false in private subnets with a NAT; the security group lets nothing in
  name                               = local.name
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = 1
  launch_type                        = "FARGATE"
  deployment_maximum_percent         = 100
  deployment_minimum_healthy_percent = 0
  propagate_tags                     = "SERVICE"
  tags                               = local.tags

  network_configuration {
    subnets          = local.subnet_ids
    security_groups  = [aws_security_group.this.id]
    assign_public_ip = var.assign_public_ip
  }

  # One task at most: a new deployment (UPDATE_WORKER's) stops the old task
  # first. A new task that cannot start (an image that cannot be pulled)
  # rolls the service back to the task definition that ran.
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count, task_definition]
  }
}
