//! `proctor build`, `proctor push` and `proctor pin`: a processor's multi-arch image from
//! source to an OCI image layout (under `--oci-root`, default `./.proctor/oci`), from there
//! to a registry, and its digests into `registry.yaml`. The work is `proctor_oci`'s; this
//! module picks the processor, the layout and the index to pin, and prints the result.
//!
//! Under `--json`, stdout carries one line: the result, or `{"error":{"code","message"}}`.
//! On a terminal, and not under `--json`, builds and pushes show their progress.

use std::fmt::Write as _;
use std::path::Path;

use proctor_contract::{CanonError, ErrorCode, Platform, ProcessorRef};
use proctor_oci::{
    BuiltImage, IndexReference, IndexSource, Pins, PushedImage, RegistryTarget, layout_dir,
};
use proctor_registry::{RegisteredProcessor, Registry};
use serde_json::{Value, json};

use crate::args::{BuildConfig, ImageConfig, OutputFormat, PinConfig, PushConfig};
use crate::output::{emit, json_report, print_error, table};
use crate::progress::{ProgressOptions, reporter};
use proctor_engine::{build_layout, check_publish};

/// Runs the command; returns the exit code (a canonical error's, or 0).
pub(crate) async fn execute(config: &ImageConfig) -> anyhow::Result<i32> {
    let (format, result) = match config {
        // Compiling blocks this thread for minutes; the runtime's other workers go on.
        ImageConfig::Build(build) => (
            build.format,
            tokio::task::block_in_place(|| build_command(build)),
        ),
        ImageConfig::Push(push) => (push.format, push_command(push).await),
        ImageConfig::Pin(pin) => (pin.format, pin_command(pin).await),
    };
    match result {
        Ok(report) => {
            match format {
                OutputFormat::Json => emit(&json_report(&report.json))?,
                OutputFormat::Human => emit(&report.text)?,
            }
            Ok(0)
        }
        Err(error) => {
            print_error(&error, format)?;
            Ok(error.code().exit_code())
        }
    }
}

/// What a command did, for people and for machines.
struct Report {
    text: String,
    json: Value,
}

/// The registry entry of `raw`, parsed and looked up.
pub(crate) fn registry_entry<'a>(
    registry: &'a Registry,
    raw: &str,
) -> Result<&'a RegisteredProcessor, CanonError> {
    registry.get(&raw.parse::<ProcessorRef>()?)
}

/// Where `pin` reads the index of `processor_ref` from: with `registry`, that repository —
/// by the digest of the last push of the built layout when it went there, else by the version
/// tag; without it, wherever the last push went. Nothing to go by is `ERR_PIN`.
pub(crate) fn index_source(
    processor_ref: &ProcessorRef,
    oci_root: &Path,
    registry: Option<&RegistryTarget>,
) -> Result<IndexSource, CanonError> {
    let layout = layout_dir(oci_root, processor_ref);
    let pushed =
        PushedImage::load(&layout)?.filter(|pushed| pushed.processor_ref == *processor_ref);
    let repository = registry
        .map(|target| {
            target.repository(processor_ref).map_err(|err| {
                CanonError::new(
                    ErrorCode::Pin,
                    format!("{processor_ref} has no repository under {target}: {err}"),
                )
            })
        })
        .transpose()?;
    match (repository, pushed) {
        (Some(repository), Some(pushed)) if pushed.repository == repository => {
            Ok(pushed.index_source())
        }
        (Some(repository), _) => Ok(IndexSource {
            repository,
            reference: IndexReference::Tag(processor_ref.version().to_owned()),
        }),
        (None, Some(pushed)) => Ok(pushed.index_source()),
        (None, None) => Err(CanonError::new(
            ErrorCode::Pin,
            format!(
                "no push of {processor_ref} is recorded in {}; run `proctor push` first or name the registry with --registry",
                layout.display()
            ),
        )),
    }
}

