//! Everything `proctor` prints on stdout. Under `--json` that is exactly one line of JSON;
//! otherwise a short summary for people. A closed stdout (broken pipe) ends printing
//! quietly.

use std::fmt::Write as _;
use std::io::{self, Write};

use proctor_contract::{CanonError, Envelope, ErrorCode};

use crate::args::{OutputFormat, RunConfig};
use proctor_engine::RunOutcome;
use proctor_store::FsStore;

/// Writes `text` to stdout; a broken pipe is not an error.
pub(crate) fn emit(text: &str) -> io::Result<()> {
    emit_bytes(text.as_bytes())
}

/// Writes `bytes` to stdout as they are; a broken pipe is not an error.
pub(crate) fn emit_bytes(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Prints a run's envelope: one JSON line, or a summary that says where the outputs are on
/// this host (below the run's artifacts root).
pub(crate) fn print_run(outcome: &RunOutcome, config: &RunConfig) -> io::Result<()> {
    match config.format {
        OutputFormat::Json => emit(&format!("{}\n", outcome.envelope.to_json_line())),
        OutputFormat::Human => {
            // The World's store the run committed to, read as the engine read it.
            let world_store = crate::deploy_commands::host_env()
                .remove(proctor_deploy::ModalTarget::ENV_WORLD_STORE)
                .filter(|location| !location.is_empty());
            emit(&run_summary(outcome, config, world_store.as_deref()))
        }
    }
}

/// One line of JSON for a command's report: the report as it serializes, with `"status"`
/// added when it has none — `"error"` when it carries an error, else `"ok"` — so every
/// failure under `--json` has the one shape `{"status":"error","error":{"code","message"}}`.
pub(crate) fn json_report(report: &impl serde::Serialize) -> String {
    let mut value = serde_json::to_value(report).unwrap_or_else(|error| {
        let error = CanonError::new(
            ErrorCode::Internal,
            format!("report not serializable: {error}"),
        );
        serde_json::json!({"status": "error", "error": error_json(&error)})
    });
    if let serde_json::Value::Object(fields) = &mut value
        && !fields.contains_key("status")
    {
        let failed = fields.get("error").is_some_and(|error| !error.is_null());
        let status = if failed { "error" } else { "ok" };
        fields.insert("status".to_owned(), status.into());
    }
    format!("{value}\n")
}

/// Prints a canonical error outside a run: `{"status":"error","error":{"code","message"}}`
/// or one line.
pub(crate) fn print_error(error: &CanonError, format: OutputFormat) -> io::Result<()> {
    match format {
        OutputFormat::Json => {
            let body = serde_json::json!({"status": "error", "error": error_json(error)});
            emit(&format!("{body}\n"))
        }
        OutputFormat::Human => emit(&format!("error: {error}\n")),
    }
}

/// Prints a canonical error as one line on stderr, for commands whose stdout carries
/// data (`world cat`).
pub(crate) fn print_error_on_stderr(error: &CanonError) {
    // Nothing is left to tell when stderr itself is closed.
    let _ = writeln!(io::stderr().lock(), "error: {error}");
}

/// `{"code","message"}` of a canonical error, for JSON reports that carry one.
pub(crate) fn error_json(error: &CanonError) -> serde_json::Value {
    serde_json::json!({"code": error.code(), "message": error.message()})
}

/// Lays `rows` out as left-aligned columns under `header`, two spaces apart; the last
/// column is not padded.
pub(crate) fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[column]);
            }
        }
        let _ = writeln!(text, "{}", line.trim_end());
    }
    text
}

/// A run for people: its status, execution and image; each output's world path, size and
/// type with, below it, the file on this host (the artifacts root backs `/artifacts/`), or,
/// when the World is a store elsewhere (`world_store`), that store's URL once; the
/// index; and the commands worth running next (`world cat` of a text output when there is
/// one), with the flags that find this run's evidence.
fn run_summary(outcome: &RunOutcome, config: &RunConfig, world_store: Option<&str>) -> String {
    let store = FsStore::new(&config.artifacts_root);
    let mut text = String::new();
    match &outcome.envelope {
        Envelope::Success(success) => {
            let _ = writeln!(text, "status:       success ({} mode)", success.meta.mode);
            let _ = writeln!(text, "execution id: {}", success.execution_id);
            let _ = writeln!(text, "image:        {}", success.meta.image_digest);
            let _ = writeln!(text, "outputs:");
            let width = success
                .outputs
                .iter()
                .map(|o| o.path.as_str().len())
                .max()
                .unwrap_or(0);
            for output in &success.outputs {
                let _ = writeln!(
                    text,
                    "  {:<width$}  {:>8} B  {}",
                    output.path.as_str(),
                    output.size_bytes,
                    output.mime
                );
                if world_store.is_none() {
                    let host = store.file_path(&output.path);
                    let _ = writeln!(text, "    on this host: {}", host.display());
                }
            }
            if let Some(location) = world_store {
                // A URL may carry credentials (`https://user:password@…`): masked.
                let location = proctor_telemetry::known_secrets()
                    .redactor()
                    .redact(location);
                let _ = writeln!(text, "store:        {location}");
            }
            let _ = writeln!(text, "index:        {}", success.index_path);
            if let Some(saved_to) = &outcome.saved_to {
                let _ = writeln!(text, "saved to:     {}", saved_to.display());
            }
            let flags = |only_store: bool| {
                config
                    .evidence_flags
                    .iter()
                    .filter(move |(flag, _)| !only_store || *flag == "--artifacts-root")
                    .flat_map(|(flag, value)| [*flag, value.as_str()])
            };
            let verify = ["proctor", "verify", &success.execution_id];
            let verify = command_line(verify.into_iter().chain(flags(false)));
            let _ = writeln!(text, "next:         {verify}");
            // A text output reads best on a terminal.
            let readable = success.outputs.iter().find(|o| o.mime.starts_with("text/"));
            if let Some(output) = readable.or(success.outputs.first()) {
                let cat = ["proctor", "world", "cat", output.path.as_str()];
                let cat = command_line(cat.into_iter().chain(flags(true)));
                let _ = writeln!(text, "              {cat}");
            }
        }
        Envelope::Error(error) => {
            let _ = writeln!(text, "status:       error");
            let _ = writeln!(text, "execution id: {}", error.execution_id);
            let _ = writeln!(
                text,
                "error:        {}: {}",
                error.error.code, error.error.message
            );
        }
    }
    text
}

/// `words` as one shell command line, each quoted where the shell needs it.
fn command_line<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    let words: Vec<&str> = words.into_iter().collect();
    // Only a NUL byte cannot be quoted, and no path or id printed here holds one.
    shlex::try_join(words.iter().copied()).unwrap_or_else(|_| words.join(" "))
}
