# A Tendril pool on ECS Fargate in one region, and (optionally) the scaler
# Lambda that scales it, and pools of other regions, between zero and one
# task per worker. Apply it once per region with its own state; create the
# scaler in one of them and list every pool region in scaler_regions.
#
# Each worker is templates/worker/aws used as a module: register the
# worker first (`tendril register --name ... --mode cloud-hosted`) and give
# its id in `workers` and its token in `worker_tokens`. Every worker keeps
# its Terraform state in the platform's state bucket (state_*): never on its
# task's disk, which is gone with the task.

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.25"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region
}

data "aws_caller_identity" "current" {}

module "worker" {
  source   = "../../templates/worker/aws"
  for_each = var.workers

  worker_id        = each.value.worker_id
  worker_name      = each.key
  worker_token     = var.worker_tokens[each.key]
  region           = var.region
  image_repository = var.image_repository
  image_tag        = var.image_tag
  trellis_url      = var.trellis_url
  cpu              = each.value.cpu
  memory           = each.value.memory
  vpc_id           = var.vpc_id
  subnet_ids       = var.subnet_ids
  assign_public_ip = var.assign_public_ip

  state_endpoint    = var.state_endpoint
  state_region      = var.state_region
  state_key_id      = var.state_key_id
  state_secret_key  = var.state_secret_key
  infracost_api_key = var.infracost_api_key
}
