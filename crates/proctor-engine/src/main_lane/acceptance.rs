//! What makes a pair of smoke runs acceptable: each run's evidence passes every check of
//! [`crate::verify_execution`], and the two runs are byte-stable — the same outputs below
//! their write prefixes with the same CIDs, and the same [`Receipt::stable_part`].

use proctor_contract::{CanonError, ErrorBody, ErrorCode, ProcessorRef, Receipt, WritePrefix};

use crate::verify::VerifyReport;

/// A smoke run whose evidence verified.
#[derive(Debug)]
pub(super) struct CheckedRun {
    pub(super) execution_id: String,
    /// The receipt, as read from the World's store.
    pub(super) receipt: Receipt,
    /// `(path below the write prefix, cid)` of each output.
    pub(super) outputs: Vec<(String, String)>,
}

/// `ERR_ACCEPTANCE` with `detail`.
fn refused(detail: String) -> CanonError {
    CanonError::new(ErrorCode::Acceptance, detail)
}

/// The run of `processor_ref` whose evidence `verified` reports, written under `template`;
/// `ERR_ACCEPTANCE` naming the failed checks when any failed.
pub(super) fn checked_run(
    processor_ref: &ProcessorRef,
    template: &str,
    verified: VerifyReport,
) -> Result<CheckedRun, CanonError> {
    let id = verified.execution_id;
    let fail = |what: String| refused(format!("{processor_ref} execution {id}: {what}"));
    let failed: Vec<&str> = verified
        .checks
        .iter()
        .filter(|check| !check.ok)
        .map(|check| check.name.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(fail(format!(
            "{} of {} evidence checks failed: {} (`proctor verify {id}` tells why)",
            failed.len(),
            verified.checks.len(),
            failed.join(", ")
        )));
    }
    let (Some(receipt), Some(index)) = (verified.receipt, verified.index) else {
        return Err(fail(
            "the receipt or the outputs index could not be read".to_owned(),
        ));
    };
    let prefix = WritePrefix::expand(template, &id)?;
    let outputs = index
        .outputs
        .iter()
        .map(|output| {
            output
                .path
                .as_str()
                .strip_prefix(prefix.as_str())
                .map(|below| (below.to_owned(), output.cid.clone()))
                .ok_or_else(|| fail(format!("{} is not under the write prefix", output.path)))
        })
        .collect::<Result<_, _>>()?;
    Ok(CheckedRun {
        execution_id: id,
        receipt,
        outputs,
    })
}

/// Two runs of the same inputs: same outputs below their prefixes, same CIDs, same stable
/// receipt part.
pub(super) fn check_stable(
    processor_ref: &ProcessorRef,
    first: &CheckedRun,
    second: &CheckedRun,
) -> Result<(), CanonError> {
    let ids = format!(
        "executions {} and {}",
        first.execution_id, second.execution_id
    );
    if first.outputs != second.outputs {
        return Err(refused(format!(
            "{processor_ref}: mock outputs are not byte-stable across {ids}"
        )));
    }
    if first.receipt.stable_part() != second.receipt.stable_part() {
        return Err(refused(format!(
            "{processor_ref}: the stable parts of the receipts of {ids} differ"
        )));
    }
    Ok(())
}

/// A smoke run's own error, kept under its code, naming the processor and execution.
pub(super) fn run_error(
    processor_ref: &ProcessorRef,
    execution_id: &str,
    error: &ErrorBody,
) -> CanonError {
    let error = error.to_canon_error();
    CanonError::new(
        error.code(),
        format!(
            "{processor_ref} smoke run {execution_id}: {}",
            error.detail()
        ),
    )
}

#[cfg(test)]
mod tests {
    use proctor_contract::{Mode, OutputsIndex, cid};
    use proctor_store::Check;

    use super::*;

    const TEMPLATE: &str = "/artifacts/lane/pr/text-stats-1/{execution_id}";

    fn stats() -> ProcessorRef {
        "text/stats@1".parse().unwrap()
    }

