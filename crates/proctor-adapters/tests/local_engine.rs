//! The local adapter against the real Docker engine (and, for pins, the registry at
//! 127.0.0.1:5000), with the test-only `testing/faulty@1` processor: every failure path ends
//! in its canonical error and leaves no container behind.

mod support;

use std::time::Duration;

use bollard::query_parameters::{PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use proctor_adapters::{Adapter, ImageSource, LocalAdapter};
use proctor_contract::{CanonError, Envelope, ErrorCode, Mode, OutputsIndex};
use serde_json::json;
use support::{TestRun, faulty_dir, faulty_image, load_spec, workspace_root};

/// Runs the faulty processor's `fault` in mock mode from the shared image.
async fn run_fault(run: &TestRun, fault: &str) -> Result<Envelope, CanonError> {
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Local { image_id: faulty_image().await };
    let invocation = run.invocation(&spec, image, Mode::Mock, json!({"schema": "v1", "fault": fault}));
    LocalAdapter::connect().await.unwrap().invoke(&invocation).await
}

async fn assert_fault(fault: &str, code: ErrorCode, fragment: &str) {
    let run = TestRun::new().await;
    let error = run_fault(&run, fault).await.unwrap_err();
    assert_eq!(error.code(), code, "{fault}: {error}");
    assert!(error.message().contains(fragment), "{fault}: {error}");
    assert!(run.containers().await.is_empty(), "{fault}: a container is left");
}

#[tokio::test]
async fn well_behaved_mock_run_succeeds_and_writes_its_index() {
    let run = TestRun::new().await;
    let Envelope::Success(success) = run_fault(&run, "none").await.unwrap() else { panic!("not a success") };
    assert_eq!(success.meta.image_digest, faulty_image().await);
    let index = std::fs::read(run.host_path(success.index_path.as_str())).unwrap();
    assert_eq!(OutputsIndex::from_bytes(&index).unwrap().outputs, []);
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn bad_index_path_is_an_adapter_invocation_error() {
    assert_fault("bad_index_path", ErrorCode::AdapterInvocation, "invalid index_path root").await;
}

#[tokio::test]
async fn non_json_answer_is_an_adapter_invocation_error() {
    assert_fault("non_json", ErrorCode::AdapterInvocation, "without a valid envelope").await;
}

#[tokio::test]
async fn wrong_digest_is_image_drift() {
    assert_fault("wrong_digest", ErrorCode::ImageDrift, "image digest mismatch").await;
}

#[tokio::test]
async fn crash_fails_fast_with_exit_code_and_logs() {
    let run = TestRun::new().await;
    let error = run_fault(&run, "crash").await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::AdapterInvocation, "{error}");
    assert!(error.message().contains("exited with code 70"), "{error}");
    assert!(error.message().contains("last log lines:"), "{error}");
    assert!(error.message().contains("with fault crash"), "{error}");
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn processor_error_envelopes_pass_through() {
    let run = TestRun::new().await;
    let Envelope::Error(error) = run_fault(&run, "provider_error").await.unwrap() else {
        panic!("not an error envelope")
    };
    assert_eq!(error.error.code, ErrorCode::Provider);
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn hang_past_the_timeout_is_a_timeout() {
    let run = TestRun::new().await;
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Local { image_id: faulty_image().await };
    let mut invocation = run.invocation(&spec, image, Mode::Mock, json!({"schema": "v1", "fault": "hang"}));
    invocation.timeout = Duration::from_secs(2);
    let error = LocalAdapter::connect().await.unwrap().invoke(&invocation).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Timeout, "{error}");
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn dropping_a_run_removes_its_hardened_container() {
    let run = TestRun::new().await;
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Local { image_id: faulty_image().await };
    let invocation = run.invocation(&spec, image, Mode::Mock, json!({"schema": "v1", "fault": "hang"}));
    let adapter = LocalAdapter::connect().await.unwrap();
    let task = tokio::spawn(async move { adapter.invoke(&invocation).await });
    assert!(run.await_container_count(1).await, "the run's container never appeared");

    let summary = &run.containers().await[0];
    let details = run.docker.inspect_container(summary.id.as_deref().unwrap(), None).await.unwrap();
    let host = details.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(host.security_opt.as_deref(), Some(&["no-new-privileges".to_owned()][..]));
    assert!(host.port_bindings.unwrap_or_default().is_empty());
    assert_eq!(details.config.unwrap().user.as_deref(), Some("65532:65532"));

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(run.await_container_count(0).await, "the dropped run left its container");
}

#[tokio::test]
async fn build_path_runs_by_image_id() {
    let run = TestRun::new().await;
    let cached = faulty_image().await;
    let dir = faulty_dir();
    let spec = load_spec(&dir);
    let image = ImageSource::Build { processor_dir: dir, workspace_root: workspace_root() };
    let invocation = run.invocation(&spec, image, Mode::Mock, json!({"schema": "v1"}));
    let Envelope::Success(success) = LocalAdapter::connect().await.unwrap().invoke(&invocation).await.unwrap()
    else {
        panic!("not a success")
    };
    assert!(success.meta.image_digest.starts_with("sha256:"));
    assert_eq!(success.meta.image_digest, cached, "an unchanged build reuses the cached image");
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn real_mode_talks_over_loopback_bridge_and_host_networks() {
    for options in [json!({}), json!({"network": "host"})] {
        let run = TestRun::new().await;
        let spec = load_spec(&faulty_dir());
        let image = ImageSource::Local { image_id: faulty_image().await };
        let mut invocation = run.invocation(&spec, image, Mode::Real, json!({"schema": "v1"}));
        let mut merged = invocation.options.clone();
        merged.as_object_mut().unwrap().extend(options.as_object().unwrap().clone());
        invocation.options = merged;
        let envelope = LocalAdapter::connect().await.unwrap().invoke(&invocation).await;
        assert!(matches!(envelope, Ok(Envelope::Success(_))), "{options}: {envelope:?}");
        assert!(run.containers().await.is_empty());
    }
}

#[tokio::test]
async fn mock_refuses_a_network_option_before_any_container() {
    let run = TestRun::new().await;
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Local { image_id: faulty_image().await };
    let mut invocation = run.invocation(&spec, image, Mode::Mock, json!({"schema": "v1"}));
    invocation.options["network"] = json!("host");
    let error = LocalAdapter::connect().await.unwrap().invoke(&invocation).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::AdapterInvocation);
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn unpinned_and_absent_pins_fail_before_any_container() {
    let run = TestRun::new().await;
    let spec = load_spec(&faulty_dir());
    let adapter = LocalAdapter::connect().await.unwrap();

    let unpinned = ImageSource::Pinned { reference: "127.0.0.1:5000/proctor-test/faulty:latest".into() };
    let invocation = run.invocation(&spec, unpinned, Mode::Mock, json!({"schema": "v1"}));
    let error = adapter.invoke(&invocation).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::ImageUnpinned, "{error}");
    assert!(error.message().starts_with("image not pinned"));

    let digest = unpushed_digest(&run.label);
    let absent = ImageSource::Pinned { reference: format!("127.0.0.1:5000/proctor-test/absent@{digest}") };
    let invocation = run.invocation(&spec, absent, Mode::Mock, json!({"schema": "v1"}));
    let error = adapter.invoke(&invocation).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::AdapterInvocation, "{error}");
    assert!(error.message().contains("pulling"), "{error}");
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn pinned_image_is_pulled_by_digest_and_run() {
    let run = TestRun::new().await;
    let image_id = faulty_image().await;
    let repository = "127.0.0.1:5000/proctor-test/faulty";
    let tag_options = TagImageOptionsBuilder::default().repo(repository).tag(&run.label).build();
    run.docker.tag_image(&image_id, Some(tag_options)).await.unwrap();
    let push_options = PushImageOptionsBuilder::default().tag(&run.label).build();
    let pushed: Vec<_> = run.docker.push_image(repository, Some(push_options), None).collect().await;
    pushed.into_iter().for_each(|item| {
        item.unwrap();
    });
    let inspected = run.docker.inspect_image(&image_id).await.unwrap();
    let reference = inspected
        .repo_digests
        .unwrap_or_default()
        .into_iter()
        .find(|repo_digest| repo_digest.starts_with(&format!("{repository}@")))
        .expect("the push recorded a digest");
    let digest = reference.split_once('@').unwrap().1.to_owned();
    // Drop the local references to that repository so the adapter must pull by digest; the
    // image itself stays (other tests share it under its own tag).
    let untag = RemoveImageOptionsBuilder::default().noprune(true).build();
    let tag = format!("{repository}:{}", run.label);
    run.docker.remove_image(&tag, Some(untag.clone()), None).await.unwrap();
    // Some engines keep the digest reference after the tag goes; drop it too if so.
    let _ = run.docker.remove_image(&reference, Some(untag), None).await;
    assert!(run.docker.inspect_image(&reference).await.is_err(), "the digest is still known locally");

    let spec = load_spec(&faulty_dir());
    let invocation = run.invocation(&spec, ImageSource::Pinned { reference }, Mode::Mock, json!({"schema": "v1"}));
    let envelope = LocalAdapter::connect().await.unwrap().invoke(&invocation).await.unwrap();
    let Envelope::Success(success) = envelope else { panic!("not a success") };
    assert_eq!(success.meta.image_digest, digest);
    assert!(run.containers().await.is_empty());
}

/// A well-formed digest nobody pushed.
fn unpushed_digest(seed: &str) -> String {
    let hex: String = seed.bytes().cycle().take(32).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
