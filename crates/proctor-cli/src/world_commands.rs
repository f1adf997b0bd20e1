//! `proctor world ls PREFIX`, `proctor world cat PATH` and `proctor world sync
//! EXECUTION_ID`: the world's artifacts in either store (the filesystem at the artifacts
//! root by default, or `--store s3://…`).
//!
//! Store failures become canonical errors: a missing artifact is `ERR_NOT_FOUND`, a path
//! outside `/artifacts/` or an unusable execution id `ERR_BAD_PATH`, missing S3 credentials
//! `ERR_MISSING_SECRET`, anything else the store reports `ERR_STORE`.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use proctor_contract::{CanonError, WorldPath};
use proctor_store::{ArtifactStore, FsStore, ObjectInfo, SyncReport};
use serde_json::json;

use crate::args::{OutputFormat, StoreLocation, WorldConfig};
use crate::output::{emit, emit_bytes, json_report, print_error, print_error_on_stderr, table};

/// Runs a `world` command; returns the exit code (a canonical error's, or 0).
pub(crate) async fn execute(config: &WorldConfig) -> anyhow::Result<i32> {
    match config {
        WorldConfig::Ls {
            selector,
            store,
            format,
        } => {
            let listed = async {
                let store = open(store)?;
                let selector = WorldPath::parse(selector)?;
                let objects = proctor_store::ls(store.as_ref(), &selector)
                    .await
                    .map_err(CanonError::from)?;
                Ok::<_, CanonError>((store.location(), selector, objects))
            }
            .await;
            match listed {
                Ok((location, selector, objects)) => {
                    tracing::info!(event = "world.ls", store = %location, selector = %selector, artifacts = objects.len());
                    emit(&render_ls(&location, &selector, &objects, *format))?;
                    Ok(0)
                }
                Err(error) => fail(&error, *format),
            }
        }
        WorldConfig::Cat {
            path,
            store,
            format,
        } => {
            let read = async {
                let store = open(store)?;
                let path = WorldPath::parse(path)?;
                proctor_store::cat(store.as_ref(), &path)
                    .await
                    .map_err(CanonError::from)
            }
            .await;
            match (read, format) {
                (Ok(bytes), OutputFormat::Human) => {
                    emit_bytes(&bytes)?;
                    Ok(0)
                }
                (Ok(bytes), OutputFormat::Json) => {
                    emit(&json_report(&cat_json(path, &bytes)))?;
                    Ok(0)
                }
                // Stdout carries the artifact's bytes; the error goes beside them.
                (Err(error), OutputFormat::Human) => {
                    log_failure(&error);
                    print_error_on_stderr(&error);
                    Ok(error.code().exit_code())
                }
                (Err(error), OutputFormat::Json) => fail(&error, OutputFormat::Json),
            }
        }
        WorldConfig::Sync {
            execution_id,
            from,
            to,
            format,
        } => {
            let synced = async {
                let from = open(from)?;
                let to = open(to)?;
                let report =
                    proctor_store::sync_execution(from.as_ref(), to.as_ref(), execution_id)
                        .await
                        .map_err(CanonError::from)?;
                Ok::<_, CanonError>((from.location(), to.location(), report))
            }
            .await;
            match synced {
                Ok((from, to, report)) => {
                    emit(&render_sync(&from, &to, &report, *format))?;
                    Ok(0)
                }
                Err(error) => fail(&error, *format),
            }
        }
    }
}

/// `world cat --json`: the artifact's path, size and bytes (as text when they are UTF-8,
/// else base64) in one line.
fn cat_json(path: &str, bytes: &[u8]) -> serde_json::Value {
    let mut body = json!({"path": path, "size_bytes": bytes.len()});
    match std::str::from_utf8(bytes) {
        Ok(text) => body["text"] = json!(text),
        Err(_) => body["base64"] = json!(BASE64_STANDARD.encode(bytes)),
    }
    body
}

/// Logs and prints `error`; answers its exit code.
fn fail(error: &CanonError, format: OutputFormat) -> anyhow::Result<i32> {
    log_failure(error);
    print_error(error, format)?;
    Ok(error.code().exit_code())
}

fn log_failure(error: &CanonError) {
    tracing::error!(event = "world.fail", code = %error.code(), message = %error.message());
}

/// Opens the store at `location`.
fn open(location: &StoreLocation) -> Result<Arc<dyn ArtifactStore>, CanonError> {
    match location {
        StoreLocation::ArtifactsRoot(root) => Ok(Arc::new(FsStore::new(root))),
        StoreLocation::Url(url) => proctor_store::open(url).map_err(CanonError::from),
    }
}

fn render_ls(
    location: &str,
    selector: &WorldPath,
    objects: &[ObjectInfo],
    format: OutputFormat,
) -> String {
    match format {
        OutputFormat::Json => format!("{}\n", json!(objects)),
        OutputFormat::Human if objects.is_empty() => {
            format!("(nothing under {selector} in {location})\n")
        }
        OutputFormat::Human => {
            let rows: Vec<[String; 2]> = objects
                .iter()
                .map(|object| [object.size_bytes.to_string(), object.path.to_string()])
                .collect();
            let width = rows.iter().map(|row| row[0].len()).max().unwrap_or(0);
            // Sizes right-aligned, so the table is built here rather than by `table`.
            let mut text = format!("{:>width$}  PATH\n", "SIZE", width = width.max(4));
            for [size, path] in &rows {
                let _ = writeln!(text, "{size:>width$}  {path}", width = width.max(4));
            }
            text
        }
    }
}

fn render_sync(from: &str, to: &str, report: &SyncReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => format!(
            "{}\n",
            json!({
                "execution_id": report.execution_id,
                "from": from,
                "to": to,
                "copied": report.copied,
            })
        ),
        OutputFormat::Human => {
            let bytes: u64 = report.copied.iter().map(|object| object.size_bytes).sum();
            let mut text = format!(
                "synced execution {}: {} artifacts, {bytes} bytes\n  from: {from}\n  to:   {to}\n\n",
                report.execution_id,
                report.copied.len()
            );
            let rows: Vec<[String; 2]> = report
                .copied
                .iter()
                .map(|object| [object.path.to_string(), object.size_bytes.to_string()])
                .collect();
            text.push_str(&table(["PATH", "SIZE"], &rows));
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> WorldPath {
        WorldPath::parse(raw).unwrap()
    }

    #[test]
    fn listings_render_for_people_and_machines() {
        let objects = [
            ObjectInfo {
                path: path("/artifacts/o/a.txt"),
                size_bytes: 3,
            },
            ObjectInfo {
                path: path("/artifacts/o/big.bin"),
                size_bytes: 123_456,
            },
        ];
        let human = render_ls(
            "file:///r",
            &path("/artifacts/o/"),
            &objects,
            OutputFormat::Human,
        );
        assert_eq!(
            human,
            "  SIZE  PATH\n     3  /artifacts/o/a.txt\n123456  /artifacts/o/big.bin\n"
        );
        let machine = render_ls(
            "file:///r",
            &path("/artifacts/o/"),
            &objects,
            OutputFormat::Json,
        );
        assert_eq!(
            machine,
            "[{\"path\":\"/artifacts/o/a.txt\",\"size_bytes\":3},\
             {\"path\":\"/artifacts/o/big.bin\",\"size_bytes\":123456}]\n"
        );
        assert_eq!(
            render_ls(
                "file:///r",
                &path("/artifacts/x/"),
                &[],
                OutputFormat::Human
            ),
            "(nothing under /artifacts/x/ in file:///r)\n"
        );
    }
}
