//! The Dockerfile's text, for what a build cannot show (the image is built
//! and run in `built_image`; hadolint and checkov read the file in
//! `static_checks`): every pinned version is one build argument, declared
//! once, used through the argument; Terraform and Helm are the versions the
//! tests run against; the release version reaches the Rust build and has
//! no default; the platform's templates are an optional build context.

use std::collections::BTreeMap;

fn dockerfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap()
}

/// The `ARG` declarations before the first stage, with their defaults.
fn declared() -> BTreeMap<String, Option<String>> {
    let text = dockerfile();
    let mut arguments = BTreeMap::new();
    for line in text.lines().take_while(|l| !l.starts_with("FROM ")) {
        if let Some(argument) = line.strip_prefix("ARG ") {
            let (name, value) = match argument.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (argument, None),
            };
            let earlier = arguments.insert(name.to_string(), value);
            assert!(earlier.is_none(), "{name} is declared twice");
        }
    }
    arguments
}

/// The `ARG NAME=value` declarations before the first stage.
fn pinned() -> BTreeMap<String, String> {
    declared()
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect()
}

/// The stage named `name` (`FROM ... AS name`), up to the next `FROM`.
fn stage(name: &str) -> String {
    let text = dockerfile();
    let suffix = format!(" AS {name}");
    let start = text
        .lines()
        .position(|l| l.starts_with("FROM ") && l.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no stage {name}"));
    text.lines()
        .skip(start)
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with("FROM "))
        .map(|(_, l)| format!("{l}\n"))
        .collect()
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
    let declared = declared();
    for line in text
        .lines()
        .skip_while(|l| !l.starts_with("FROM "))
        .filter(|l| l.starts_with("ARG "))
    {
        let name = &line[4..];
        // The builder sets the target platform's arguments itself.
        let automatic = name.starts_with("TARGET");
        assert!(
            !name.contains('=') && (declared.contains_key(name) || automatic),
            "{line}: a stage takes arguments declared at the top, without a second default"
        );
    }
}

#[test]
fn the_release_version_reaches_the_rust_build_and_has_no_default() {
    assert_eq!(
        declared().get("TENDRIL_VERSION"),
        Some(&None),
        "TENDRIL_VERSION is a build argument without a default (the release version is given, never guessed)"
    );
    let build = stage("build");
    assert!(build.contains("\nARG TENDRIL_VERSION\n"), "{build}");
    let cargo = build
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("the build stage runs cargo build");
    assert!(
        cargo.contains(r#"TENDRIL_VERSION="${TENDRIL_VERSION}" cargo build --release --locked"#),
        "cargo build gets TENDRIL_VERSION in its environment: {cargo}"
    );
    assert!(
        build.contains(r#"test -n "${TENDRIL_VERSION}""#),
        "the build stops when no TENDRIL_VERSION is given"
    );
}

#[test]
fn the_build_stage_copies_everything_cargo_reads() {
    let build = stage("build");
    let copied: Vec<&str> = build
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|sources| {
            let mut words: Vec<&str> = sources.split_whitespace().collect();
            words.pop(); // the destination
            words
        })
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut needed = vec!["Cargo.toml", "Cargo.lock", "src", "benches"];
    if root.join("build.rs").exists() {
        needed.push("build.rs");
    }
    for path in needed {
        assert!(
            copied.contains(&path),
            "the build stage does not copy {path}: {copied:?}"
        );
    }
}

#[test]
fn the_platform_templates_are_an_optional_build_context_beside_the_shipped_ones() {
    let text = dockerfile();
    // A stage of the context's name, which `--build-context
    // platform-templates=DIR` replaces; without one the stage itself is
    // used, so the image builds with the example vine and applications.
    let default = stage("platform-templates");
    assert!(
        default.starts_with("FROM scratch AS platform-templates\n"),
        "{default}"
    );
    let copies: Vec<&str> = default
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .collect();
    assert_eq!(
        copies,
        [
            "examples/templates/vine /vine",
            "examples/templates/argocd /argocd"
        ]
    );
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates");
    assert!(examples.join("vine/aws/main.tf").is_file());
    assert!(examples.join("argocd/project-infra.yaml").is_file());
    // The platform's templates and then the repository's, in the one
    // templates directory Tendril reads.
    let platform = text
        .find("COPY --from=platform-templates / /opt/tendril/templates/\n")
        .expect("the platform's templates are copied into /opt/tendril/templates");
    let shipped = text
        .find("COPY templates /opt/tendril/templates\n")
        .expect("the repository's templates are copied into /opt/tendril/templates");
    assert!(platform < shipped, "the repository's worker template wins");
    let runtime = text.rsplit_once("\nFROM ").unwrap().1;
    assert!(runtime.contains("TENDRIL_TEMPLATES_DIR=/opt/tendril/templates"));
    assert!(runtime.contains("COPY --from=downloads /opt/tendril /opt/tendril"));
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
