//! The checks of this machine in `tendril doctor`: the work directory, the
//! tools on PATH and their versions, and the templates directory. Nothing
//! is created: the work dir's lock is not taken (a worker may be running
//! on it) and the write probe is removed at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::settings::{JobSettings, WorkerMode};
use crate::tools::versions::ToolVersion;
use crate::units::format_size;
use crate::work_dir::{free_space, ready_for_a_job};

use super::report::{Check, Mark};

/// The work dir can be written and has at least TENDRIL_MIN_FREE_SPACE
/// free. A work dir that does not exist yet is judged by the directory
/// `start` would create it in.
pub fn work_dir(job: &JobSettings) -> Check {
    const NAME: &str = "work-dir";
    let dir = &job.work_dir;
    let Some(existing) = dir.ancestors().find(|path| path.exists()) else {
        return Check::not_ok(
            NAME,
            Mark::Failed,
            format!("neither {} nor any parent of it exists", dir.display()),
            "set TENDRIL_WORK_DIR (--work-dir) to a directory on a persistent disk",
        );
    };
    let created_later = match existing == dir.as_path() {
        true => String::new(),
        false => format!(
            "; it does not exist yet: start creates it in {}",
            existing.display()
        ),
    };
    if !existing.is_dir() {
        return Check::not_ok(
            NAME,
            Mark::Failed,
            format!("{} is not a directory", existing.display()),
            "set TENDRIL_WORK_DIR (--work-dir) to a directory",
        );
    }
    if let Err(problem) = ready_for_a_job(existing, 0) {
        return Check::not_ok(
            NAME,
            Mark::Failed,
            format!("{problem}{created_later}"),
            "make it writable by this user, or set TENDRIL_WORK_DIR (--work-dir) to a directory it can write",
        );
    }
    let free = match free_space(existing) {
        Ok(free) => free,
        Err(error) => {
            return Check::not_ok(
                NAME,
                Mark::Failed,
                format!(
                    "cannot read the free space of {}: {error}",
                    existing.display()
                ),
                "set TENDRIL_WORK_DIR (--work-dir) to a local directory",
            )
        }
    };
    let space = format!(
        "{} free (TENDRIL_MIN_FREE_SPACE {})",
        format_size(free),
        format_size(job.min_free_space)
    );
    if free < job.min_free_space {
        return Check::not_ok(
            NAME,
            Mark::Failed,
            format!(
                "{} is writable but has only {space}: no job is claimed{created_later}",
                dir.display()
            ),
            "free space on that disk, or set TENDRIL_WORK_DIR to a larger one",
        );
    }
    Check::ok(
        NAME,
        format!("{} is writable, {space}{created_later}", dir.display()),
    )
}

/// When a tool is one the mode cannot do without.
#[derive(Clone, Copy)]
enum Need {
    EveryWorker,
    CloudHosted,
    /// Never needed: a job that lacks it fails or skips only that part.
    Optional,
}

/// A tool Tendril runs, which versions it is known to work with, and what
/// uses it.
struct Tool {
    name: &'static str,
    supports: fn(u64, u64) -> bool,
    supported: &'static str,
    need: Need,
    used_for: &'static str,
}

/// The tools of `tools::versions`, with the versions doctor accepts. The
/// state backend's `use_lockfile` needs Terraform 1.10; kubectl is kept
/// within a minor or two of the clusters the vines create.
const TOOLS: [Tool; 7] = [
    Tool {
        name: "terraform",
        supports: |major, minor| major == 1 && minor >= 10,
        supported: "1.10 or a later 1.x",
        need: Need::EveryWorker,
        used_for: "every Terraform job",
    },
    Tool {
        name: "helm",
        supports: |major, _| major == 3 || major == 4,
        supported: "3.x or 4.x",
        need: Need::CloudHosted,
        used_for: "ArgoCD in a DEPLOY with a cluster",
    },
    Tool {
        name: "kubectl",
        supports: |major, minor| major == 1 && minor >= 28,
        supported: "1.28 or a later 1.x",
        need: Need::CloudHosted,
        used_for: "ArgoCD in a DEPLOY with a cluster",
    },
    Tool {
        name: "aws",
        supports: |major, _| major == 1 || major == 2,
        supported: "1.x or 2.x",
        need: Need::CloudHosted,
        used_for: "the kubeconfig of an EKS cluster, and doctor's state bucket check",
    },
    Tool {
        name: "gcloud",
        supports: |_, _| true,
        supported: "any version",
        need: Need::Optional,
        used_for: "the kubeconfig of a GKE cluster",
    },
    Tool {
        name: "az",
        supports: |major, _| major == 2,
        supported: "2.x",
        need: Need::Optional,
        used_for: "the kubeconfig of an AKS cluster",
    },
    Tool {
        name: "infracost",
        supports: |major, minor| major == 0 && minor >= 10,
        supported: "0.10 or a later 0.x",
        need: Need::Optional,
        used_for: "cost estimates of plans (with INFRACOST_API_KEY)",
    },
];

