//! The layering rule: processor-facing crates (`proctor-contract`, `proctor-sdk`, every
//! package under `processors/`) never depend, even transitively through workspace
//! packages, on the orchestrator side (CLI, adapters, registry) or on storage crates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// Crates processors must never reach.
const FORBIDDEN: &[&str] = &["proctor-cli", "proctor-adapters", "proctor-registry"];
/// Name prefixes of storage crates, present or future.
const FORBIDDEN_PREFIXES: &[&str] = &["proctor-world", "proctor-ledger", "proctor-store"];

fn forbidden(name: &str) -> bool {
    FORBIDDEN.contains(&name)
        || FORBIDDEN_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// Workspace package → the workspace packages it depends on (normal and build
/// dependencies; dev-dependencies never reach a processor binary).
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The forbidden packages `package` reaches, with the path that reaches each.
fn violations(graph: &Graph, package: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![vec![package.to_owned()]];
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if !seen.insert(next.clone()) {
                continue;
            }
            let mut longer = path.clone();
            longer.push(next.clone());
            if forbidden(next) {
                found.push(longer.join(" -> "));
            }
            stack.push(longer);
        }
    }
    found
}

/// The workspace graph and the processor-facing packages, from `cargo metadata`.
fn workspace() -> (Graph, Vec<String>) {
    let workspace_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&workspace_root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let processors_dir = Path::new(metadata["workspace_root"].as_str().unwrap()).join("processors");
    let mut graph = Graph::new();
    let mut subjects = vec!["proctor-contract".to_owned(), "proctor-sdk".to_owned()];
    for package in packages {
        let name = package["name"].as_str().unwrap().to_owned();
        let edges = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dep| dep["kind"].as_str() != Some("dev"))
            .map(|dep| dep["name"].as_str().unwrap())
            .filter(|dep| names.contains(dep))
            .map(str::to_owned)
            .collect();
        if Path::new(package["manifest_path"].as_str().unwrap()).starts_with(&processors_dir) {
            subjects.push(name.clone());
        }
        graph.insert(name, edges);
    }
    (graph, subjects)
}

#[test]
fn processor_facing_crates_reach_no_orchestrator_or_storage_crate() {
    let (graph, subjects) = workspace();
    assert!(
        subjects.len() > 2,
        "no package found under processors/: {subjects:?}"
    );
    for subject in &subjects {
        assert!(
            graph.contains_key(subject),
            "{subject} is not a workspace package"
        );
        let found = violations(&graph, subject);
        assert!(
            found.is_empty(),
            "{subject} depends on forbidden crates: {found:#?}"
        );
    }
}

#[test]
fn the_check_finds_transitive_and_storage_dependencies() {
    let graph: Graph = [
        ("processor-x", &["proctor-sdk"][..]),
        ("proctor-sdk", &["proctor-contract", "helper"]),
        ("helper", &["proctor-ledger-sqlite"]),
        ("proctor-contract", &[]),
        ("proctor-ledger-sqlite", &["proctor-registry"]),
        ("proctor-registry", &["proctor-contract"]),
        ("clean", &["proctor-contract"]),
    ]
    .into_iter()
    .map(|(name, deps)| {
        (
            name.to_owned(),
            deps.iter().map(|d| d.to_string()).collect(),
        )
    })
    .collect();
    let found = violations(&graph, "processor-x");
    assert_eq!(
        found,
        [
            "processor-x -> proctor-sdk -> helper -> proctor-ledger-sqlite",
            "processor-x -> proctor-sdk -> helper -> proctor-ledger-sqlite -> proctor-registry",
        ]
    );
    assert!(violations(&graph, "clean").is_empty());
    assert!(
        forbidden("proctor-world-fs") && forbidden("proctor-store") && !forbidden("proctor-sdk")
    );
}
