//! The layering rule, as an allow-list: every workspace package names the workspace
//! packages it may depend on (normal and build dependencies; dev-dependencies never reach a
//! binary). Processors and fixtures (packages under `processors/` and `fixtures/`) may use
//! the contract and the SDK only. A package that is not listed, or an edge that is not
//! allowed, fails the test: a new dependency between crates is a decision made here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::util::workspace_cargo;

/// What each crate may depend on, mirroring ARCHITECTURE.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("proctor-contract", &[]),
    ("proctor-fs", &[]),
    ("proctor-tls", &[]),
    ("proctor-telemetry", &["proctor-contract"]),
    (
        "proctor-sdk",
        &[
            "proctor-contract",
            "proctor-fs",
            "proctor-store",
            "proctor-telemetry",
            "proctor-tls",
        ],
    ),
    ("proctor-registry", &["proctor-contract"]),
    (
        "proctor-store",
        &["proctor-contract", "proctor-fs", "proctor-tls"],
    ),
    ("proctor-ledger", &["proctor-contract"]),
    (
        "proctor-oci",
        &["proctor-contract", "proctor-fs", "proctor-tls"],
    ),
    (
        "proctor-deploy",
        &["proctor-contract", "proctor-fs", "proctor-registry"],
    ),
    (
        "proctor-adapters",
        &[
            "proctor-contract",
            "proctor-registry",
            "proctor-deploy",
            "proctor-oci",
            "proctor-tls",
        ],
    ),
    (
        "proctor-engine",
        &[
            "proctor-contract",
            "proctor-fs",
            "proctor-telemetry",
            "proctor-registry",
            "proctor-adapters",
            "proctor-store",
            "proctor-ledger",
            "proctor-deploy",
            "proctor-oci",
            "proctor-tls",
        ],
    ),
    (
        "proctor-plan",
        &[
            "proctor-contract",
            "proctor-registry",
            "proctor-store",
            "proctor-ledger",
            "proctor-engine",
        ],
    ),
    (
        "proctor-conform",
        &[
            "proctor-contract",
            "proctor-fs",
            "proctor-registry",
            "proctor-adapters",
        ],
    ),
    (
        "proctor-server",
        &[
            "proctor-contract",
            "proctor-fs",
            "proctor-registry",
            "proctor-store",
            "proctor-ledger",
            "proctor-engine",
            "proctor-plan",
        ],
    ),
    (
        "proctor-cli",
        &[
            "proctor-contract",
            "proctor-conform",
            "proctor-telemetry",
            "proctor-engine",
            "proctor-plan",
            "proctor-server",
            "proctor-registry",
            "proctor-store",
            "proctor-ledger",
            "proctor-deploy",
            "proctor-oci",
        ],
    ),
];

/// What processors and fixtures may depend on.
const PROCESSOR_ALLOWED: &[&str] = &["proctor-contract", "proctor-sdk"];

/// The feature-unifying package cargo-hakari keeps: every package depends on it, and it on
/// no workspace package, so it is no layer.
const WORKSPACE_HACK: &str = "proctor-workspace-hack";

/// Workspace package → the workspace packages it depends on.
pub(crate) type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every edge of `graph` the allow-list does not grant, and every package it does not
/// name; `is_processor` tells the packages the processor rule covers.
fn violations(graph: &Graph, is_processor: impl Fn(&str) -> bool) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut found = Vec::new();
    for (package, dependencies) in graph {
        let granted = match allowed.get(package.as_str()) {
            Some(granted) => *granted,
            None if is_processor(package) => PROCESSOR_ALLOWED,
            None => {
                found.push(format!("{package} is not in the allow-list"));
                continue;
            }
        };
        for dependency in dependencies {
            if !granted.contains(&dependency.as_str()) {
                found.push(format!("{package} -> {dependency}"));
            }
        }
    }
    found
}

/// The workspace graph and the processor and fixture packages, from `cargo metadata`.
pub(crate) fn workspace() -> (Graph, BTreeSet<String>) {
    let metadata = workspace_cargo(&["metadata", "--format-version", "1", "--no-deps"]);
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let root = Path::new(metadata["workspace_root"].as_str().unwrap());
    let processor_dirs = [root.join("processors"), root.join("fixtures")];
    let mut graph = Graph::new();
    let mut processors = BTreeSet::new();
    for package in packages {
        let name = package["name"].as_str().unwrap().to_owned();
        let edges = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dep| dep["kind"].as_str() != Some("dev"))
            .map(|dep| dep["name"].as_str().unwrap())
            .filter(|dep| names.contains(dep) && *dep != WORKSPACE_HACK)
            .map(str::to_owned)
            .collect();
        let manifest = Path::new(package["manifest_path"].as_str().unwrap());
        if processor_dirs.iter().any(|dir| manifest.starts_with(dir)) {
            processors.insert(name.clone());
        }
        if name != WORKSPACE_HACK {
            graph.insert(name, edges);
        }
    }
    (graph, processors)
}

#[test]
fn every_crate_depends_only_on_what_the_allow_list_grants() {
    let (graph, processors) = workspace();
    assert!(
        processors.len() >= 2,
        "no package found under processors/ or fixtures/: {processors:?}"
    );
    let found = violations(&graph, |name| processors.contains(name));
    assert!(found.is_empty(), "layering violations: {found:#?}");
}

#[test]
fn the_check_finds_unlisted_packages_and_edges() {
    let graph: Graph = [
        ("processor-x", &["proctor-sdk", "proctor-store"][..]),
        ("proctor-sdk", &["proctor-contract"]),
        ("proctor-contract", &[]),
        ("proctor-store", &["proctor-ledger"]),
        ("proctor-ledger", &["proctor-contract"]),
        ("proctor-newcomer", &[]),
    ]
    .into_iter()
    .map(|(name, deps)| {
        (
            name.to_owned(),
            deps.iter().map(|d| d.to_string()).collect(),
        )
    })
    .collect();
    let found = violations(&graph, |name| name == "processor-x");
    assert_eq!(
        found,
        [
            "processor-x -> proctor-store",
            "proctor-newcomer is not in the allow-list",
            "proctor-store -> proctor-ledger",
        ]
    );
}
