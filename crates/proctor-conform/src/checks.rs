//! The judgement of each check, on bytes already in hand: answers, staged files, logs.
//! Each returns `Ok(evidence)` when the check passes and `Err(evidence)` when it fails;
//! the evidence says what was seen.

use std::collections::BTreeMap;
use std::path::Path;

use proctor_contract::{
    Envelope, ErrorCode, HASH_SCHEMA, Health, OutputEntry, OutputsIndex, ProcessorRef, Receipt,
    RunPayload, SuccessEnvelope, WorldPath, WritePrefix, cid, inputs_hash,
};

use crate::sse;

/// How much of an answer the evidence quotes.
const EXCERPT_CHARS: usize = 240;

/// A check's verdict: the evidence, on the passing or the failing side.
pub(crate) type Verdict = Result<String, String>;

/// The first [`EXCERPT_CHARS`] characters of `bytes` as text, marked when cut, with
/// control characters escaped (`\n`, `\u{1b}`): a processor's answer can neither break
/// the report's lines nor drive the terminal that shows it.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    let (kept, cut) = match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => (&text[..cut], "…"),
        None => (text, ""),
    };
    let mut quoted = String::with_capacity(kept.len() + cut.len());
    for character in kept.chars() {
        if character.is_control() {
            quoted.extend(character.escape_default());
        } else {
            quoted.push(character);
        }
    }
    quoted.push_str(cut);
    quoted
}

/// `/healthz` answered 200 with a health document that is `ok`, names `processor_ref` and
/// reports `expected_digest`.
pub(crate) fn healthz(
    status: u16,
    body: &[u8],
    processor_ref: &ProcessorRef,
    expected_digest: &str,
) -> Verdict {
    let seen = format!("HTTP {status} {}", excerpt(body));
    if status != 200 {
        return Err(format!("expected HTTP 200; got {seen}"));
    }
    let health: Health = serde_json::from_slice(body)
        .map_err(|error| format!("not a health document ({error}): {seen}"))?;
    if !health.ok {
        return Err(format!("ok is false: {seen}"));
    }
    if &health.processor_ref != processor_ref {
        return Err(format!("ref is not {processor_ref}: {seen}"));
    }
    if health.image_digest != expected_digest {
        return Err(format!(
            "image_digest is not the started image {expected_digest}: {seen}"
        ));
    }
    Ok(seen)
}

/// The user an image declares is a user other than root.
pub(crate) fn non_root(image_user: Option<&str>) -> Verdict {
    let Some(user) = image_user else {
        return Err("the image declares no USER, so it runs as root by default".to_owned());
    };
    let name = user.split(':').next().unwrap_or_default();
    if name == "0" || name == "root" {
        return Err(format!("the image declares USER {user}, which is root"));
    }
    Ok(format!("the image declares USER {user}"))
}

/// A `/run` answer is a valid success envelope for `payload`'s execution, in its mode,
/// from `expected_digest`; gives the envelope.
pub(crate) fn success_envelope(
    status: u16,
    body: &[u8],
    payload: &RunPayload,
    expected_digest: &str,
) -> Result<(SuccessEnvelope, String), String> {
    let seen = format!("HTTP {status} {}", excerpt(body));
    let envelope =
        Envelope::from_slice(body).map_err(|error| format!("{error}; answer: {seen}"))?;
    let success = match envelope {
        Envelope::Success(success) => success,
        Envelope::Error(error) => {
            return Err(format!(
                "an error envelope ({}) in {} mode; answer: {seen}",
                error.error.code, payload.mode
            ));
        }
    };
    if status != 200 {
        return Err(format!("a success envelope needs HTTP 200; answer: {seen}"));
    }
    if success.execution_id != payload.execution_id {
        return Err(format!(
            "execution_id is not {}; answer: {seen}",
            payload.execution_id
        ));
    }
    if success.meta.mode != payload.mode {
        return Err(format!("meta.mode is not {}; answer: {seen}", payload.mode));
    }
    if success.meta.image_digest != expected_digest {
        return Err(format!(
            "meta.image_digest is not the started image {expected_digest}; answer: {seen}"
        ));
    }
    if success.memo_source.is_some() {
        return Err(format!(
            "memo_source is the engine's to set; answer: {seen}"
        ));
    }
    let evidence = format!(
        "HTTP 200, {} output(s), {} ms",
        success.outputs.len(),
        success.meta.duration_ms
    );
    Ok((success, evidence))
}

