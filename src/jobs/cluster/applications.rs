//! The platform's ArgoCD applications: the GitOps repository's credentials
//! for ArgoCD, then every `*.yaml` of `$TENDRIL_TEMPLATES_DIR/argocd/`
//! rendered with the vine's infrastructure facts and applied.
//!
//! The templates are Go `text/template`s (`{{ .ClusterName }}`, `{{- if
//! .EnableKarpenter }}`), so they are rendered by a real Go template engine:
//! Helm's. Each file goes into a throwaway chart, wrapped in `{{- with
//! .Values }} ... {{- end }}` so that `.` is the facts as it was for the
//! original worker, and `helm template` renders them all. A file that
//! renders to nothing (an `if` that is false) is skipped; the rest are
//! applied with one `kubectl apply`. The facts come checked (see `facts`):
//! a value from the snapshot cannot add to a manifest.
//!
//! The repository token is the snapshot's `git_access_token` or, as Trellis
//! sends it empty, the one `POST /jobs/{id}/git-token` returns. It reaches
//! the cluster only in the 0600 manifest of the `repo-apps` secret.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::super::{snapshot, JobError};
use super::{Cluster, ARGOCD_NAMESPACE};
use crate::secrets::MaskedSecret;

/// The name of the repository credentials secret ArgoCD reads.
const REPOSITORY_SECRET: &str = "repo-apps";
/// The throwaway chart's name.
const CHART: &str = "argocd-apps";

/// Applies the repository's credentials and the applications rendered with
/// `facts` (checked: the repository URL among them).
pub async fn apply(cluster: &Cluster<'_>, facts: &Value) -> Result<(), JobError> {
    let context = cluster.context;
    match snapshot::apps_repository(&context.job.config_snapshot).map_err(JobError::Invalid)? {
        Some(repository) => repository_credentials(cluster, &repository.value).await?,
        None => context
            .log
            .system("the vine names no GitOps repository (repositories.apps_destination_repo): no repository credentials"),
    }
    let directory = context.settings.templates_dir.join("argocd");
    let templates = application_templates(&directory)?;
    if templates.is_empty() {
        context.log.system(&format!(
            "no ArgoCD application templates (*.yaml) in {}: none applied",
            directory.display()
        ));
        return Ok(());
    }
    let rendered = render(cluster, &templates, facts).await?;
    if rendered.is_empty() {
        context
            .log
            .system("every ArgoCD application template rendered empty: none applied");
        return Ok(());
    }
    cluster.apply(&rendered_dir(cluster)).await
}

/// The `*.yaml` files of the templates directory, by name.
fn application_templates(directory: &Path) -> Result<Vec<PathBuf>, JobError> {
    let Ok(entries) = fs::read_dir(directory) else {
        return Ok(Vec::new());
    };
    let mut templates = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| JobError::io(&format!("cannot list {}", directory.display()), e))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "yaml") {
            templates.push(path);
        }
    }
    templates.sort();
    Ok(templates)
}

fn rendered_dir(cluster: &Cluster<'_>) -> PathBuf {
    cluster.context.workspace.path().join("argocd-apps")
}

