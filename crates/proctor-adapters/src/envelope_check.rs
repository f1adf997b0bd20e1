//! What an adapter checks in a processor's answer before handing it on.
//!
//! The answer must be a valid envelope for this execution. A success must put its index at
//! `{write_prefix}outputs.json`, list outputs under `{write_prefix}outputs/` only, and name
//! the image the adapter started. Error envelopes pass through unchanged. The adapter never
//! looks at output files themselves. Every adapter applies these same checks; only the code
//! of a refusal differs (`ERR_ADAPTER_INVOCATION` locally, `ERR_MODAL_INVOCATION` on Modal),
//! while a different image is always `ERR_IMAGE_DRIFT`.

use proctor_contract::{CanonError, Envelope, ErrorCode, RunPayload, WritePrefix};

/// Validates `body` (answered with HTTP `status`) as the envelope of `payload`'s run from
/// the image `expected_digest`; an answer that fails a check is refused with `refusal`.
pub(crate) fn check_envelope(
    status: u16,
    body: &[u8],
    payload: &RunPayload,
    expected_digest: &str,
    refusal: ErrorCode,
) -> Result<Envelope, CanonError> {
    let refused = |why: String| CanonError::new(refusal, why);
    let envelope = Envelope::from_slice(body).map_err(|error| match error.code() {
        // Two outputs that are one world path after canonicalization keep their own code.
        ErrorCode::OutputDuplicate => error,
        _ => refused(format!(
            "processor answered HTTP {status} without a valid envelope: {}",
            error.detail()
        )),
    })?;
    if envelope.execution_id() != payload.execution_id {
        return Err(refused(format!(
            "envelope is for execution {}, expected {}",
            envelope.execution_id(),
            payload.execution_id
        )));
    }
    let Envelope::Success(success) = &envelope else {
        return Ok(envelope);
    };
    let prefix = WritePrefix::from_expanded(&payload.write_prefix)?;
    let expected_index = prefix.index_path();
    if success.index_path != expected_index {
        return Err(refused(format!(
            "invalid index_path root: {} is not {expected_index}",
            success.index_path
        )));
    }
    let outputs_dir = prefix.outputs_dir();
    if let Some(stray) = success
        .outputs
        .iter()
        .find(|output| !outputs_dir.covers(&output.path))
    {
        return Err(refused(format!(
            "output {} lies outside {outputs_dir}",
            stray.path
        )));
    }
    if success.meta.image_digest != expected_digest {
        return Err(CanonError::new(
            ErrorCode::ImageDrift,
            format!(
                "processor reports {}, the adapter started {expected_digest}",
                success.meta.image_digest
            ),
        ));
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use proctor_contract::Mode;
    use serde_json::{Value, json};

    use super::*;

    const DIGEST: &str = "sha256:ab";

    fn payload() -> RunPayload {
        RunPayload {
            schema: "v1".into(),
            execution_id: "e1".into(),
            processor_ref: "text/stats@1".parse().unwrap(),
            mode: Mode::Mock,
            inputs: json!({}),
            write_prefix: "/artifacts/o/e1/".into(),
            upstream: Vec::new(),
        }
    }

    fn success() -> Value {
        json!({
            "status": "success",
            "execution_id": "e1",
            "outputs": [{"path": "/artifacts/o/e1/outputs/a.txt", "cid": "b3:00", "size_bytes": 1, "mime": "text/plain"}],
            "index_path": "/artifacts/o/e1/outputs.json",
            "meta": {"image_digest": DIGEST, "env_fingerprint": "mode=mock", "duration_ms": 1, "mode": "mock"}
        })
    }

    fn check(value: &Value) -> Result<Envelope, CanonError> {
        check_envelope(
            200,
            &serde_json::to_vec(value).unwrap(),
            &payload(),
            DIGEST,
            ErrorCode::AdapterInvocation,
        )
    }

    #[test]
    fn accepts_a_matching_success_and_passes_errors_through() {
        assert!(matches!(check(&success()), Ok(Envelope::Success(_))));
        let error = json!({
            "status": "error",
            "execution_id": "e1",
            "error": {"code": "ERR_PROVIDER", "message": "provider failed: upstream 500"},
            "meta": {"duration_ms": 3, "mode": "mock"}
        });
        let passed = check(&error).unwrap();
        assert_eq!(serde_json::to_value(&passed).unwrap(), error);
    }

    #[test]
    fn refuses_non_envelopes() {
        for body in [&b"<html>"[..], b"{}", b""] {
            let err = check_envelope(200, body, &payload(), DIGEST, ErrorCode::AdapterInvocation)
                .unwrap_err();
            assert_eq!(err.code(), ErrorCode::AdapterInvocation);
            assert!(
                err.message()
                    .starts_with("adapter invocation failed: processor answered HTTP 200"),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_a_foreign_index_path_or_output() {
        let mut moved = success();
        moved["index_path"] = json!("/artifacts/elsewhere/outputs.json");
        let err = check(&moved).unwrap_err();
        assert_eq!(err.code(), ErrorCode::AdapterInvocation);
        assert!(err.message().contains("invalid index_path root"), "{err}");

        let mut stray = success();
        stray["outputs"][0]["path"] = json!("/artifacts/o/e1/receipt.json");
        assert!(
            check(&stray)
                .unwrap_err()
                .message()
                .contains("lies outside")
        );

        let mut other_run = success();
        other_run["execution_id"] = json!("e2");
        assert!(
            check(&other_run)
                .unwrap_err()
                .message()
                .contains("execution e2")
        );
    }

    #[test]
    fn a_different_image_is_drift() {
        let mut drifted = success();
        drifted["meta"]["image_digest"] = json!("sha256:cd");
        let err = check(&drifted).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ImageDrift);
        assert!(err.message().contains("sha256:cd"), "{err}");
    }
}