/// The envelope's index sits at `{write_prefix}outputs.json` and its outputs under
/// `{write_prefix}outputs/`.
pub(crate) fn index_under_prefix(envelope: &SuccessEnvelope, prefix: &WritePrefix) -> Verdict {
    let expected = prefix.index_path();
    if envelope.index_path != expected {
        return Err(format!(
            "index_path {} is not {expected}",
            envelope.index_path
        ));
    }
    let outputs_dir = prefix.outputs_dir();
    if let Some(stray) = envelope
        .outputs
        .iter()
        .find(|output| !outputs_dir.covers(&output.path))
    {
        return Err(format!("output {} lies outside {outputs_dir}", stray.path));
    }
    Ok(format!(
        "index at {expected}, {} output(s) under {outputs_dir}",
        envelope.outputs.len()
    ))
}

/// The index file holds the canonical index (compact, sorted by path, no duplicates) of
/// exactly the envelope's outputs.
pub(crate) fn index_sorted_compact(
    path: &WorldPath,
    index: Result<Vec<u8>, String>,
    envelope: &SuccessEnvelope,
) -> Verdict {
    let bytes = index.map_err(|why| format!("{path}: {why}"))?;
    let parsed = OutputsIndex::from_bytes(&bytes)
        .map_err(|error| format!("{error}: {}", excerpt(&bytes)))?;
    if parsed.to_bytes() != bytes {
        return Err(format!(
            "not the compact canonical form (expected {} bytes, got {}): {}",
            parsed.to_bytes().len(),
            bytes.len(),
            excerpt(&bytes)
        ));
    }
    if parsed.outputs != envelope.outputs {
        return Err("the index lists other outputs than the envelope".to_owned());
    }
    Ok(format!(
        "{} bytes, canonical, {} output(s) as in the envelope",
        bytes.len(),
        parsed.outputs.len()
    ))
}

/// Every output's file has the size and content id the envelope gives; `read` reads a
/// staged file.
pub(crate) fn cids_match(
    envelope: &SuccessEnvelope,
    read: impl Fn(&WorldPath) -> Result<Vec<u8>, String>,
) -> Verdict {
    let mut seen = Vec::new();
    for output in &envelope.outputs {
        let bytes = read(&output.path).map_err(|why| format!("{}: {why}", output.path))?;
        let actual = cid(&bytes);
        if actual != output.cid || bytes.len() as u64 != output.size_bytes {
            return Err(format!(
                "{}: the file has {} bytes and cid {actual}; the envelope says {} bytes and {}",
                output.path,
                bytes.len(),
                output.size_bytes,
                output.cid
            ));
        }
        seen.push(format!("{} {}", output.path, output.cid));
    }
    if seen.is_empty() {
        return Ok("no outputs".to_owned());
    }
    Ok(seen.join(", "))
}

/// Both receipt copies exist, are byte-identical, parse as a receipt (every required field,
/// no other) and agree with the run; gives the receipt.
pub(crate) fn receipts_identical(
    at_prefix: Result<Vec<u8>, String>,
    at_execution: Result<Vec<u8>, String>,
    payload: &RunPayload,
    envelope: &SuccessEnvelope,
) -> Result<(Receipt, String), String> {
    let prefix = WritePrefix::from_expanded(&payload.write_prefix).map_err(|e| e.to_string())?;
    let execution =
        WorldPath::execution_receipt(&payload.execution_id).map_err(|e| e.to_string())?;
    let first = at_prefix.map_err(|why| format!("{}: {why}", prefix.receipt_path()))?;
    let second = at_execution.map_err(|why| format!("{execution}: {why}"))?;
    if first != second {
        return Err(format!(
            "{} and {execution} differ: {} / {}",
            prefix.receipt_path(),
            excerpt(&first),
            excerpt(&second)
        ));
    }
    let receipt: Receipt = serde_json::from_slice(&first)
        .map_err(|error| format!("not a receipt ({error}): {}", excerpt(&first)))?;
    let expected_hash = inputs_hash(&payload.inputs).value;
    let disagreements: Vec<String> = [
        ("execution_id", receipt.execution_id == payload.execution_id),
        ("ref", receipt.processor_ref == payload.processor_ref),
        (
            "image_digest",
            receipt.image_digest == envelope.meta.image_digest,
        ),
        (
            "env_fingerprint",
            receipt.env_fingerprint == envelope.meta.env_fingerprint,
        ),
        ("inputs_hash", receipt.inputs_hash == expected_hash),
        ("hash_schema", receipt.hash_schema == HASH_SCHEMA),
        (
            "outputs_index",
            receipt.outputs_index == envelope.index_path,
        ),
        ("mode", receipt.mode == payload.mode),
    ]
    .into_iter()
    .filter(|(_, agrees)| !agrees)
    .map(|(field, _)| field.to_owned())
    .collect();
    if !disagreements.is_empty() {
        return Err(format!(
            "the receipt disagrees with the run in {}: {}",
            disagreements.join(", "),
            excerpt(&first)
        ));
    }
    let evidence = format!(
        "both copies, {} bytes, byte-identical, agree with the run",
        first.len()
    );
    Ok((receipt, evidence))
}

