//! What the unit tests share: a run of a small processor with its own staging area.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proctor_contract::{Mode, RunPayload};
use proctor_registry::ProcessorSpec;
use serde_json::json;

use crate::{ImageSource, Invocation, ResponseLimits, Staging};

/// The execution id of every [`invocation`].
pub(crate) const EXECUTION_ID: &str = "e1";

/// A `text/stats@1` run in `mode` from local image `sha256:ab`, with one secret in its
/// environment, writing under `/artifacts/o/e1/`.
pub(crate) fn invocation(mode: Mode) -> Invocation {
    let spec: ProcessorSpec = serde_yaml_ng::from_str(
        r#"
ref: text/stats@1
description: d
build: {context: ".", dockerfile: Dockerfile, port: 8000, cargo_package: processor-text-stats}
image: {index: null, platforms: {amd64: null, arm64: null}}
runtime: {cpu: 0.5, memory_gb: 0.25, timeout_s: 30, gpu: null}
inputs: {}
outputs: []
examples: {}
"#,
    )
    .unwrap();
    Invocation {
        payload: RunPayload {
            schema: "v1".into(),
            execution_id: EXECUTION_ID.into(),
            processor_ref: spec.processor_ref.clone(),
            mode,
            inputs: json!({}),
            write_prefix: "/artifacts/o/e1/".into(),
            upstream: Vec::new(),
        },
        spec,
        image: ImageSource::Local {
            image_id: "sha256:ab".into(),
        },
        staging: Arc::new(Staging::create(EXECUTION_ID).unwrap()),
        timeout: Duration::from_secs(5),
        env: BTreeMap::from([("OPENAI_API_KEY".into(), "sk-test-secret".into())]),
        options: json!(null),
        limits: ResponseLimits::default(),
    }
}
