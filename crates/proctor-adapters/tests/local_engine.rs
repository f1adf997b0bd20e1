//! The local adapter against the real Docker engine (and, for pins, the registry at
//! 127.0.0.1:5000), with the test-only `testing/faulty@1` processor: every failure path ends
//! in its canonical error and leaves no container behind.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::{
    PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use proctor_adapters::{Adapter, ImageSource, Invocation, LocalAdapter, Staging};
use proctor_contract::{
    CanonError, Envelope, ErrorCode, Mode, OutputsIndex, PinnedReference, Progress, ProgressEvent,
    ProgressUnit, Receipt, cid,
};
use serde_json::json;
use support::{
    TestRun, faulty_dir, faulty_image, listing, load_spec, processor_dir, staged_path,
    workspace_root,
};
use tokio_util::sync::CancellationToken;

/// A mock invocation of the faulty processor's `fault` from the shared image.
async fn fault_invocation(run: &TestRun, fault: &str) -> Invocation {
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Local {
        image_id: faulty_image().await,
    };
    run.invocation(
        &spec,
        image,
        Mode::Mock,
        json!({"schema": "v1", "fault": fault}),
    )
}

/// Runs `invocation` through a fresh local adapter.
async fn invoke(invocation: &Invocation) -> Result<Envelope, CanonError> {
    LocalAdapter::connect()
        .unwrap()
        .invoke(invocation, &CancellationToken::new())
        .await
}

/// Runs the faulty processor's `fault` in mock mode from the shared image.
async fn run_fault(run: &TestRun, fault: &str) -> Result<Envelope, CanonError> {
    invoke(&fault_invocation(run, fault).await).await
}

async fn assert_fault(fault: &str, code: ErrorCode, fragment: &str) {
    let run = TestRun::new().await;
    let error = run_fault(&run, fault).await.unwrap_err();
    assert_eq!(error.code(), code, "{fault}: {error}");
    assert!(error.message().contains(fragment), "{fault}: {error}");
    assert!(
        run.containers().await.is_empty(),
        "{fault}: a container is left"
    );
}

