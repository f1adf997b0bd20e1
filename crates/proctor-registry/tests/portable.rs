//! Every shipped `registry.yaml` is portable YAML: the Rust loader and PyYAML, a YAML 1.1
//! parser that most tools outside Rust use, read the same document from it.
//!
//! Needs: `python3` on `PATH` with PyYAML (`scripts/setup.sh` installs it); without either the
//! test fails and says so, it is never skipped.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use proctor_registry::{ProcessorSpec, REGISTRY_FILE, RegisteredProcessor, Registry};
use serde_json::Value;

/// The registry roots the repository ships, relative to the workspace root.
const SHIPPED_ROOTS: [&str; 2] = ["processors", "fixtures/processors"];

/// The exit code of [`PYYAML_TO_JSON`] when PyYAML is not importable.
const NO_PYYAML: i32 = 3;

/// Reads the file named by its first argument with PyYAML's safe loader and prints the
/// document as JSON; a value JSON cannot hold (a date, a set) fails the dump. Exits
/// [`NO_PYYAML`] when PyYAML is not importable.
const PYYAML_TO_JSON: &str = r#"
import json, sys
try:
    import yaml
except ImportError as e:
    print(e, file=sys.stderr)
    sys.exit(3)
with open(sys.argv[1], encoding="utf-8") as f:
    json.dump(yaml.safe_load(f), sys.stdout)
"#;

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits at crates/<name> in the workspace")
}

/// The document in `file` as PyYAML reads it, or why PyYAML cannot read it. A missing
/// `python3` or PyYAML panics: the test cannot say anything without them.
fn pyyaml_document(file: &Path) -> Result<Value, String> {
    let output = Command::new("python3")
        .args(["-c", PYYAML_TO_JSON])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): run scripts/setup.sh"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        output.status.code(),
        Some(NO_PYYAML),
        "PyYAML is not importable by python3 ({}): run scripts/setup.sh",
        stderr.trim()
    );
    if !output.status.success() {
        return Err(format!("PyYAML cannot read it: {stderr}"));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("PyYAML's JSON does not parse: {e}"))
}

/// Why `entry`'s file reads differently in Rust and in PyYAML, if it does.
fn disagreement(entry: &RegisteredProcessor) -> Option<String> {
    let file = entry.file();
    let text = std::fs::read_to_string(&file).unwrap();
    let rust: Value = serde_yaml_ng::from_str(&text).unwrap();
    let python = match pyyaml_document(&file) {
        Ok(python) => python,
        Err(why) => return Some(why),
    };
    if let Some((pointer, in_rust, in_python)) = first_difference(&rust, &python, String::new()) {
        return Some(format!(
            "serde_yaml_ng and PyYAML differ at `{pointer}`: {in_rust} against {in_python}"
        ));
    }
    match serde_json::from_value::<ProcessorSpec>(python) {
        Ok(spec) if &spec == entry.spec() => None,
        Ok(spec) => Some(format!("PyYAML's document gives another spec: {spec:?}")),
        Err(e) => Some(format!("PyYAML's document is not a spec: {e}")),
    }
}

/// The JSON pointer of the first place where `a` and `b` differ, with the value of each
/// there (`absent` for a missing key or item).
fn first_difference(a: &Value, b: &Value, pointer: String) -> Option<(String, String, String)> {
    let shown = |value: Option<&Value>| value.map_or_else(|| "absent".to_owned(), Value::to_string);
    let child = |a: Option<&Value>, b: Option<&Value>, pointer: String| match (a, b) {
        (Some(a), Some(b)) => first_difference(a, b, pointer),
        (a, b) => Some((pointer, shown(a), shown(b))),
    };
    match (a, b) {
        (Value::Object(a_map), Value::Object(b_map)) => {
            let keys: BTreeSet<&String> = a_map.keys().chain(b_map.keys()).collect();
            keys.into_iter().find_map(|key| {
                child(
                    a_map.get(key),
                    b_map.get(key),
                    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1")),
                )
            })
        }
        (Value::Array(a_items), Value::Array(b_items)) => (0..a_items.len().max(b_items.len()))
            .find_map(|i| child(a_items.get(i), b_items.get(i), format!("{pointer}/{i}"))),
        _ if a == b => None,
        _ => Some((pointer, a.to_string(), b.to_string())),
    }
}

/// Every `<ns>/<name>/<version>/registry.yaml` under `root`, found by a plain walk that
/// shares nothing with the loader.
fn registry_files_under(root: &Path) -> BTreeSet<PathBuf> {
    let subdirectories = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_dir())
            .collect()
    };
    let mut files = BTreeSet::new();
    for namespace in subdirectories(root) {
        for name in subdirectories(&namespace) {
            for version in subdirectories(&name) {
                let file = version.join(REGISTRY_FILE);
                if file.is_file() {
                    files.insert(file);
                }
            }
        }
    }
    files
}

#[test]
fn every_shipped_registry_file_reads_the_same_in_rust_and_pyyaml() {
    let mut checked = 0;
    let mut disagreements = Vec::new();
    for root in SHIPPED_ROOTS.map(|root| workspace_root().join(root)) {
        let registry = Registry::load(&root)
            .unwrap_or_else(|e| panic!("{} does not load: {e}", root.display()));
        let loaded: BTreeSet<PathBuf> = registry.iter().map(RegisteredProcessor::file).collect();
        assert_eq!(
            loaded,
            registry_files_under(&root),
            "the loader and the walk of {} disagree on the shipped files",
            root.display()
        );
        for entry in registry.iter() {
            if let Some(why) = disagreement(entry) {
                disagreements.push(format!("{}: {why}", entry.file().display()));
            }
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no registry.yaml found under {SHIPPED_ROOTS:?}"
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
