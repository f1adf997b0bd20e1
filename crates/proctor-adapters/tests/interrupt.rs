//! Ctrl-C during a run removes its container. A test binary of its own: the signal goes to
//! the whole process, and would interrupt any other run in it.

mod support;

use proctor_adapters::{Adapter, ImageSource, LocalAdapter};
use proctor_contract::{ErrorCode, Mode};
use serde_json::json;
use support::{TestRun, faulty_dir, faulty_image, load_spec};

#[tokio::test]
async fn ctrl_c_interrupts_the_run_and_removes_its_container() {
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
    let adapter = LocalAdapter::connect().await.unwrap();
    let task = tokio::spawn(async move { adapter.invoke(&invocation).await });
    // The adapter watches Ctrl-C from its first poll, before it creates the container.
    assert!(
        run.await_container_count(1).await,
        "the run's container never appeared"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let error = task.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::Interrupted, "{error}");
    assert!(error.message().starts_with("run interrupted"), "{error}");
    assert!(
        run.containers().await.is_empty(),
        "the interrupted run left its container"
    );
}