#[tokio::test]
async fn well_behaved_mock_run_writes_its_index_into_its_staging_area_only() {
    let run = TestRun::new().await;
    let invocation = fault_invocation(&run, "none").await;
    let Envelope::Success(success) = invoke(&invocation).await.unwrap() else {
        panic!("not a success")
    };
    assert_eq!(success.meta.image_digest, faulty_image().await);
    let index = std::fs::read(staged_path(&invocation, success.index_path.as_str())).unwrap();
    assert_eq!(OutputsIndex::from_bytes(&index).unwrap().outputs, []);
    let staging = &invocation.staging;
    assert_eq!(listing(staging.prefix_dir()), ["outputs.json"]);
    assert!(listing(staging.execution_dir()).is_empty());
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn a_users_directory_keeps_its_owner_and_mode() {
    let run = TestRun::new().await;
    let user_dir = run.artifacts.path().join("user");
    std::fs::create_dir(&user_dir).unwrap();
    std::fs::set_permissions(&user_dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        std::os::unix::fs::chown(&user_dir, Some(4321), Some(4322)).unwrap();
    }
    let before = std::fs::metadata(&user_dir).unwrap();

    let mut invocation = fault_invocation(&run, "none").await;
    let staging = Staging::create_in(&user_dir, &invocation.payload.execution_id).unwrap();
    invocation.staging = Arc::new(staging);
    assert!(matches!(
        invoke(&invocation).await,
        Ok(Envelope::Success(_))
    ));
    drop(invocation);

    let after = std::fs::metadata(&user_dir).unwrap();
    assert_eq!(
        (after.uid(), after.gid(), after.mode()),
        (before.uid(), before.gid(), before.mode())
    );
    assert!(
        listing(&user_dir).is_empty(),
        "the staging area outlived its invocation"
    );
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn bad_index_path_is_an_adapter_invocation_error() {
    assert_fault(
        "bad_index_path",
        ErrorCode::AdapterInvocation,
        "invalid index_path root",
    )
    .await;
}

#[tokio::test]
async fn non_json_answer_is_an_adapter_invocation_error() {
    assert_fault(
        "non_json",
        ErrorCode::AdapterInvocation,
        "without a valid envelope",
    )
    .await;
}

#[tokio::test]
async fn wrong_digest_is_image_drift() {
    assert_fault(
        "wrong_digest",
        ErrorCode::ImageDrift,
        "image digest mismatch",
    )
    .await;
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
    let image = ImageSource::Local {
        image_id: faulty_image().await,
    };
    let mut invocation = run.invocation(
        &spec,
        image,
        Mode::Mock,
        json!({"schema": "v1", "fault": "hang"}),
    );
    invocation.timeout = Duration::from_secs(2);
    let error = LocalAdapter::connect()
        .unwrap()
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::Timeout, "{error}");
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn cancelling_a_run_removes_its_container() {
    let run = TestRun::new().await;
    let invocation = fault_invocation(&run, "hang").await;
    let adapter = LocalAdapter::connect().unwrap();
    let cancel = CancellationToken::new();
    let (outcome, ()) = tokio::join!(adapter.invoke(&invocation, &cancel), async {
        assert!(
            run.await_container_count(1).await,
            "the run's container never appeared"
        );
        cancel.cancel();
    });
    let error = outcome.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Interrupted, "{error}");
    assert!(error.message().starts_with("run interrupted"), "{error}");
    assert!(
        error.message().ends_with("; its container is removed"),
        "{error}"
    );
    assert!(
        run.containers().await.is_empty(),
        "the cancelled run left its container"
    );
}

#[tokio::test]
async fn dropping_a_run_removes_its_hardened_container() {
    let run = TestRun::new().await;
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Local {
        image_id: faulty_image().await,
    };
    let invocation = run.invocation(
        &spec,
        image,
        Mode::Mock,
        json!({"schema": "v1", "fault": "hang"}),
    );
    let invocation_prefix = invocation.payload.write_prefix.clone();
    let execution_id = invocation.payload.execution_id.clone();
    let adapter = LocalAdapter::connect().unwrap();
    let task =
        tokio::spawn(async move { adapter.invoke(&invocation, &CancellationToken::new()).await });
    assert!(
        run.await_container_count(1).await,
        "the run's container never appeared"
    );

    let summary = &run.containers().await[0];
    let details = run
        .docker
        .inspect_container(summary.id.as_deref().unwrap(), None)
        .await
        .unwrap();
    let mut mounted: Vec<_> = details
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|mount| (mount.destination.unwrap(), mount.rw))
        .collect();
    mounted.sort();
    let prefix = invocation_prefix.trim_end_matches('/').to_owned();
    let mut expected = vec![
        (prefix, Some(true)),
        (format!("/artifacts/execution/{execution_id}"), Some(true)),
        ("/run/proctor".to_owned(), Some(true)),
    ];
    expected.sort();
    assert_eq!(mounted, expected, "only the staging area and the socket");
    let host = details.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(
        host.security_opt.as_deref(),
        Some(&["no-new-privileges".to_owned()][..])
    );
    assert!(host.port_bindings.unwrap_or_default().is_empty());
    assert_eq!(details.config.unwrap().user.as_deref(), Some("65532:65532"));

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        run.await_container_count(0).await,
        "the dropped run left its container"
    );
}