/// One check per tool, from the versions `tools::versions` found.
pub fn tools(
    versions: &BTreeMap<String, ToolVersion>,
    mode: WorkerMode,
    has_infracost_key: bool,
) -> Vec<Check> {
    TOOLS
        .iter()
        .map(|tool| {
            let version = versions.get(tool.name).unwrap_or(&ToolVersion::Missing);
            tool_check(tool, version, mode, has_infracost_key)
        })
        .collect()
}

fn tool_check(
    tool: &Tool,
    version: &ToolVersion,
    mode: WorkerMode,
    has_infracost_key: bool,
) -> Check {
    let needed = match tool.need {
        Need::EveryWorker => true,
        Need::CloudHosted => mode == WorkerMode::CloudHosted,
        Need::Optional => false,
    };
    let install = format!(
        "install {} ({}) on PATH, for {}",
        tool.name, tool.supported, tool.used_for
    );
    let unused_infracost = tool.name == "infracost" && !has_infracost_key;
    let version = match version {
        ToolVersion::Missing if unused_infracost => {
            return Check::ok(
                tool.name,
                "missing, and not used: INFRACOST_API_KEY is not set",
            );
        }
        ToolVersion::Missing => {
            return Check::not_ok(
                tool.name,
                Mark::unless_needed(needed),
                "missing from PATH",
                install,
            );
        }
        ToolVersion::Failing(why) => {
            return Check::not_ok(
                tool.name,
                Mark::unless_needed(needed && !unused_infracost),
                format!("present, but asking its version fails ({why})"),
                format!("run `{}` by hand to see why; {install}", tool.name),
            );
        }
        ToolVersion::Unknown => "unknown",
        ToolVersion::Known(version) => version.as_str(),
    };
    let Some((major, minor)) = major_minor(version) else {
        return Check::not_ok(
            tool.name,
            Mark::Warning,
            format!("present, but its version reads '{version}'"),
            install,
        );
    };
    if (tool.supports)(major, minor) {
        Check::ok(
            tool.name,
            format!("{version} (supported: {})", tool.supported),
        )
    } else {
        Check::not_ok(
            tool.name,
            Mark::unless_needed(needed),
            format!("{version} is not a supported version ({})", tool.supported),
            install,
        )
    }
}

/// The major and minor numbers of `1.11.4`, `3.17.0+g301108e`,
/// `1.32.4-dispatcher`.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split(['.', '+', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The checks of the templates directory.
const VINES: &str = "vine-templates";
const WORKER: &str = "worker-template";
const ARGOCD: &str = "argocd-templates";
pub const TEMPLATE_CHECKS: [&str; 3] = [VINES, WORKER, ARGOCD];

/// The providers whose vines a worker can plan.
const PROVIDERS: [&str; 3] = ["aws", "gcp", "azure"];