/// Renders the templates with Helm; returns the names of the non-empty
/// renders, written under the same names into the rendered directory.
async fn render(
    cluster: &Cluster<'_>,
    templates: &[PathBuf],
    facts: &Value,
) -> Result<Vec<String>, JobError> {
    let context = cluster.context;
    let workspace = context.workspace.path();
    let chart = workspace.join("argocd-apps-chart");
    let io = |what: &str| {
        let what = what.to_string();
        move |e| JobError::io(&what, e)
    };
    fs::create_dir_all(chart.join("templates")).map_err(io("cannot make the rendering chart"))?;
    fs::write(
        chart.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {CHART}\nversion: 0.0.0\ndescription: Tendril renders ArgoCD application templates with this chart\n"),
    )
    .map_err(io("cannot make the rendering chart"))?;
    // Numbered names: Helm gives a leading `_` and NOTES.txt meanings of their own.
    for (index, template) in templates.iter().enumerate() {
        let text = fs::read_to_string(template)
            .map_err(io(&format!("cannot read {}", template.display())))?;
        let wrapped = format!("{{{{- with .Values }}}}\n{text}\n{{{{- end }}}}\n");
        fs::write(
            chart.join("templates").join(format!("{index:04}.yaml")),
            wrapped,
        )
        .map_err(io("cannot make the rendering chart"))?;
    }
    let values = context
        .workspace
        .write_private("argocd-apps.values.json", facts.to_string().as_bytes())
        .map_err(io("cannot write the infrastructure facts"))?;
    let output = workspace.join("argocd-apps-rendered");
    let (chart_path, values_path, output_path) = (
        chart.display().to_string(),
        values.display().to_string(),
        output.display().to_string(),
    );
    let args = [
        "template",
        CHART,
        &chart_path,
        "--namespace",
        ARGOCD_NAMESPACE,
        "--values",
        &values_path,
        "--output-dir",
        &output_path,
    ];
    cluster.run("helm", &args).await?;
    let destination = rendered_dir(cluster);
    fs::create_dir_all(&destination).map_err(io("cannot write the rendered applications"))?;
    let mut applied = Vec::new();
    for (index, template) in templates.iter().enumerate() {
        let name = template
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = output
            .join(CHART)
            .join("templates")
            .join(format!("{index:04}.yaml"));
        let text = fs::read_to_string(&file).unwrap_or_default();
        if is_empty_render(&text) {
            context
                .log
                .system(&format!("{name} renders empty: skipped"));
            continue;
        }
        fs::write(destination.join(&name), text)
            .map_err(io("cannot write the rendered applications"))?;
        applied.push(name);
    }
    context.log.system(&format!(
        "rendered ArgoCD applications: {}",
        applied.join(", ")
    ));
    Ok(applied)
}

/// Whether a render holds nothing but Helm's document markers and comments.
fn is_empty_render(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line == "---" || line.starts_with('#'))
}

/// ArgoCD's credentials for the GitOps repository: the snapshot's token, or
/// Trellis's; without one the deploy goes on and says so.
async fn repository_credentials(cluster: &Cluster<'_>, repository: &str) -> Result<(), JobError> {
    let context = cluster.context;
    let from_snapshot = context
        .job
        .config_snapshot
        .get("git_access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .map(|token| MaskedSecret::new(token.to_string()));
    let token = match from_snapshot {
        Some(token) => Some(token),
        None => context.reporter.git_token(&context.job.id).await?,
    };
    let Some(token) = token else {
        context.log.system(&format!(
            "no git credentials for {repository}: Trellis has no token for this job (the user has connected no \
             git provider); ArgoCD gets no repository credentials"
        ));
        return Ok(());
    };
    let manifest = repository_secret(repository, token.expose());
    let file = context
        .workspace
        .write_private(
            "repository-credentials.json",
            manifest.to_string().as_bytes(),
        )
        .map_err(|e| JobError::io("cannot write the repository credentials", e))?;
    context.log.system(&format!(
        "repository credentials for {repository} (secret {REPOSITORY_SECRET})"
    ));
    cluster.apply(&file).await
}

/// The `repo-apps` secret ArgoCD takes repository credentials from.
fn repository_secret(url: &str, token: &str) -> Value {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let encode = |text: &str| STANDARD.encode(text);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": REPOSITORY_SECRET,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"argocd.argoproj.io/secret-type": "repository"},
        },
        "type": "Opaque",
        "data": {
            "type": encode("git"),
            "url": encode(url),
            "username": encode("x-access-token"),
            "password": encode(token),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_markers_and_comments_are_an_empty_render() {
        assert!(is_empty_render(
            "---\n# Source: argocd-apps/templates/0001.yaml\n\n"
        ));
        assert!(!is_empty_render("---\n# Source: x\nkind: AppProject\n"));
    }

    #[test]
    fn the_repository_secret_is_the_one_argocd_reads() {
        let secret = repository_secret("https://github.com/acme/apps", "gho_token");
        assert_eq!(secret["metadata"]["name"], "repo-apps");
        assert_eq!(
            secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
            "repository"
        );
        use base64::Engine;
        let decode = |v: &Value| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(decode(&secret["data"]["password"]), "gho_token");
        assert_eq!(decode(&secret["data"]["username"]), "x-access-token");
        assert_eq!(decode(&secret["data"]["type"]), "git");
    }
}