/// An output as it stands apart from its run: its path below the write prefix, its
/// content id, size and type.
fn portable(output: &OutputEntry, prefix: &WritePrefix) -> (String, String, u64, String) {
    let relative = output
        .path
        .as_str()
        .strip_prefix(prefix.as_str())
        .unwrap_or(output.path.as_str());
    (
        relative.to_owned(),
        output.cid.clone(),
        output.size_bytes,
        output.mime.clone(),
    )
}

/// One mock run, for [`byte_stable`].
pub(crate) struct MockRun<'a> {
    pub(crate) prefix: &'a WritePrefix,
    pub(crate) envelope: &'a SuccessEnvelope,
    pub(crate) receipt: &'a Receipt,
}

/// Two mock runs of the same inputs wrote the same outputs, byte for byte, and receipts
/// with the same stable part.
pub(crate) fn byte_stable(first: &MockRun<'_>, second: &MockRun<'_>) -> Verdict {
    let outputs = |run: &MockRun<'_>| -> Vec<_> {
        run.envelope
            .outputs
            .iter()
            .map(|output| portable(output, run.prefix))
            .collect()
    };
    let (a, b) = (outputs(first), outputs(second));
    if a != b {
        let differing: Vec<String> = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x != y)
            .map(|(x, _)| x.0.clone())
            .collect();
        return Err(format!(
            "the outputs differ between two runs ({} and {} outputs; differing: {})",
            a.len(),
            b.len(),
            differing.join(", ")
        ));
    }
    if first.receipt.stable_part() != second.receipt.stable_part() {
        return Err(format!(
            "the receipts' stable parts differ: {} / {}",
            first.receipt.stable_part(),
            second.receipt.stable_part()
        ));
    }
    Ok(format!(
        "two runs, {} output(s) with the same bytes, receipts with the same stable part",
        a.len()
    ))
}

/// A bad request and the refusal the contract gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadRequest {
    /// What is wrong, as the evidence names it.
    pub(crate) case: &'static str,
    /// The content type sent.
    pub(crate) content_type: &'static str,
    /// The body sent.
    pub(crate) body: Vec<u8>,
    /// The HTTP status expected.
    pub(crate) status: u16,
    /// The code expected.
    pub(crate) code: ErrorCode,
    /// The execution id the envelope must carry, when the body gives a usable one.
    pub(crate) execution_id: Option<String>,
}