/// `{"platform","manifest_digest","compile_ms"}` per platform of a build.
pub(crate) fn built_json(processor_ref: &ProcessorRef, built: &BuiltImage) -> Value {
    let platforms: Vec<Value> = built
        .platforms
        .iter()
        .map(|platform| {
            json!({
                "platform": platform.platform.to_string(),
                "manifest_digest": platform.manifest_digest,
                "compile_ms": u64::try_from(platform.compile_time.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    json!({
        "ref": processor_ref,
        "layout_dir": built.layout_dir,
        "index_digest": built.index_digest,
        "platforms": platforms,
    })
}

/// A push, as JSON.
pub(crate) fn pushed_json(pushed: &PushedImage) -> Value {
    json!({
        "ref": pushed.processor_ref,
        "repository": pushed.repository,
        "tag": pushed.tag,
        "index_digest": pushed.index_digest,
        "platforms": pushed.platforms,
    })
}

/// The three pins, as JSON.
pub(crate) fn pins_json(pins: &Pins) -> Value {
    json!({"index": pins.index, "amd64": pins.amd64, "arm64": pins.arm64})
}

fn build_command(config: &BuildConfig) -> Result<Report, CanonError> {
    let registry = Registry::load(&config.registry_root)?;
    let entry = registry_entry(&registry, &config.processor_ref)?;
    let built = build_layout(
        entry,
        &config.platforms,
        &config.oci_root,
        &config.workspace_root,
        &reporter(ProgressOptions::for_output(config.format)),
    )?;
    let rows: Vec<[String; 3]> = built
        .platforms
        .iter()
        .map(|platform| {
            [
                platform.platform.to_string(),
                platform.manifest_digest.clone(),
                format!("{:.1} s", platform.compile_time.as_secs_f64()),
            ]
        })
        .collect();
    let mut text = format!(
        "built {} into {}\nindex: {}\n",
        entry.spec().processor_ref,
        built.layout_dir.display(),
        built.index_digest
    );
    text.push_str(&table(["PLATFORM", "MANIFEST", "COMPILE"], &rows));
    if built.platforms.len() < Platform::ALL.len() {
        text.push_str("note: a pin needs linux/amd64 and linux/arm64\n");
    }
    Ok(Report {
        text,
        json: built_json(&entry.spec().processor_ref, &built),
    })
}

async fn push_command(config: &PushConfig) -> Result<Report, CanonError> {
    check_publish(config.lane, "push")?;
    let processor_ref: ProcessorRef = config.processor_ref.parse()?;
    let pushed = proctor_oci::push(
        &layout_dir(&config.oci_root, &processor_ref),
        &config.registry,
        &reporter(ProgressOptions::for_output(config.format)),
    )
    .await?;
    let mut text = format!(
        "pushed {}:{}\nindex: {}\n",
        pushed.repository, pushed.tag, pushed.index_digest
    );
    for (platform, digest) in &pushed.platforms {
        let _ = writeln!(text, "{platform}: {digest}");
    }
    Ok(Report {
        text,
        json: pushed_json(&pushed),
    })
}

async fn pin_command(config: &PinConfig) -> Result<Report, CanonError> {
    check_publish(config.lane, "pin")?;
    let registry = Registry::load(&config.registry_root)?;
    let entry = registry_entry(&registry, &config.processor_ref)?;
    let processor_ref = &entry.spec().processor_ref;
    let source = index_source(processor_ref, &config.oci_root, config.registry.as_ref())?;
    let file = entry.file();
    let pins = proctor_oci::pin(&file, &source).await?;
    let text = format!(
        "pinned {processor_ref} from {source} in {}\nindex: {}\namd64: {}\narm64: {}\n",
        file.display(),
        pins.index,
        pins.amd64,
        pins.arm64
    );
    Ok(Report {
        text,
        json: json!({
            "ref": processor_ref,
            "file": file,
            "source": source.to_string(),
            "pins": pins_json(&pins),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(processor_ref: &ProcessorRef, target: &RegistryTarget) -> PushedImage {
        PushedImage {
            processor_ref: processor_ref.clone(),
            repository: target.repository(processor_ref).unwrap(),
            tag: processor_ref.version().to_owned(),
            index_digest: format!("sha256:{}", "ab".repeat(32)),
            platforms: Default::default(),
        }
    }

    /// Writes the push record `proctor_oci::push` leaves next to a layout.
    fn record(oci_root: &Path, pushed: &PushedImage) {
        let layout = layout_dir(oci_root, &pushed.processor_ref);
        std::fs::create_dir_all(&layout).unwrap();
        std::fs::write(
            layout.join("proctor-push.json"),
            serde_json::to_vec(pushed).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn the_index_to_pin_is_the_last_push_or_the_version_tag() {
        let oci_root = tempfile::tempdir().unwrap();
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let here: RegistryTarget = "127.0.0.1:5000/acme/proctor".parse().unwrap();
        let elsewhere: RegistryTarget = "ghcr.io/acme/proctor".parse().unwrap();

        let err = index_source(&processor_ref, oci_root.path(), None).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Pin);
        assert!(err.message().contains("run `proctor push` first"), "{err}");
        let by_tag = index_source(&processor_ref, oci_root.path(), Some(&elsewhere)).unwrap();
        assert_eq!(by_tag.to_string(), "ghcr.io/acme/proctor/text-stats:1");

        let last = pushed(&processor_ref, &here);
        record(oci_root.path(), &last);
        assert_eq!(
            index_source(&processor_ref, oci_root.path(), None).unwrap(),
            last.index_source()
        );
        assert_eq!(
            index_source(&processor_ref, oci_root.path(), Some(&here)).unwrap(),
            last.index_source()
        );
        let other = index_source(&processor_ref, oci_root.path(), Some(&elsewhere)).unwrap();
        assert_eq!(other.reference, IndexReference::Tag("1".to_owned()));
    }
}
