//! Tendril's integration tests, in one crate so that `support` (the fakes
//! and the drivers of real peers) compiles once. Each module drives the
//! compiled `tendril` binary, or the library, against real peers where they
//! exist (Terraform, moto, the AWS CLI, Helm, hadolint, checkov) and strict
//! fakes, named as such, where none does (Trellis, GCP, Azure, PostgREST,
//! the Lambda Runtime API, a Kubernetes cluster). `cargo test --test tests
//! -- agent::` runs one module.
//!
//! Index:
//! - `agent`: `tendril start` end to end: claims, logs, outages, signals,
//!   cancellation, delivery that loses nothing, the work dir.
//! - `operating`: the health endpoint, the Prometheus metrics, `tendril
//!   health`, `--once` and `--exit-after-idle`.
//! - `doctor`: `tendril doctor` against real peers.
//! - `cli`: settings errors, secrets kept out of `--help`, versions.
//! - `exec`: `tendril exec` of the examples.
//! - `hooks`: Terraform hooks around plan and apply, as real scripts.
//! - `vine_jobs`: PLAN, DEPLOY, DESTROY, BOOTSTRAP on real Terraform with
//!   state in moto's S3; ArgoCD and its applications.
//! - `tfvars_mapping`: the variables each provider's vine template gets.
//! - `worker_jobs`: DEPLOY_WORKER, UPDATE_WORKER, DESTROY_WORKER on moto.
//! - `state_locks`: Terraform state locks after a crash (a Terraform or a
//!   worker SIGKILLed, a partition from the bucket), two workers on a vine,
//!   a person's lock, hostile or unreadable lock objects, a slow errored
//!   state push; S3 state in moto and local state.
//! - `gcp_identity`, `azure_identity`: sign-in and discovery on their fakes.
//! - `trellis_contract`: Tendril's output read as Trellis's screens read it.
//! - `trellis_client`: the Trellis client and the status queue as a library.
//! - `fake_trellis_selftest`: the fake Trellis answers as the deployed one.
//! - `process_runner`: the process runner with real processes.
//! - `properties`: fuzzing on stable Rust, property tests of what Tendril
//!   reads without controlling it (claims, spools, masking), with the
//!   corpus of `tests/corpus/` replayed.
//! - `scaler`: `tendril scaler` on moto ECS, a fake PostgREST and Lambda.
//! - `container_image`, `deploy_files`, `static_checks`, `terraform_fmt`:
//!   what ships for operators (the Dockerfile, deploy/, templates/).
//! - `built_image`: the image built from the Dockerfile (podman), run.
//! - `release`: the release pipeline's steps (tags, the release's files,
//!   the installer, the announcement to Trellis).

mod support;

mod agent;
mod azure_identity;
mod built_image;
mod cli;
mod container_image;
mod deploy_files;
mod doctor;
mod exec;
mod fake_trellis_selftest;
mod gcp_identity;
mod hooks;
mod operating;
mod process_runner;
mod properties;
mod release;
mod scaler;
mod state_locks;
mod static_checks;
mod terraform_fmt;
mod tfvars_mapping;
mod trellis_client;
mod trellis_contract;
mod vine_jobs;
mod worker_jobs;