/// The bad requests `errors.canonical` sends, built from a valid `payload`.
pub(crate) fn bad_requests(payload: &RunPayload) -> Vec<BadRequest> {
    let valid = serde_json::to_value(payload).expect("a payload serializes");
    let with = |key: &str, value: serde_json::Value| {
        let mut changed = valid.clone();
        changed[key] = value;
        serde_json::to_vec(&changed).expect("a payload serializes")
    };
    let id = Some(payload.execution_id.clone());
    let request = |case, content_type, body, status, code, execution_id| BadRequest {
        case,
        content_type,
        body,
        status,
        code,
        execution_id,
    };
    vec![
        request(
            "malformed_json",
            "application/json",
            b"{\"schema\": \"v1\", ".to_vec(),
            400,
            ErrorCode::Inputs,
            None,
        ),
        request(
            "wrong_content_type",
            "text/plain",
            serde_json::to_vec(&valid).expect("a payload serializes"),
            415,
            ErrorCode::Inputs,
            id.clone(),
        ),
        request(
            "wrong_schema",
            "application/json",
            with("schema", "v0".into()),
            400,
            ErrorCode::Inputs,
            id.clone(),
        ),
        request(
            "bad_mode",
            "application/json",
            with("mode", "dry".into()),
            400,
            ErrorCode::Inputs,
            id.clone(),
        ),
        request(
            "other_ref",
            "application/json",
            with("ref", "conform/other@1".into()),
            400,
            ErrorCode::Inputs,
            id.clone(),
        ),
        request(
            "inputs_not_an_object",
            "application/json",
            with("inputs", serde_json::json!([1])),
            400,
            ErrorCode::Inputs,
            id.clone(),
        ),
        request(
            "bad_execution_id",
            "application/json",
            with("execution_id", "../escape".into()),
            400,
            ErrorCode::Inputs,
            None,
        ),
        request(
            "write_prefix_outside_artifacts",
            "application/json",
            with("write_prefix", "/streams/conform/".into()),
            400,
            ErrorCode::WritePrefix,
            id.clone(),
        ),
        request(
            "write_prefix_unknown_placeholder",
            "application/json",
            with("write_prefix", "/artifacts/conform/{run_id}/".into()),
            400,
            ErrorCode::WritePrefix,
            id,
        ),
    ]
}

/// The answer to a bad request is the refusal the contract gives it: its status and a
/// valid error envelope with its code (for the execution it names, when it names one).
pub(crate) fn refusal(request: &BadRequest, status: u16, body: &[u8]) -> Verdict {
    let seen = format!("HTTP {status} {}", excerpt(body));
    let wanted = format!("HTTP {} {}", request.status, request.code);
    let envelope = match Envelope::from_slice(body) {
        Ok(Envelope::Error(envelope)) => envelope,
        Ok(Envelope::Success(_)) => {
            return Err(format!(
                "{}: expected {wanted}, got a success: {seen}",
                request.case
            ));
        }
        Err(error) => {
            return Err(format!(
                "{}: expected {wanted}, got {error}: {seen}",
                request.case
            ));
        }
    };
    if status != request.status || envelope.error.code != request.code {
        return Err(format!("{}: expected {wanted}, got {seen}", request.case));
    }
    if let Some(id) = &request.execution_id
        && &envelope.execution_id != id
    {
        return Err(format!(
            "{}: the envelope is for execution `{}`, not {id}: {seen}",
            request.case, envelope.execution_id
        ));
    }
    Ok(format!("{}: {wanted}", request.case))
}

/// A `/run-stream` answer is a valid event stream of `progress` events, each a JSON object,
/// ending in one `done` event whose data is a valid success envelope for `payload`'s run.
pub(crate) fn stream_valid(
    status: u16,
    body: &[u8],
    payload: &RunPayload,
    expected_digest: &str,
) -> Verdict {
    if status != 200 {
        return Err(format!(
            "expected HTTP 200; got HTTP {status} {}",
            excerpt(body)
        ));
    }
    let events = sse::parse(body).map_err(|why| format!("{why}: {}", excerpt(body)))?;
    let Some((done, progress)) = events.split_last() else {
        return Err(format!("no event: {}", excerpt(body)));
    };
    if let Some(other) = progress.iter().find(|event| {
        event.name != "progress"
            || !serde_json::from_str::<serde_json::Value>(&event.data).is_ok_and(|v| v.is_object())
    }) {
        return Err(format!(
            "before `done`, only `progress` events with a JSON object are expected; got `{}`: {}",
            other.name,
            excerpt(other.data.as_bytes())
        ));
    }
    if done.name != "done" {
        return Err(format!(
            "the last event is `{}`, not `done`: {}",
            done.name,
            excerpt(done.data.as_bytes())
        ));
    }
    success_envelope(200, done.data.as_bytes(), payload, expected_digest)?;
    Ok(format!(
        "{} progress event(s), then `done` with a success envelope",
        progress.len()
    ))
}

