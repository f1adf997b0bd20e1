//! `proctor registry list` and `proctor registry show REF`.

use std::fmt::Write as _;

use proctor_contract::{CanonError, Platform, ProcessorRef};
use proctor_registry::{RegisteredProcessor, Registry, pinned_image};
use serde_json::{Value, json};

use crate::args::{OutputFormat, RegistryConfig};
use crate::output::{emit, print_error, table};

/// Lists or shows; returns the exit code (a canonical error's, or 0).
pub(crate) fn execute(config: &RegistryConfig) -> std::io::Result<i32> {
    match render(config) {
        Ok(text) => emit(&text).map(|()| 0),
        Err(error) => print_error(&error, config.format).map(|()| error.code().exit_code()),
    }
}

fn render(config: &RegistryConfig) -> Result<String, CanonError> {
    let registry = Registry::load(&config.registry_root)?;
    match &config.show {
        None => Ok(match config.format {
            OutputFormat::Json => {
                let list: Vec<Value> = registry.iter().map(summary_json).collect();
                format!("{}\n", Value::Array(list))
            }
            OutputFormat::Human => list_table(&registry),
        }),
        Some(raw) => {
            let entry = registry.get(&raw.parse::<ProcessorRef>()?)?;
            Ok(match config.format {
                OutputFormat::Json => format!("{}\n", json!(entry.spec())),
                OutputFormat::Human => show_text(entry),
            })
        }
    }
}

/// The platforms with a valid pin, e.g. `amd64 arm64`, or `none`.
fn pinned_platforms(entry: &RegisteredProcessor) -> String {
    let pinned: Vec<&str> = [Platform::Amd64, Platform::Arm64]
        .into_iter()
        .filter(|platform| pinned_image(entry.spec(), *platform).is_ok())
        .map(Platform::as_str)
        .collect();
    if pinned.is_empty() {
        "none".to_owned()
    } else {
        pinned.join(" ")
    }
}

fn summary_json(entry: &RegisteredProcessor) -> Value {
    let spec = entry.spec();
    json!({
        "ref": spec.processor_ref,
        "description": spec.description,
        "path": entry.file(),
        "image": spec.image,
        "secrets": spec.secrets.required,
        "env": spec.env,
        "outputs": spec.outputs,
        "examples": spec.examples.keys().collect::<Vec<_>>(),
    })
}

fn list_table(registry: &Registry) -> String {
    let rows: Vec<[String; 4]> = registry
        .iter()
        .map(|entry| {
            let spec = entry.spec();
            let secrets = spec.secrets.required.join(",");
            [
                spec.processor_ref.to_string(),
                pinned_platforms(entry),
                if secrets.is_empty() {
                    "-".to_owned()
                } else {
                    secrets
                },
                spec.description.clone(),
            ]
        })
        .collect();
    let mut text = table(["REF", "PINNED", "SECRETS", "DESCRIPTION"], &rows);
    if rows.is_empty() {
        let _ = writeln!(text, "(no processors under {})", registry.root().display());
    }
    text
}

fn show_text(entry: &RegisteredProcessor) -> String {
    let spec = entry.spec();
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(text, "{label:<13} {value}");
    };
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    // One item per line, aligned under the first.
    let column = |items: &[String]| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(&format!("\n{:14}", ""))
        }
    };
    line("ref:", spec.processor_ref.to_string());
    line("description:", spec.description.clone());
    line("file:", entry.file().display().to_string());
    line(
        "build:",
        format!(
            "context {}, dockerfile {}, port {}, {}",
            spec.build.context,
            spec.build.dockerfile,
            spec.build.port,
            match (&spec.build.cargo_package, &spec.build.python) {
                (Some(package), _) => format!("cargo package {package}"),
                (None, Some(python)) => format!("python {python}"),
                (None, None) => "built by the container engine".to_owned(),
            }
        ),
    );
    for platform in [Platform::Amd64, Platform::Arm64] {
        let pin = match pinned_image(spec, platform) {
            Ok(reference) => reference.to_string(),
            Err(error) => format!("not pinned ({})", error.detail()),
        };
        line(&format!("image {}:", platform.as_str()), pin);
    }
    let runtime = &spec.runtime;
    line(
        "runtime:",
        format!(
            "cpu {}, memory {} GiB, timeout {} s, gpu {}",
            runtime.cpu,
            runtime.memory_gb,
            runtime.timeout_s,
            runtime.gpu.as_deref().unwrap_or("none")
        ),
    );
    line(
        "secrets:",
        format!("{} (real mode only)", list(&spec.secrets.required)),
    );
    line("env:", format!("{} (real mode only)", list(&spec.env)));
    let outputs: Vec<String> = spec
        .outputs
        .iter()
        .map(|o| format!("{} ({})", o.path, o.mime))
        .collect();
    line("outputs:", column(&outputs));
    let examples: Vec<String> = spec
        .examples
        .iter()
        .map(|(name, example)| match &example.description {
            Some(description) => format!("{name}: {description}"),
            None => name.clone(),
        })
        .collect();
    line("examples:", column(&examples));
    let schema = serde_json::to_string_pretty(&spec.inputs).unwrap_or_default();
    let _ = writeln!(text, "inputs schema:");
    for schema_line in schema.lines() {
        let _ = writeln!(text, "  {schema_line}");
    }
    text
}
