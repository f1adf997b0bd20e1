//! Everything `proctor` prints on stdout. Under `--json` that is exactly one line of JSON;
//! otherwise a short summary for people. A closed stdout (broken pipe) ends printing
//! quietly.

use std::fmt::Write as _;
use std::io::{self, Write};

use proctor_contract::{CanonError, Envelope};

use crate::args::OutputFormat;
use crate::run::RunOutcome;

/// Writes `text` to stdout; a broken pipe is not an error.
pub(crate) fn emit(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Prints a run's envelope: one JSON line, or a summary.
pub(crate) fn print_run(outcome: &RunOutcome, format: OutputFormat) -> io::Result<()> {
    match format {
        OutputFormat::Json => emit(&format!("{}\n", outcome.envelope.to_json_line())),
        OutputFormat::Human => emit(&run_summary(outcome)),
    }
}

/// Prints a canonical error outside a run: `{"error":{"code","message"}}` or one line.
pub(crate) fn print_error(error: &CanonError, format: OutputFormat) -> io::Result<()> {
    match format {
        OutputFormat::Json => {
            let body = serde_json::json!({
                "error": {"code": error.code(), "message": error.message()}
            });
            emit(&format!("{body}\n"))
        }
        OutputFormat::Human => emit(&format!("error: {error}\n")),
    }
}

fn run_summary(outcome: &RunOutcome) -> String {
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
            }
            let _ = writeln!(text, "index:        {}", success.index_path);
            if let Some(saved_to) = &outcome.saved_to {
                let _ = writeln!(text, "saved to:     {}", saved_to.display());
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
