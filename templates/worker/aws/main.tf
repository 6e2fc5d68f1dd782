# A cloud-hosted Tendril on AWS: one ECS Fargate service that runs at most
# one task (a task is one registered worker), its task definition, roles, log
# group, an egress-only security group and the worker token in Secrets
# Manager. DEPLOY_WORKER applies it with the worker state key
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
  name = local.name
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/tendril/${local.short_id}"
  retention_in_days = 30
  tags              = local.tags
}

resource "aws_secretsmanager_secret" "worker_token" {
  name                    = "tendril/${local.short_id}/worker-token"
  recovery_window_in_days = 0
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "worker_token" {
  secret_id     = aws_secretsmanager_secret.worker_token.id
  secret_string = var.worker_token
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
    resources = [aws_secretsmanager_secret.worker_token.arn]
  }
}

resource "aws_iam_role_policy" "execution_secret" {
  name   = "read-worker-token"
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
  name        = local.name
  description = "Tendril ${var.worker_name}: egress only"
  vpc_id      = local.vpc_id
  tags        = local.tags

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_ecs_task_definition" "this" {
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
      ]
      secrets = [
        { name = "GRAPE_WORKER_TOKEN", valueFrom = aws_secretsmanager_secret.worker_token.arn },
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

  lifecycle {
    ignore_changes = [desired_count, task_definition]
  }
}
