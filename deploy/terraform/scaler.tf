# The scaler: the Tendril binary as a provided.al2023 Lambda, run every
# minute by EventBridge (a full pass) and at once by Trellis's ping through
# its Function URL; reserved concurrency 1, so passes never overlap. Its
# role may only read the two secrets, find the pool's services, and change
# the desired count and the tendril:idle-since and tendril:starting-since
# tags of services tagged tendril:pool=true (or listed in
# scaler_extra_services).

locals {
  scaler         = var.create_scaler ? 1 : 0
  scaler_name    = "tendril-scaler"
  scaler_regions = length(var.scaler_regions) > 0 ? var.scaler_regions : [var.region]
  url_secret     = var.create_scaler && var.scaler_url_auth == "secret" ? 1 : 0
  account_id     = data.aws_caller_identity.current.account_id
  # The only tags the scaler writes: when a worker went idle, and since when
  # a service has wanted a task without running one.
  scaler_tag_keys = ["tendril:idle-since", "tendril:starting-since"]
  extra_service_arns = [
    for s in var.scaler_extra_services : "arn:aws:ecs:${s.region}:${local.account_id}:service/${s.cluster}/${s.service}"
  ]
}

resource "random_password" "url_secret" {
  count   = local.url_secret
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "url_secret" {
  #checkov:skip=CKV2_AWS_57:Trellis holds the same value and cannot be told a new one by a rotation Lambda; rotate by replacing random_password.url_secret and giving Trellis the new output
  count                   = local.url_secret
  name                    = "${local.scaler_name}/url-secret"
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "url_secret" {
  count         = local.url_secret
  secret_id     = aws_secretsmanager_secret.url_secret[0].id
  secret_string = random_password.url_secret[0].result
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "scaler" {
  count              = local.scaler
  name               = local.scaler_name
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_cloudwatch_log_group" "scaler" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts it with its own key; the scaler logs counts and service names, never a secret, so a customer-managed KMS key adds cost and no protection worth it
  #checkov:skip=CKV_AWS_338:one line per service and pass, for debugging; 30 days bounds its cost
  count             = local.scaler
  name              = "/aws/lambda/${local.scaler_name}"
  retention_in_days = 30
}

data "aws_iam_policy_document" "scaler" {
  count = local.scaler

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:aws:logs:${var.region}:${local.account_id}:log-group:/aws/lambda/${local.scaler_name}:*"]
  }

  statement {
    sid       = "ReadSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([var.supabase_service_role_key_secret_arn], aws_secretsmanager_secret.url_secret[*].arn)
  }

  statement {
    sid       = "FindThePool"
    actions   = ["ecs:ListClusters", "ecs:ListServices"]
    resources = ["*"]
  }

  statement {
    sid       = "DescribeServices"
    actions   = ["ecs:DescribeServices"]
    resources = [for r in local.scaler_regions : "arn:aws:ecs:${r}:${local.account_id}:service/*/*"]
  }

  statement {
    sid       = "ScaleTaggedServices"
    actions   = ["ecs:UpdateService"]
    resources = [for r in local.scaler_regions : "arn:aws:ecs:${r}:${local.account_id}:service/*/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/tendril:pool"
      values   = ["true"]
    }
  }

  statement {
    sid       = "MarkIdleTaggedServices"
    actions   = ["ecs:TagResource", "ecs:UntagResource"]
    resources = [for r in local.scaler_regions : "arn:aws:ecs:${r}:${local.account_id}:service/*/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/tendril:pool"
      values   = ["true"]
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = local.scaler_tag_keys
    }
  }

  dynamic "statement" {
    for_each = length(local.extra_service_arns) > 0 ? [1] : []

    content {
      sid       = "ScaleListedServices"
      actions   = ["ecs:DescribeServices", "ecs:UpdateService"]
      resources = local.extra_service_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.extra_service_arns) > 0 ? [1] : []

    content {
      sid       = "MarkIdleListedServices"
      actions   = ["ecs:TagResource", "ecs:UntagResource"]
      resources = local.extra_service_arns

      condition {
        test     = "ForAllValues:StringEquals"
        variable = "aws:TagKeys"
        values   = local.scaler_tag_keys
      }
    }
  }
}

resource "aws_iam_role_policy" "scaler" {
  count  = local.scaler
  name   = "scale-the-pool"
  role   = aws_iam_role.scaler[0].id
  policy = data.aws_iam_policy_document.scaler[0].json
}

resource "aws_lambda_function" "scaler" {
  #checkov:skip=CKV_AWS_116:a failed scheduled pass is not retried on purpose (the next minute's pass is the retry), so a dead-letter queue would only collect stale events; Trellis's calls through the Function URL are synchronous
  #checkov:skip=CKV_AWS_117:it calls only public AWS APIs and Supabase; in a VPC it would need a NAT gateway or endpoints for each, for no gain
  #checkov:skip=CKV_AWS_272:the bootstrap is built and zipped by the operator (see README) and deployed from a local file by Terraform; there is no signing profile in that path
  #checkov:skip=CKV_AWS_173:the environment holds no secret, only settings and the ARNs of the secrets, which the function reads from Secrets Manager
  #checkov:skip=CKV_AWS_50:one short pass a minute whose log line per service says what it did; X-Ray traces would add cost and nothing to that
  count                          = local.scaler
  function_name                  = local.scaler_name
  role                           = aws_iam_role.scaler[0].arn
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.scaler_architecture]
  filename                       = var.scaler_zip
  source_code_hash               = filebase64sha256(var.scaler_zip)
  memory_size                    = 128
  timeout                        = 60
  reserved_concurrent_executions = 1

  environment {
    variables = merge(
      {
        SUPABASE_URL                         = var.supabase_url
        SUPABASE_SERVICE_ROLE_KEY_SECRET_ARN = var.supabase_service_role_key_secret_arn
        TENDRIL_SCALER_REGIONS               = join(",", local.scaler_regions)
        TENDRIL_SCALER_IDLE_TIME             = var.scaler_idle_time
        TENDRIL_SCALER_STARTUP_BUDGET        = var.scaler_startup_budget
        TENDRIL_SCALER_URL_AUTH              = var.scaler_url_auth
        TENDRIL_SCALER_RECOVER_STALE_JOBS    = tostring(var.scaler_recover_stale_jobs)
        WORKERS                              = jsonencode(var.scaler_extra_services)
        TENDRIL_LOG_FORMAT                   = "json"
      },
      local.url_secret == 1 ? { TENDRIL_SCALER_SECRET_SECRET_ARN = aws_secretsmanager_secret.url_secret[0].arn } : {},
    )
  }

  depends_on = [aws_cloudwatch_log_group.scaler, aws_iam_role_policy.scaler]

  lifecycle {
    precondition {
      condition     = var.supabase_url != "" && var.supabase_service_role_key_secret_arn != ""
      error_message = "The scaler needs supabase_url and supabase_service_role_key_secret_arn."
    }
  }
}

resource "aws_lambda_function_url" "scaler" {
  #checkov:skip=CKV_AWS_258:with scaler_url_auth = "secret" the URL is public by design (Trellis sends a plain POST and can sign nothing) and the function checks the shared-secret header; scaler_url_auth = "aws-iam" gives AWS_IAM
  count              = local.scaler
  function_name      = aws_lambda_function.scaler[0].function_name
  authorization_type = var.scaler_url_auth == "aws-iam" ? "AWS_IAM" : "NONE"
}

# With the shared secret the URL is public and the function checks the
# header: a call with the right one runs a full pass, a call without one
# (Trellis's bare POST, the only thing today's Trellis sends) a
# scale-up-only pass, a call with a wrong one nothing. With AWS_IAM only the
# listed principals may call it and AWS refuses an unsigned call before it
# reaches the function, so today's Trellis cannot ping it: jobs then wait
# for the minute's pass. A function URL call needs both
# lambda:InvokeFunctionUrl and lambda:InvokeFunction (the latter only
# through the URL).
locals {
  url_invoker_list = var.scaler_url_auth == "aws-iam" ? [
    for arn in var.scaler_url_invokers : { key = substr(sha256(arn), 0, 12), principal = arn, auth = "AWS_IAM" }
  ] : [{ key = "public", principal = "*", auth = "NONE" }]
  url_invokers = { for i in local.url_invoker_list : i.key => i if var.create_scaler }
}

resource "aws_lambda_permission" "url" {
  for_each               = local.url_invokers
  statement_id           = "FunctionUrl-${each.key}"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.scaler[0].function_name
  principal              = each.value.principal
  function_url_auth_type = each.value.auth
}

resource "aws_lambda_permission" "invoke_through_url" {
  for_each                 = local.url_invokers
  statement_id             = "InvokeThroughFunctionUrl-${each.key}"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.scaler[0].function_name
  principal                = each.value.principal
  invoked_via_function_url = true
}

# A failed scheduled pass is not retried: the next minute's pass is the
# retry, and retries would only compete for the one concurrent execution.
resource "aws_lambda_function_event_invoke_config" "scaler" {
  count                  = local.scaler
  function_name          = aws_lambda_function.scaler[0].function_name
  maximum_retry_attempts = 0
}

resource "aws_cloudwatch_event_rule" "every_minute" {
  count               = local.scaler
  name                = "${local.scaler_name}-every-minute"
  description         = "The scaler's fallback pass, and what scales idle workers down."
  schedule_expression = "rate(1 minute)"
}

resource "aws_cloudwatch_event_target" "scaler" {
  count = local.scaler
  rule  = aws_cloudwatch_event_rule.every_minute[0].name
  arn   = aws_lambda_function.scaler[0].arn
}

resource "aws_lambda_permission" "every_minute" {
  count         = local.scaler
  statement_id  = "EveryMinuteFromEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.scaler[0].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.every_minute[0].arn
}