#[tokio::test]
async fn build_path_runs_by_image_id() {
    let run = TestRun::new().await;
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Build {
        workspace_root: workspace_root(),
    };
    let invocation = run.invocation(&spec, image, Mode::Mock, json!({"schema": "v1"}));
    let adapter = LocalAdapter::connect().unwrap();
    let Envelope::Success(success) = adapter
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap()
    else {
        panic!("not a success")
    };
    // The envelope names the image ID the adapter built and started (it checks that), and
    // that ID is a local image labelled with the processor's ref.
    let built = run
        .docker
        .inspect_image(&success.meta.image_digest)
        .await
        .unwrap();
    assert_eq!(
        built.id.as_deref(),
        Some(success.meta.image_digest.as_str())
    );
    let labels = built
        .config
        .and_then(|config| config.labels)
        .unwrap_or_default();
    assert_eq!(
        labels.get("proctor.ref").map(String::as_str),
        Some("testing/faulty@1")
    );
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn real_mode_talks_over_loopback_bridge_and_host_networks() {
    for options in [json!({}), json!({"network": "host"})] {
        let run = TestRun::new().await;
        let spec = load_spec(&faulty_dir());
        let image = ImageSource::Local {
            image_id: faulty_image().await,
        };
        let mut invocation = run.invocation(&spec, image, Mode::Real, json!({"schema": "v1"}));
        let mut merged = invocation.options.clone();
        merged
            .as_object_mut()
            .unwrap()
            .extend(options.as_object().unwrap().clone());
        invocation.options = merged;
        let envelope = LocalAdapter::connect()
            .unwrap()
            .invoke(&invocation, &CancellationToken::new())
            .await;
        assert!(
            matches!(envelope, Ok(Envelope::Success(_))),
            "{options}: {envelope:?}"
        );
        assert!(run.containers().await.is_empty());
    }
}

/// A real invocation of the shared faulty image on the network `options` choose, its
/// server started as `startup` (`FAULTY_STARTUP`) says.
async fn real_invocation(run: &TestRun, options: &serde_json::Value, startup: &str) -> Invocation {
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Local {
        image_id: faulty_image().await,
    };
    let mut invocation = run.invocation(&spec, image, Mode::Real, json!({"schema": "v1"}));
    let mut merged = invocation.options.clone();
    merged
        .as_object_mut()
        .unwrap()
        .extend(options.as_object().unwrap().clone());
    invocation.options = merged;
    invocation
        .env
        .insert("FAULTY_STARTUP".to_owned(), startup.to_owned());
    invocation
}

#[tokio::test]
async fn an_exit_before_health_reports_its_code_and_masked_log_tail_on_real_networks() {
    for options in [json!({}), json!({"network": "host"})] {
        let run = TestRun::new().await;
        let invocation = real_invocation(&run, &options, "exit").await;
        let error = invoke(&invocation).await.unwrap_err();
        assert_eq!(
            error.code(),
            ErrorCode::AdapterInvocation,
            "{options}: {error}"
        );
        let message = error.message();
        assert!(
            message.contains("testing/faulty@1 exited with code 3 before /healthz answered"),
            "{options}: {message}"
        );
        assert!(
            message.contains("last log lines:\nprocessor-testing-faulty: cannot start: upstream"),
            "{options}: {message}"
        );
        assert!(
            !message.contains("leak-password-5f2c"),
            "{options}: a credential leaked: {message}"
        );
        assert!(
            !message.contains("published no host port"),
            "{options}: {message}"
        );
        assert!(
            run.containers().await.is_empty(),
            "{options}: a container is left"
        );
    }
}

#[tokio::test]
async fn mock_refuses_a_network_option_before_any_container() {
    let run = TestRun::new().await;
    let spec = load_spec(&faulty_dir());
    let image = ImageSource::Local {
        image_id: faulty_image().await,
    };
    let mut invocation = run.invocation(&spec, image, Mode::Mock, json!({"schema": "v1"}));
    invocation.options["network"] = json!("host");
    let error = LocalAdapter::connect()
        .unwrap()
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::AdapterInvocation);
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn unpinned_and_absent_pins_fail_before_any_container() {
    let run = TestRun::new().await;
    let spec = load_spec(&faulty_dir());
    let adapter = LocalAdapter::connect().unwrap();

    let placeholder = format!(
        "127.0.0.1:5000/proctor-test/faulty@sha256:{}",
        "0".repeat(64)
    );
    let unpinned = ImageSource::Pinned {
        reference: placeholder.parse().unwrap(),
    };
    let invocation = run.invocation(&spec, unpinned, Mode::Mock, json!({"schema": "v1"}));
    let error = adapter
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::ImageUnpinned, "{error}");
    assert!(error.message().starts_with("image not pinned"));

    let digest = unpushed_digest(&run.label);
    let absent = ImageSource::Pinned {
        reference: format!("127.0.0.1:5000/proctor-test/absent@{digest}")
            .parse()
            .unwrap(),
    };
    let invocation = run.invocation(&spec, absent, Mode::Mock, json!({"schema": "v1"}));
    let error = adapter
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::AdapterInvocation, "{error}");
    assert!(error.message().contains("pulling"), "{error}");
    assert!(run.containers().await.is_empty());
}