/// The templates directory: `vine/<provider>` (at least one), `worker/aws`
/// (DEPLOY_WORKER) and `argocd/*.yaml` (informational).
pub fn templates(job: &JobSettings) -> Vec<Check> {
    let dir = &job.templates_dir;
    let shown = dir.display();
    let (present, absent): (Vec<&str>, Vec<&str>) = PROVIDERS
        .iter()
        .partition(|provider| holds_terraform(&dir.join("vine").join(provider)));
    let vines = match present.is_empty() {
        true => Check::not_ok(
            VINES,
            Mark::Failed,
            format!("no vine/aws, vine/gcp or vine/azure with Terraform files in {shown}"),
            "set TENDRIL_TEMPLATES_DIR (--templates-dir) to the directory holding vine/<provider>/",
        ),
        false => Check::ok(
            VINES,
            format!(
                "vines for {} in {shown}{}",
                present.join(", "),
                match absent.is_empty() {
                    true => String::new(),
                    false => format!(" (none for {})", absent.join(", ")),
                }
            ),
        ),
    };
    let worker_dir = dir.join("worker").join("aws");
    let worker = match holds_terraform(&worker_dir) {
        true => Check::ok(WORKER, worker_dir.display().to_string()),
        false => Check::not_ok(
            WORKER,
            Mark::unless_needed(job.mode == WorkerMode::CloudHosted),
            format!(
                "no Terraform in {}: DEPLOY_WORKER jobs fail here",
                worker_dir.display()
            ),
            "copy this repository's templates/worker/aws into TENDRIL_TEMPLATES_DIR",
        ),
    };
    let applications = argocd_applications(&dir.join("argocd"));
    let argocd = Check::ok(
        ARGOCD,
        match applications.is_empty() {
            true => format!("no argocd/*.yaml in {shown}: a DEPLOY applies no ArgoCD applications"),
            false => format!("{} in {shown}/argocd", applications.join(", ")),
        },
    );
    vec![vines, worker, argocd]
}

/// Whether `dir` holds a `*.tf` file.
fn holds_terraform(dir: &Path) -> bool {
    files_ending(dir, ".tf").next().is_some()
}

/// The `*.yaml` application templates of `dir`, sorted.
fn argocd_applications(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = files_ending(dir, ".yaml")
        .filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

fn files_ending<'a>(dir: &Path, suffix: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(move |path| path.is_file() && path.to_string_lossy().ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> &'static Tool {
        TOOLS.iter().find(|tool| tool.name == name).unwrap()
    }

    #[test]
    fn versions_read_as_major_and_minor() {
        assert_eq!(major_minor("1.11.4"), Some((1, 11)));
        assert_eq!(major_minor("3.17.0+g301108e"), Some((3, 17)));
        assert_eq!(major_minor("1.32.4-dispatcher"), Some((1, 32)));
        assert_eq!(major_minor("528.0.0"), Some((528, 0)));
        assert_eq!(major_minor("unknown"), None);
    }

    fn known(version: &str) -> ToolVersion {
        ToolVersion::Known(version.into())
    }

    #[test]
    fn terraform_is_needed_everywhere_and_needs_1_10() {
        let check =
            |version| tool_check(tool("terraform"), &version, WorkerMode::SelfHosted, false);
        assert_eq!(check(known("1.11.4")).mark, Mark::Ok);
        assert_eq!(check(known("1.5.7")).mark, Mark::Failed);
        assert_eq!(check(ToolVersion::Missing).mark, Mark::Failed);
        let failing = check(ToolVersion::Failing("exit code 1".into()));
        assert_eq!(failing.mark, Mark::Failed);
        assert_eq!(
            failing.detail,
            "present, but asking its version fails (exit code 1)"
        );
    }

    #[test]
    fn cluster_tools_are_needed_only_by_a_cloud_hosted_worker() {
        let helm = |mode| tool_check(tool("helm"), &ToolVersion::Missing, mode, false).mark;
        assert_eq!(helm(WorkerMode::SelfHosted), Mark::Warning);
        assert_eq!(helm(WorkerMode::CloudHosted), Mark::Failed);
        let old = tool_check(
            tool("helm"),
            &known("2.17.0"),
            WorkerMode::SelfHosted,
            false,
        );
        assert_eq!(old.mark, Mark::Warning);
        let gcloud = tool_check(
            tool("gcloud"),
            &ToolVersion::Missing,
            WorkerMode::CloudHosted,
            false,
        );
        assert_eq!(gcloud.mark, Mark::Warning);
    }

    #[test]
    fn infracost_matters_only_with_its_key() {
        let infracost = |version: ToolVersion, key| {
            tool_check(tool("infracost"), &version, WorkerMode::CloudHosted, key).mark
        };
        assert_eq!(infracost(ToolVersion::Missing, false), Mark::Ok);
        assert_eq!(infracost(ToolVersion::Missing, true), Mark::Warning);
        let failing = || ToolVersion::Failing("exit code 2".into());
        assert_eq!(infracost(failing(), true), Mark::Warning);
    }
}
