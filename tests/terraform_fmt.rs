//! Every Terraform file the project ships or tests with is `terraform fmt`
//! clean (real Terraform).

#[test]
fn every_terraform_file_is_formatted() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dirs: Vec<&str> = ["templates", "examples", "tests/fixtures", "deploy"]
        .into_iter()
        .filter(|dir| std::path::Path::new(root).join(dir).is_dir())
        .collect();
    for dir in dirs {
        let output = std::process::Command::new("terraform")
            .args(["fmt", "-check", "-recursive", "-list=true", dir])
            .current_dir(root)
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .expect("terraform not found: run scripts/install-peers.sh");
        assert!(
            output.status.success(),
            "terraform fmt would change these files in {dir}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
