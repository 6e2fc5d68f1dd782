# The example vine: the shape of a real one (some of the platform's
# variables, snapshot keys of its own, and the outputs Trellis reads), built
# from Terraform's built-in resources only, so it plans and applies on any
# machine with Terraform and no cloud account. The platform's vine templates
# are not in this repository: TENDRIL_TEMPLATES_DIR points at them.

terraform {
  backend "s3" {}
}

variable "project_name" {
  type = string
}

variable "environment_stage" {
  type = string
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "vpc_cidr" {
  type    = string
  default = "10.0.0.0/16"
}

variable "databases" {
  type    = any
  default = []
}

resource "terraform_data" "network" {
  input = var.vpc_cidr
}

resource "terraform_data" "database" {
  input = [for db in var.databases : "${var.project_name}-${db.name}"]
}

output "vpc_id" {
  value = "vpc-${substr(terraform_data.network.id, 0, 8)}"
}

output "rds_cluster_endpoint" {
  value = "${var.project_name}-${var.environment_stage}.cluster.${var.region}.internal"
}

output "database_password" {
  value     = "example-${substr(terraform_data.database.id, 0, 12)}"
  sensitive = true
}