    /// The report of a verified mock run of `text/stats@1` with `outputs`, every check
    /// passed unless named in `failed`.
    fn verified(id: &str, outputs: &[(&str, &[u8])], failed: &[&str]) -> VerifyReport {
        let prefix = WritePrefix::expand(TEMPLATE, id).unwrap();
        let index = OutputsIndex::build(outputs.iter().map(|(name, bytes)| {
            (
                prefix.output_path(name).unwrap().to_string(),
                cid(bytes),
                bytes.len() as u64,
                "text/plain".to_owned(),
            )
        }))
        .unwrap();
        let receipt = Receipt {
            execution_id: id.to_owned(),
            processor_ref: stats(),
            image_digest: "sha256:ab".to_owned(),
            env_fingerprint: "image_digest=sha256:ab;mode=mock".to_owned(),
            inputs_hash: "00".to_owned(),
            hash_schema: "jcs-blake3-v1".to_owned(),
            outputs_index: prefix.index_path(),
            processor_info: "stats".to_owned(),
            usage: Default::default(),
            timestamp_utc: format!("2025-01-01T00:00:0{}Z", id.len() % 10),
            duration_ms: 3,
            mode: Mode::Mock,
            upstream: Vec::new(),
            artifacts_read: Vec::new(),
        };
        let checks = ["receipt.execution", "ledger.execution", "image.pin"]
            .into_iter()
            .map(|name| Check {
                name: name.to_owned(),
                ok: !failed.contains(&name),
                detail: String::new(),
            })
            .collect();
        VerifyReport {
            execution_id: id.to_owned(),
            ok: failed.is_empty(),
            store: "file:///a".to_owned(),
            ledger: "sqlite",
            plan: Some("default".to_owned()),
            checks,
            error: None,
            receipt: Some(receipt),
            index: Some(index),
        }
    }

    #[test]
    fn two_verified_equal_runs_are_stable() {
        let files: &[(&str, &[u8])] = &[("stats.json", b"{}"), ("a/b.txt", b"x")];
        let first = checked_run(&stats(), TEMPLATE, verified("e1", files, &[])).unwrap();
        let second = checked_run(&stats(), TEMPLATE, verified("e22", files, &[])).unwrap();
        assert_eq!(first.outputs[0], ("outputs/a/b.txt".to_owned(), cid(b"x")));
        check_stable(&stats(), &first, &second).unwrap();

        let other_files: &[(&str, &[u8])] = &[("stats.json", b"{ }"), ("a/b.txt", b"x")];
        let other = checked_run(&stats(), TEMPLATE, verified("e3", other_files, &[])).unwrap();
        let err = check_stable(&stats(), &first, &other).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Acceptance);
        assert!(err.message().contains("not byte-stable"), "{err}");

        let mut drifted = checked_run(&stats(), TEMPLATE, verified("e4", files, &[])).unwrap();
        drifted.receipt.image_digest = "sha256:cd".to_owned();
        let err = check_stable(&stats(), &first, &drifted).unwrap_err();
        assert!(err.message().contains("stable parts"), "{err}");
    }

    #[test]
    fn failed_evidence_checks_fail_acceptance_naming_them() {
        let files: &[(&str, &[u8])] = &[("stats.json", b"{}")];
        let err = checked_run(
            &stats(),
            TEMPLATE,
            verified("e1", files, &["receipt.execution", "image.pin"]),
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Acceptance);
        assert_eq!(
            err.message(),
            "acceptance check failed: text/stats@1 execution e1: 2 of 3 evidence checks \
             failed: receipt.execution, image.pin (`proctor verify e1` tells why)"
        );

        let mut unread = verified("e2", files, &[]);
        unread.index = None;
        let err = checked_run(&stats(), TEMPLATE, unread).unwrap_err();
        assert!(err.message().contains("could not be read"), "{err}");

        let elsewhere = "/artifacts/lane/pr/other/{execution_id}";
        let err = checked_run(&stats(), elsewhere, verified("e3", files, &[])).unwrap_err();
        assert!(
            err.message().contains("not under the write prefix"),
            "{err}"
        );
    }

    #[test]
    fn a_run_error_keeps_its_code_and_names_the_run() {
        let body = ErrorBody {
            code: ErrorCode::AdapterInvocation,
            message: "adapter invocation failed: pulling x failed".to_owned(),
        };
        let err = run_error(&stats(), "e1", &body);
        assert_eq!(err.code(), ErrorCode::AdapterInvocation);
        assert_eq!(
            err.message(),
            "adapter invocation failed: text/stats@1 smoke run e1: pulling x failed"
        );
    }
}
