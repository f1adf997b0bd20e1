//! `proctor ledger keygen --out PATH`, `proctor ledger checkpoint --key PATH`, and the
//! checkpoint part of `proctor ledger verify --public-key KEY`.
//!
//! The key pair is two PEM files OpenSSL also reads: the private key (PKCS#8, mode 0600)
//! stays with whoever signs checkpoints, outside the ledger; the public key goes to whoever
//! verifies. Checkpoints are appended to the ledger itself, so verifying needs only the
//! ledger and the public key; `checkpoint --json` prints the signed checkpoint for an
//! operator who also keeps a copy elsewhere.

use std::fmt::Write as _;
use std::path::Path;

use proctor_contract::CanonError;
use proctor_ledger::{
    CheckpointPublicKey, CheckpointReport, CheckpointSigningKey, Ledger, public_key_path,
};
use serde_json::json;

use crate::args::OutputFormat;
use crate::ledger_commands::hash_prefix;
use crate::output::json_report;

/// Writes a new key pair: the private key at `out`, the public key at `out.pub`.
pub(crate) fn keygen(out: &Path, format: OutputFormat) -> Result<(String, i32), CanonError> {
    let public = CheckpointSigningKey::generate(out)?.public_key();
    let public_path = public_key_path(out);
    tracing::info!(event = "ledger.keygen", key_id = %public.key_id(), "wrote a new signing key");
    let text = match format {
        OutputFormat::Json => json_report(&json!({
            "ok": true,
            "private_key_path": out,
            "public_key_path": public_path,
            "public_key": public.to_pem(),
            "key_id": public.key_id(),
        })),
        OutputFormat::Human => format!(
            "private key: {} (mode 0600; keep it out of the ledger)\n\
             public key:  {}\n\
             key id:      {}\n{}",
            out.display(),
            public_path.display(),
            public.key_id(),
            public.to_pem()
        ),
    };
    Ok((text, 0))
}

/// Signs every plan's head with the key at `key_path` and appends the checkpoint.
pub(crate) async fn checkpoint(
    ledger: &Ledger,
    key_path: &Path,
    format: OutputFormat,
) -> Result<(String, i32), CanonError> {
    let key = CheckpointSigningKey::read(key_path)?;
    let signed = ledger.checkpoint(&key).await?;
    let text = match format {
        OutputFormat::Json => json_report(&json!({"ok": true, "checkpoint": signed})),
        OutputFormat::Human => {
            let mut text = format!(
                "checkpoint {} of {} plans, signed by key {}\n",
                signed.seq,
                signed.statement.heads.len(),
                signed.statement.key_id
            );
            let width = signed
                .statement
                .heads
                .iter()
                .map(|head| head.plan.len())
                .max()
                .unwrap_or(0);
            for head in &signed.statement.heads {
                let _ = writeln!(
                    text,
                    "  {:<width$}  head seq {} ({})",
                    head.plan,
                    head.seq,
                    hash_prefix(&head.hash)
                );
            }
            text
        }
    };
    Ok((text, 0))
}

/// Checks `plan` (or every plan) against the latest checkpoint, with `public_key`.
pub(crate) async fn check(
    ledger: &Ledger,
    public_key: &str,
    plan: Option<&str>,
) -> Result<CheckpointReport, CanonError> {
    let key = CheckpointPublicKey::parse(public_key)?;
    let report = ledger.verify_checkpoint(&key, plan).await?;
    match report.to_error() {
        None => {
            tracing::info!(
                event = "ledger.verify_checkpoint",
                seq = report.seq,
                ok = true
            )
        }
        Some(error) => {
            tracing::error!(event = "ledger.verify_checkpoint", seq = report.seq, ok = false, message = %error.message())
        }
    }
    Ok(report)
}

/// The human lines about the checkpoint check: `None` when none was asked for.
pub(crate) fn summary(report: Option<&CheckpointReport>) -> String {
    let Some(report) = report else {
        return "checkpoint: not checked (no --public-key)\n".to_owned();
    };
    if let Some(problem) = &report.problem {
        return format!("✗ checkpoint: {problem}\n");
    }
    let mut text = format!(
        "checkpoint {} of {} (key {}):\n",
        report.seq.unwrap_or_default(),
        report.created_at.as_deref().unwrap_or_default(),
        report.key_id
    );
    if report.heads.is_empty() {
        text.push_str("  no checkpointed plan to check\n");
    }
    for head in &report.heads {
        let _ = match &head.mismatch {
            None => writeln!(
                text,
                "✓ {}  still holds its checkpointed head seq {}",
                head.plan, head.seq
            ),
            Some(mismatch) => writeln!(
                text,
                "✗ {}  at checkpointed seq {}: {mismatch}",
                head.plan, head.seq
            ),
        };
    }
    text
}
