//! Shared helpers: processor specs with fake pins, and closed ports.

use proctor_registry::ProcessorSpec;

/// A fake but well-formed digest (hex, not a placeholder).
pub(crate) const DIGEST: &str = "3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";
/// Another one, for a deployment that drifted.
pub(crate) const OTHER_DIGEST: &str =
    "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";

/// The pinned reference of `digest` in the test registry.
pub(crate) fn pinned(image_name: &str, digest: &str) -> String {
    format!("127.0.0.1:5000/acme/proctor/{image_name}@sha256:{digest}")
}

/// A registry entry like the shipped `llm/litellm@1`, for `processor_ref`, pinned to
/// `digest` for both platforms (or unpinned).
pub(crate) fn spec(processor_ref: &str, digest: Option<&str>) -> ProcessorSpec {
    let image_name = processor_ref.split('@').next().unwrap().replace('/', "-");
    let pin = |digest: Option<&str>| digest.map_or("null".to_owned(), |d| pinned(&image_name, d));
    let yaml = format!(
        r#"ref: {processor_ref}
description: Chat completion through any OpenAI-compatible endpoint.
build: {{context: ".", dockerfile: Dockerfile, port: 8000, cargo_package: processor-llm-litellm}}
image: {{index: {index}, platforms: {{amd64: {amd64}, arm64: {arm64}}}}}
runtime: {{cpu: 1.0, memory_gb: 0.5, timeout_s: 60, gpu: null}}
secrets: {{required: [OPENAI_API_KEY]}}
env: [OPENAI_BASE_URL]
inputs:
  type: object
  required: [schema, messages]
  properties:
    schema: {{const: v1}}
    messages: {{type: array}}
outputs:
  - {{path: text/response.txt, mime: text/plain}}
  - {{path: metadata.json, mime: application/json}}
examples:
  smoke: {{description: One question., inputs: {{schema: v1, messages: [{{role: user, content: hi}}]}}}}
"#,
        index = pin(digest),
        amd64 = pin(digest),
        arm64 = pin(digest),
    );
    serde_yaml_ng::from_str(&yaml).unwrap()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