/// Where each canary value turned up among `places` (name → bytes): none, or the list.
pub(crate) fn canaries_found(
    canaries: &BTreeMap<String, String>,
    places: &[(String, Vec<u8>)],
) -> Verdict {
    let mut found = Vec::new();
    for (variable, value) in canaries {
        for (place, bytes) in places {
            if contains(bytes, value.as_bytes()) {
                found.push(format!("{variable}'s value in {place}"));
            }
        }
    }
    let names: Vec<&str> = canaries.keys().map(String::as_str).collect();
    if found.is_empty() {
        Ok(format!(
            "canary values of {} appear in none of {} place(s) read: {}",
            names.join(", "),
            places.len(),
            places
                .iter()
                .map(|(place, _)| place.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(format!("leaked: {}", found.join("; ")))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Reads a staged regular file, never through a link.
pub(crate) fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    let metadata = std::fs::symlink_metadata(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => "absent".to_owned(),
        _ => error.to_string(),
    })?;
    if !metadata.is_file() {
        return Err(format!("not a regular file ({:?})", metadata.file_type()));
    }
    std::fs::read(path).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use proctor_contract::{Mode, SuccessMeta};
    use serde_json::json;

    use super::*;

    const DIGEST: &str = "sha256:ab";

    fn payload(execution_id: &str) -> RunPayload {
        serde_json::from_value(json!({
            "schema": "v1",
            "execution_id": execution_id,
            "ref": "text/stats@1",
            "mode": "mock",
            "inputs": {"schema": "v1", "text": "a b"},
            "write_prefix": format!("/artifacts/conform/{execution_id}/"),
        }))
        .unwrap()
    }

    fn envelope(execution_id: &str, outputs: &[(&str, &[u8])]) -> SuccessEnvelope {
        let prefix =
            WritePrefix::from_expanded(&format!("/artifacts/conform/{execution_id}/")).unwrap();
        let index = OutputsIndex::build(outputs.iter().map(|(path, bytes)| {
            (
                format!("{}{path}", prefix.outputs_dir()),
                cid(bytes),
                bytes.len() as u64,
                "text/plain".to_owned(),
            )
        }))
        .unwrap();
        match Envelope::success(
            execution_id,
            index.outputs,
            prefix.index_path(),
            SuccessMeta {
                image_digest: DIGEST.to_owned(),
                env_fingerprint: "mode=mock".to_owned(),
                duration_ms: 1,
                mode: Mode::Mock,
            },
        ) {
            Envelope::Success(success) => success,
            Envelope::Error(_) => unreachable!(),
        }
    }

    fn receipt(payload: &RunPayload, envelope: &SuccessEnvelope) -> Receipt {
        Receipt {
            execution_id: payload.execution_id.clone(),
            processor_ref: payload.processor_ref.clone(),
            image_digest: DIGEST.to_owned(),
            env_fingerprint: envelope.meta.env_fingerprint.clone(),
            inputs_hash: inputs_hash(&payload.inputs).value,
            hash_schema: HASH_SCHEMA.to_owned(),
            outputs_index: envelope.index_path.clone(),
            processor_info: "test".to_owned(),
            usage: Default::default(),
            timestamp_utc: "2026-01-01T00:00:00Z".to_owned(),
            duration_ms: 1,
            mode: Mode::Mock,
            upstream: Vec::new(),
            artifacts_read: Vec::new(),
        }
    }

    #[test]
    fn excerpts_escape_control_characters_and_mark_the_cut() {
        assert_eq!(excerpt(b"ok\x1b[2J\nnext\n"), "ok\\u{1b}[2J\\nnext");
        let long = "é".repeat(EXCERPT_CHARS + 1);
        let quoted = excerpt(long.as_bytes());
        assert_eq!(quoted.chars().count(), EXCERPT_CHARS + 1);
        assert!(quoted.ends_with("é…"));
    }

    #[test]
    fn the_index_must_be_canonical_and_list_the_envelopes_outputs() {
        let envelope = envelope("e1", &[("b.txt", b"b"), ("a.txt", b"a")]);
        let canonical = OutputsIndex {
            outputs: envelope.outputs.clone(),
        }
        .to_bytes();
        assert!(
            index_sorted_compact(&envelope.index_path, Ok(canonical.clone()), &envelope).is_ok()
        );

        let pretty = serde_json::to_vec_pretty(&OutputsIndex {
            outputs: envelope.outputs.clone(),
        })
        .unwrap();
        let error = index_sorted_compact(&envelope.index_path, Ok(pretty), &envelope).unwrap_err();
        assert!(error.contains("not the compact canonical form"), "{error}");

        let mut reversed = envelope.outputs.clone();
        reversed.reverse();
        let unsorted = OutputsIndex { outputs: reversed }.to_bytes();
        let error =
            index_sorted_compact(&envelope.index_path, Ok(unsorted), &envelope).unwrap_err();
        assert!(error.contains("not sorted"), "{error}");

        let other = OutputsIndex {
            outputs: envelope.outputs[..1].to_vec(),
        }
        .to_bytes();
        let error = index_sorted_compact(&envelope.index_path, Ok(other), &envelope).unwrap_err();
        assert!(error.contains("other outputs"), "{error}");

        let error = index_sorted_compact(&envelope.index_path, Err("absent".to_owned()), &envelope)
            .unwrap_err();
        assert!(error.ends_with("outputs.json: absent"), "{error}");
    }

    #[test]
    fn the_index_and_outputs_must_lie_under_the_write_prefix() {
        let envelope = envelope("e1", &[("a.txt", b"a")]);
        let prefix = WritePrefix::from_expanded("/artifacts/conform/e1/").unwrap();
        assert!(index_under_prefix(&envelope, &prefix).is_ok());
        let elsewhere = WritePrefix::from_expanded("/artifacts/elsewhere/").unwrap();
        let error = index_under_prefix(&envelope, &elsewhere).unwrap_err();
        assert!(
            error.contains("is not /artifacts/elsewhere/outputs.json"),
            "{error}"
        );
        let mut stray = envelope.clone();
        stray.index_path = elsewhere.index_path();
        let error = index_under_prefix(&stray, &elsewhere).unwrap_err();
        assert!(
            error.contains("lies outside /artifacts/elsewhere/outputs/"),
            "{error}"
        );
    }

    #[test]
    fn every_output_must_have_its_size_and_cid() {
        let envelope = envelope("e1", &[("a.txt", b"alpha")]);
        assert!(cids_match(&envelope, |_| Ok(b"alpha".to_vec())).is_ok());
        let error = cids_match(&envelope, |_| Ok(b"alphA".to_vec())).unwrap_err();
        assert!(error.contains("the file has 5 bytes and cid"), "{error}");
        let error = cids_match(&envelope, |_| Err("absent".to_owned())).unwrap_err();
        assert!(error.ends_with("a.txt: absent"), "{error}");
    }

    #[test]
    fn receipts_must_be_identical_complete_and_agree_with_the_run() {
        let payload = payload("e1");
        let envelope = envelope("e1", &[("a.txt", b"a")]);
        let bytes = receipt(&payload, &envelope).to_bytes();
        assert!(
            receipts_identical(Ok(bytes.clone()), Ok(bytes.clone()), &payload, &envelope).is_ok()
        );

        let mut other = receipt(&payload, &envelope);
        other.duration_ms = 2;
        let error =
            receipts_identical(Ok(bytes.clone()), Ok(other.to_bytes()), &payload, &envelope)
                .unwrap_err();
        assert!(error.contains("differ"), "{error}");

        let error =
            receipts_identical(Ok(bytes.clone()), Err("absent".into()), &payload, &envelope)
                .unwrap_err();
        assert!(
            error.starts_with("/artifacts/execution/e1/receipt.json: absent"),
            "{error}"
        );

        let error = receipts_identical(Ok(b"{}".to_vec()), Ok(b"{}".to_vec()), &payload, &envelope)
            .unwrap_err();
        assert!(error.contains("not a receipt (missing field"), "{error}");

        let mut wrong = receipt(&payload, &envelope);
        wrong.inputs_hash = "00".to_owned();
        wrong.mode = Mode::Real;
        let wrong = wrong.to_bytes();
        let error =
            receipts_identical(Ok(wrong.clone()), Ok(wrong), &payload, &envelope).unwrap_err();
        assert!(
            error.contains("disagrees with the run in inputs_hash, mode"),
            "{error}"
        );
    }

    #[test]
    fn two_mock_runs_must_write_the_same_bytes() {
        let (p1, p2) = (payload("e1"), payload("e2"));
        let (e1, e2) = (
            envelope("e1", &[("a.txt", b"a")]),
            envelope("e2", &[("a.txt", b"a")]),
        );
        let (r1, r2) = (receipt(&p1, &e1), receipt(&p2, &e2));
        let prefix =
            |id: &str| WritePrefix::from_expanded(&format!("/artifacts/conform/{id}/")).unwrap();
        let (x1, x2) = (prefix("e1"), prefix("e2"));
        let run = |prefix, envelope, receipt| MockRun {
            prefix,
            envelope,
            receipt,
        };
        assert!(byte_stable(&run(&x1, &e1, &r1), &run(&x2, &e2, &r2)).is_ok());
        let e3 = envelope("e2", &[("a.txt", b"b")]);
        let error = byte_stable(&run(&x1, &e1, &r1), &run(&x2, &e3, &r2)).unwrap_err();
        assert!(error.contains("differing: outputs/a.txt"), "{error}");
    }

    #[test]
    fn refusals_must_carry_their_status_and_code() {
        let payload = payload("e1");
        let requests = bad_requests(&payload);
        let wrong_schema = requests.iter().find(|r| r.case == "wrong_schema").unwrap();
        let answer = |code, id: &str| {
            Envelope::error(
                id,
                &proctor_contract::CanonError::new(code, "no"),
                Mode::Mock,
                0,
                None,
            )
            .to_json_line()
            .into_bytes()
        };
        assert!(refusal(wrong_schema, 400, &answer(ErrorCode::Inputs, "e1")).is_ok());
        for (status, body, why) in [
            (
                400,
                answer(ErrorCode::WritePrefix, "e1"),
                "expected HTTP 400 ERR_INPUTS",
            ),
            (
                422,
                answer(ErrorCode::Inputs, "e1"),
                "expected HTTP 400 ERR_INPUTS",
            ),
            (400, answer(ErrorCode::Inputs, "e2"), "not e1"),
            (
                400,
                b"Failed to parse the request body as JSON".to_vec(),
                "invalid envelope",
            ),
        ] {
            let error = refusal(wrong_schema, status, &body).unwrap_err();
            assert!(error.contains(why), "{error}");
        }
        let prefix = requests
            .iter()
            .find(|r| r.case == "write_prefix_outside_artifacts")
            .unwrap();
        assert_eq!(prefix.code, ErrorCode::WritePrefix);
    }

    #[test]
    fn a_stream_must_end_in_the_envelope() {
        let payload = payload("e1");
        let envelope = Envelope::Success(envelope("e1", &[])).to_json_line();
        let good = format!(
            "event: progress\ndata: {{\"stage\":\"accepted\"}}\n\n:\n\nevent: done\ndata: {envelope}\n\n"
        );
        assert!(stream_valid(200, good.as_bytes(), &payload, DIGEST).is_ok());
        for (body, why) in [
            (
                format!("event: done\ndata: {envelope}\n"),
                "ends inside an event",
            ),
            ("event: progress\ndata: {}\n\n".to_owned(), "not `done`"),
            (
                format!("event: done\ndata: {envelope}\n\nevent: progress\ndata: {{}}\n\n"),
                "only `progress`",
            ),
            (envelope.clone(), "unknown field"),
        ] {
            let error = stream_valid(200, body.as_bytes(), &payload, DIGEST).unwrap_err();
            assert!(error.contains(why), "{body}: {error}");
        }
    }

    #[test]
    fn health_must_report_the_started_image() {
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let body = serde_json::to_vec(&Health::ready(DIGEST, processor_ref.clone())).unwrap();
        assert!(healthz(200, &body, &processor_ref, DIGEST).is_ok());
        let error = healthz(200, &body, &processor_ref, "sha256:cd").unwrap_err();
        assert!(
            error.contains("is not the started image sha256:cd"),
            "{error}"
        );
        let error = healthz(200, b"ok", &processor_ref, DIGEST).unwrap_err();
        assert!(error.contains("not a health document"), "{error}");
    }

    #[test]
    fn root_and_no_user_are_refused() {
        assert!(non_root(Some("65532:65532")).is_ok());
        for user in [None, Some("0"), Some("root:root"), Some("0:0")] {
            assert!(non_root(user).is_err(), "{user:?}");
        }
    }

    #[test]
    fn canaries_are_found_wherever_they_are() {
        let canaries = BTreeMap::from([("API_KEY".to_owned(), "canary-123".to_owned())]);
        let clean = [("envelope".to_owned(), b"no secret here".to_vec())];
        assert!(canaries_found(&canaries, &clean).is_ok());
        let leaky = [
            ("envelope".to_owned(), b"clean".to_vec()),
            ("log".to_owned(), b"key=canary-123".to_vec()),
        ];
        assert_eq!(
            canaries_found(&canaries, &leaky).unwrap_err(),
            "leaked: API_KEY's value in log"
        );
    }
}
