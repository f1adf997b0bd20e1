//! Evidence verification, the storage half of `proctor verify EXECUTION_ID`.
//!
//! From `/artifacts/execution/{id}/receipt.json` it follows the receipt to the outputs
//! index, re-hashes every output and compares its CID and size with the index, checks the
//! receipt copy under the write prefix is byte-identical, and that nothing unlisted sits
//! under `{write_prefix}outputs/`. Every finding is a [`Check`]; a missing or altered file is
//! a failed check, and only a store that cannot be read at all is an error.

use bytes::Bytes;
use proctor_contract::{OutputsIndex, Receipt, WorldPath, WritePrefix, cid};
use serde::Serialize;

use crate::{ArtifactStore, StoreError};

/// One verified property of an execution's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name: `receipt.execution`, `receipt.execution_id`, `index.location`,
    /// `receipt.prefix_copy`, `index.read`, `output:{path}` or `outputs.unlisted`.
    pub name: String,
    /// Whether the property holds.
    pub ok: bool,
    /// What was found, naming paths and values.
    pub detail: String,
}

/// The outcome of verifying one execution's stored evidence.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The execution verified.
    pub execution_id: String,
    /// The store it was read from (no credentials).
    pub store: String,
    /// The execution's receipt, when it could be read and parsed.
    pub receipt: Option<Receipt>,
    /// The outputs index, when it could be read and parsed.
    pub index: Option<OutputsIndex>,
    /// Every check made, in order; checks that depend on a failed one are not made.
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|check| check.ok)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.ok)
    }

    fn record(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }
}

/// `/artifacts/execution/{execution_id}/receipt.json`, for an id that is one plain segment.
pub(crate) fn execution_receipt_path(execution_id: &str) -> Result<WorldPath, StoreError> {
    let refuse = || StoreError::ExecutionId {
        execution_id: execution_id.to_owned(),
    };
    if execution_id.is_empty() || execution_id.contains('/') {
        return Err(refuse());
    }
    let path = WorldPath::execution_receipt(execution_id).map_err(|_| refuse())?;
    if path.as_str() != format!("/artifacts/execution/{execution_id}/receipt.json") {
        return Err(refuse());
    }
    Ok(path)
}

/// The write prefix a receipt's `outputs_index` names (`{prefix}outputs.json`).
pub(crate) fn write_prefix_of(receipt: &Receipt) -> Result<WritePrefix, String> {
    let index = receipt.outputs_index.as_str();
    let dir = index
        .strip_suffix("outputs.json")
        .filter(|dir| dir.ends_with('/'))
        .ok_or_else(|| format!("`{index}` is not `{{write_prefix}}outputs.json`"))?;
    let prefix = WritePrefix::from_expanded(dir).map_err(|e| e.to_string())?;
    if prefix.index_path() != receipt.outputs_index {
        return Err(format!("`{index}` is not `{}`", prefix.index_path()));
    }
    Ok(prefix)
}

