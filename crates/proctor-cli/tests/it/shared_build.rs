//! proctor is built as it builds processors (the same target, flags, profile and target
//! directory), so a processor's build after proctor's compiles only the processor's own
//! crates, provided every crate both builds reach resolves to the same features in each.
//! cargo-hakari's workspace-hack (`.config/hakari.toml`) keeps it so; these tests catch a
//! dependency change that breaks it, and a second TLS crypto provider in the lock.

use std::collections::BTreeMap;

use crate::layering::workspace;
use crate::util::{workspace_cargo, workspace_root};

/// Package (`name vX.Y.Z`, with its path for workspace members) → the features
/// `cargo tree` resolves for it in a build of `package` alone, for the host target.
fn resolved_features(package: &str) -> BTreeMap<String, String> {
    let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let tree = workspace_cargo(&[
        "tree",
        "-p",
        package,
        "--target",
        &host,
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "-f",
        "{p}|{f}",
    ]);
    tree.lines()
        .filter_map(|line| {
            let (package, features) = line.trim_end_matches(" (*)").split_once('|')?;
            Some((package.to_owned(), features.to_owned()))
        })
        .collect()
}

#[test]
fn every_processor_resolves_the_crates_it_shares_with_proctor_as_proctor_does() {
    let (_, processors) = workspace();
    assert!(
        processors.contains("processor-llm-litellm"),
        "{processors:?}"
    );
    let proctor = resolved_features("proctor-cli");
    let mut differing = Vec::new();
    for processor in &processors {
        let shared = resolved_features(processor)
            .into_iter()
            .filter_map(|(package, features)| Some((proctor.get(&package)?, package, features)));
        for (in_proctor, package, features) in shared {
            if *in_proctor != features {
                differing.push(format!(
                    "{processor}: {package}: [{features}], in proctor's build [{in_proctor}]"
                ));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "these would compile a second time for a processor; \
         `cargo hakari generate && cargo hakari manage-deps` (see .config/hakari.toml):\n{}",
        differing.join("\n")
    );
}

#[test]
fn the_lock_holds_one_tls_crypto_provider() {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
    assert!(lock.contains("name = \"ring\""));
    for provider in ["aws-lc-rs", "aws-lc-sys"] {
        assert!(
            !lock.contains(&format!("name = \"{provider}\"")),
            "{provider} is in Cargo.lock; `cargo tree -i {provider}` shows who brings it"
        );
    }
}
