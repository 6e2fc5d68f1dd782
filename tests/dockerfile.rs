//! The Dockerfile cannot be built here (no Docker engine); what can be
//! checked is: every pinned version is one build argument, declared once,
//! used through the argument, and Terraform and Helm are the versions the
//! tests run against.

use std::collections::BTreeMap;

fn dockerfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap()
}

/// The `ARG NAME=value` declarations before the first stage.
fn pinned() -> BTreeMap<String, String> {
    let text = dockerfile();
    let mut pins = BTreeMap::new();
    for line in text.lines().take_while(|l| !l.starts_with("FROM ")) {
        if let Some((name, value)) = line.strip_prefix("ARG ").and_then(|a| a.split_once('=')) {
            let earlier = pins.insert(name.to_string(), value.to_string());
            assert!(earlier.is_none(), "{name} is declared twice");
        }
    }
    pins
}

fn tool_version(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} not found ({e}): run scripts/install-peers.sh"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_version_is_one_build_argument_used_through_it() {
    let text = dockerfile();
    let pins = pinned();
    for name in [
        "TERRAFORM_VERSION",
        "HELM_VERSION",
        "KUBECTL_VERSION",
        "INFRACOST_VERSION",
        "AWSCLI_VERSION",
        "AZURE_CLI_VERSION",
        "GCLOUD_VERSION",
        "ARGOCD_CHART_VERSION",
    ] {
        let value = pins
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a build argument"));
        assert!(
            text.contains(&format!("${{{name}}}")),
            "{name} is never used"
        );
        let stages_after_declaration = text.split_once(&format!("ARG {name}={value}")).unwrap().1;
        assert!(
            !stages_after_declaration.contains(value.as_str()),
            "{name}'s value {value} is written out again"
        );
        assert_eq!(
            text.matches(&format!("ARG {name}=")).count(),
            1,
            "{name} has a second default"
        );
    }
    for line in text
        .lines()
        .filter(|l| l.starts_with("ARG ") && !l.contains('='))
    {
        let name = &line[4..];
        assert!(
            pins.contains_key(name),
            "{name} is used in a stage but declared nowhere"
        );
    }
}

#[test]
fn terraform_and_helm_are_the_versions_the_tests_use() {
    let pins = pinned();
    let terraform = tool_version("terraform", &["version"]);
    let minor = pins["TERRAFORM_VERSION"]
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string();
    assert!(
        terraform.contains(&format!("v{minor}.")),
        "image {} vs tests {terraform}",
        pins["TERRAFORM_VERSION"]
    );
    let helm = tool_version("helm", &["version", "--short"]);
    let major = pins["HELM_VERSION"].split('.').next().unwrap().to_string();
    assert!(
        helm.starts_with(&format!("v{major}.")),
        "image {} vs tests {helm}",
        pins["HELM_VERSION"]
    );
}

#[test]
fn the_image_runs_tendril_under_an_init_as_a_user_without_build_tools() {
    let text = dockerfile();
    let runtime = text.rsplit_once("\nFROM ").unwrap().1;
    assert!(runtime.contains(r#"ENTRYPOINT ["/usr/bin/tini", "--", "tendril"]"#));
    assert!(runtime.contains(r#"CMD ["start"]"#));
    assert!(runtime.contains("USER 10001"));
    for build_tool in ["cargo", "build-essential", "gcc"] {
        assert!(
            !runtime.contains(build_tool),
            "{build_tool} in the runtime image"
        );
    }
}