/// Reads `path`, giving `None` when it does not exist.
async fn read_optional(
    store: &dyn ArtifactStore,
    path: &WorldPath,
) -> Result<Option<Bytes>, StoreError> {
    match store.get(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

/// Verifies the stored evidence of `execution_id` in `store`.
///
/// Returns `Err` only for an invalid execution id or a store that cannot be read; every
/// missing, unparsable or mismatching artifact is a failed check in the report.
pub async fn verify_execution(
    store: &dyn ArtifactStore,
    execution_id: &str,
) -> Result<VerifyReport, StoreError> {
    let receipt_path = execution_receipt_path(execution_id)?;
    let mut report = VerifyReport {
        execution_id: execution_id.to_owned(),
        store: store.location(),
        receipt: None,
        index: None,
        checks: Vec::new(),
    };

    let Some(receipt_bytes) = read_optional(store, &receipt_path).await? else {
        report.record(
            "receipt.execution",
            false,
            format!("missing: `{receipt_path}`"),
        );
        return Ok(report);
    };
    let receipt: Receipt = match serde_json::from_slice(&receipt_bytes) {
        Ok(receipt) => receipt,
        Err(e) => {
            report.record(
                "receipt.execution",
                false,
                format!("`{receipt_path}` unreadable: {e}"),
            );
            return Ok(report);
        }
    };
    report.record("receipt.execution", true, format!("`{receipt_path}`"));
    report.record(
        "receipt.execution_id",
        receipt.execution_id == execution_id,
        format!("receipt names execution `{}`", receipt.execution_id),
    );
    let prefix = write_prefix_of(&receipt);
    report.receipt = Some(receipt);
    let prefix = match prefix {
        Ok(prefix) => {
            report.record("index.location", true, format!("`{}`", prefix.index_path()));
            prefix
        }
        Err(reason) => {
            report.record("index.location", false, reason);
            return Ok(report);
        }
    };

    let copy_path = prefix.receipt_path();
    let (copy_ok, copy_detail) = match read_optional(store, &copy_path).await? {
        None => (false, format!("missing: `{copy_path}`")),
        Some(copy) if copy == receipt_bytes => (
            true,
            format!("`{copy_path}` is byte-identical to `{receipt_path}`"),
        ),
        Some(copy) => (
            false,
            format!(
                "`{copy_path}` ({} bytes) differs from `{receipt_path}` ({} bytes)",
                copy.len(),
                receipt_bytes.len()
            ),
        ),
    };
    report.record("receipt.prefix_copy", copy_ok, copy_detail);

    let index_path = prefix.index_path();
    let index = match read_optional(store, &index_path).await? {
        None => {
            report.record("index.read", false, format!("missing: `{index_path}`"));
            return Ok(report);
        }
        Some(bytes) => match OutputsIndex::from_bytes(&bytes) {
            Ok(index) => index,
            Err(e) => {
                report.record(
                    "index.read",
                    false,
                    format!("`{index_path}` unreadable: {e}"),
                );
                return Ok(report);
            }
        },
    };
    report.record(
        "index.read",
        true,
        format!("{} outputs", index.outputs.len()),
    );

    let outputs_dir = prefix.outputs_dir();
    for entry in &index.outputs {
        let name = format!("output:{}", entry.path);
        if !outputs_dir.covers(&entry.path) {
            report.record(name, false, format!("lies outside `{outputs_dir}`"));
            continue;
        }
        let Some(bytes) = read_optional(store, &entry.path).await? else {
            report.record(name, false, format!("missing: `{}`", entry.path));
            continue;
        };
        let (size_bytes, actual_cid) = (bytes.len() as u64, cid(&bytes));
        let mut mismatches = Vec::new();
        if size_bytes != entry.size_bytes {
            mismatches.push(format!(
                "size {size_bytes} bytes, index says {}",
                entry.size_bytes
            ));
        }
        if actual_cid != entry.cid {
            mismatches.push(format!("cid {actual_cid}, index says {}", entry.cid));
        }
        if mismatches.is_empty() {
            report.record(name, true, format!("{actual_cid}, {size_bytes} bytes"));
        } else {
            report.record(name, false, mismatches.join("; "));
        }
    }

    let unlisted: Vec<String> = store
        .list(&outputs_dir)
        .await?
        .into_iter()
        .filter(|object| !index.outputs.iter().any(|entry| entry.path == object.path))
        .map(|object| format!("`{}`", object.path))
        .collect();
    if unlisted.is_empty() {
        report.record(
            "outputs.unlisted",
            true,
            format!("every file under `{outputs_dir}` is indexed"),
        );
    } else {
        report.record(
            "outputs.unlisted",
            false,
            format!("not in the index: {}", unlisted.join(", ")),
        );
    }
    report.index = Some(index);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_are_one_plain_segment() {
        assert_eq!(
            execution_receipt_path("e1").unwrap().as_str(),
            "/artifacts/execution/e1/receipt.json"
        );
        for bad in ["", "a/b", "..", ".", "a%2Fb", "a%41", "cafe\u{301}"] {
            assert!(execution_receipt_path(bad).is_err(), "{bad}");
        }
    }
}
