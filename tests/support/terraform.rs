//! Reading Terraform configurations the project ships, as text (no
//! provider can be downloaded here to let Terraform itself read them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `variable` names of a template (with whether they have a default) and
/// its `output` names, from the HCL text.
pub fn declarations(dir: &str) -> (BTreeMap<String, bool>, BTreeSet<String>) {
    let (mut variables, mut outputs) = (BTreeMap::new(), BTreeSet::new());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for block in text
            .split("\nvariable \"")
            .skip(1)
            .chain(text.strip_prefix("variable \""))
        {
            let (name, body) = block.split_once('"').unwrap();
            let body = body.split("\n}").next().unwrap();
            variables.insert(name.to_string(), body.contains("\n  default"));
        }
        for block in text
            .split("\noutput \"")
            .skip(1)
            .chain(text.strip_prefix("output \""))
        {
            outputs.insert(block.split_once('"').unwrap().0.to_string());
        }
    }
    (variables, outputs)
}

/// Panics unless `set` (what a caller of the template in `dir` sets, named
/// `caller` in messages) is declared by it and covers every variable it
/// declares without a default.
pub fn assert_sets_what_it_declares(caller: &str, set: &BTreeSet<String>, dir: &str) {
    let (declared, _) = declarations(dir);
    for name in set {
        assert!(
            declared.contains_key(name),
            "{caller} sets {name}, which {dir} does not declare"
        );
    }
    for (name, has_default) in &declared {
        assert!(
            *has_default || set.contains(name),
            "{dir} needs {name}, which {caller} does not set"
        );
    }
}