#[tokio::test]
async fn pinned_image_is_pulled_by_digest_and_run() {
    let run = TestRun::new().await;
    let image_id = faulty_image().await;
    let repository = "127.0.0.1:5000/proctor-test/faulty";
    let tag_options = TagImageOptionsBuilder::default()
        .repo(repository)
        .tag(&run.label)
        .build();
    run.docker
        .tag_image(&image_id, Some(tag_options))
        .await
        .unwrap();
    let push_options = PushImageOptionsBuilder::default().tag(&run.label).build();
    let pushed: Vec<_> = run
        .docker
        .push_image(repository, Some(push_options), None)
        .collect()
        .await;
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
    let pinned: PinnedReference = reference.parse().unwrap();
    // Drop the local references to that repository so the adapter must pull by digest; the
    // image itself stays (other tests share it under its own tag).
    let untag = RemoveImageOptionsBuilder::default().noprune(true).build();
    let tag = format!("{repository}:{}", run.label);
    run.docker
        .remove_image(&tag, Some(untag.clone()), None)
        .await
        .unwrap();
    // Some engines keep the digest reference after the tag goes; drop it too if so.
    let _ = run.docker.remove_image(&reference, Some(untag), None).await;
    assert!(
        run.docker.inspect_image(&reference).await.is_err(),
        "the digest is still known locally"
    );

    let spec = load_spec(&faulty_dir());
    let invocation = run.invocation(
        &spec,
        ImageSource::Pinned {
            reference: pinned.clone(),
        },
        Mode::Mock,
        json!({"schema": "v1"}),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let progress = Progress::new(move |event| sink.lock().unwrap().push(event));
    let envelope = LocalAdapter::connect()
        .unwrap()
        .with_progress(progress)
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap();
    let Envelope::Success(success) = envelope else {
        panic!("not a success")
    };
    assert_eq!(success.meta.image_digest, pinned.digest().to_string());
    assert!(run.containers().await.is_empty());
    // The pull is one bytes task, finished once the image is there.
    let events = events.lock().unwrap().clone();
    let short_digest = &pinned.digest().hex()[..12];
    let Some(ProgressEvent::Started { task, .. }) = events.first().filter(|event| {
        matches!(event, ProgressEvent::Started { label, unit: ProgressUnit::Bytes, .. }
            if *label == format!("pulling faulty@{short_digest}"))
    }) else {
        panic!("no pull task: {events:?}")
    };
    assert_eq!(
        events.last(),
        Some(&ProgressEvent::Finished { task: *task }),
        "{events:?}"
    );
    let untag = RemoveImageOptionsBuilder::default().noprune(true).build();
    let _ = run.docker.remove_image(&reference, Some(untag), None).await;
}

/// A well-formed digest nobody pushed.
fn unpushed_digest(seed: &str) -> String {
    let hex: String = seed
        .bytes()
        .cycle()
        .take(32)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Two mock runs of a shipped processor's example, the first through `--build` (the only
/// build of that processor in this binary), the second by the image ID the first ran: both
/// succeed, write exactly their evidence into their staging areas (creating `outputs/` on
/// a read-only root filesystem), and agree on every output byte, CID and the stable part
/// of the receipt.
async fn shipped_processor_runs_identically(relative: &str, example: &str) {
    let spec = load_spec(&processor_dir(relative));
    let inputs = spec.examples[example].inputs.clone();
    let run = TestRun::new().await;
    let adapter = LocalAdapter::connect().unwrap();
    let mut source = ImageSource::Build {
        workspace_root: workspace_root(),
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let invocation = run.invocation(&spec, source, Mode::Mock, inputs.clone());
        let success = match adapter.invoke(&invocation, &CancellationToken::new()).await {
            Ok(Envelope::Success(success)) => success,
            other => panic!("{relative}: {other:?}"),
        };
        assert!(
            run.containers().await.is_empty(),
            "{relative}: a container is left"
        );
        assert!(success.meta.image_digest.starts_with("sha256:"));
        source = ImageSource::Local {
            image_id: success.meta.image_digest.clone(),
        };
        runs.push((invocation, success));
    }
    assert_eq!(runs[0].1.meta.image_digest, runs[1].1.meta.image_digest);

    let mut stable_receipts = Vec::new();
    let mut contents = Vec::new();
    for (invocation, success) in &runs {
        let prefix = &invocation.payload.write_prefix;
        assert!(!success.outputs.is_empty());
        let index = OutputsIndex::from_bytes(
            &std::fs::read(staged_path(invocation, success.index_path.as_str())).unwrap(),
        )
        .unwrap();
        assert_eq!(
            index.outputs, success.outputs,
            "the index lists the envelope's outputs"
        );
        let mut files = Vec::new();
        for output in &success.outputs {
            let relative_path = output
                .path
                .as_str()
                .strip_prefix(&format!("{prefix}outputs/"))
                .unwrap()
                .to_owned();
            assert!(
                spec.outputs
                    .iter()
                    .any(|declared| declared.path == relative_path),
                "{relative_path} undeclared"
            );
            let bytes = std::fs::read(staged_path(invocation, output.path.as_str())).unwrap();
            assert_eq!(cid(&bytes), output.cid);
            assert_eq!(bytes.len() as u64, output.size_bytes);
            files.push((
                relative_path,
                output.cid.clone(),
                output.mime.clone(),
                bytes,
            ));
        }
        let mut expected_listing =
            BTreeSet::from(["outputs.json".to_owned(), "receipt.json".to_owned()]);
        for (path, ..) in &files {
            let file = format!("outputs/{path}");
            expected_listing.extend(
                Path::new(&file)
                    .ancestors()
                    .take_while(|ancestor| !ancestor.as_os_str().is_empty())
                    .map(|ancestor| ancestor.display().to_string()),
            );
        }
        let expected_listing: Vec<String> = expected_listing.into_iter().collect();
        assert_eq!(
            listing(invocation.staging.prefix_dir()),
            expected_listing,
            "{relative}: the prefix directory holds exactly the evidence"
        );
        assert_eq!(
            listing(invocation.staging.execution_dir()),
            ["receipt.json"]
        );
        contents.push(files);
        let receipt_bytes =
            std::fs::read(staged_path(invocation, &format!("{prefix}receipt.json"))).unwrap();
        let execution_receipt =
            format!("/artifacts/execution/{}/receipt.json", success.execution_id);
        assert_eq!(
            std::fs::read(staged_path(invocation, &execution_receipt)).unwrap(),
            receipt_bytes
        );
        let receipt: Receipt = serde_json::from_slice(&receipt_bytes).unwrap();
        stable_receipts.push(receipt.stable_part());
    }
    assert_eq!(
        contents[0], contents[1],
        "{relative}: outputs differ between runs"
    );
    assert_eq!(
        stable_receipts[0], stable_receipts[1],
        "{relative}: stable receipts differ"
    );
}

#[tokio::test]
async fn text_stats_mock_runs_are_identical() {
    shipped_processor_runs_identically("processors/text/stats/1", "smoke").await;
}

#[tokio::test]
async fn llm_litellm_mock_runs_are_identical() {
    shipped_processor_runs_identically("processors/llm/litellm/1", "smoke").await;
}
