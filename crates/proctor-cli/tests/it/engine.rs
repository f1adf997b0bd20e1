//! The Docker engine as the tests see it, through bollard: a private runtime per call for
//! the synchronous tests, the containers carrying a label, and a [`ContainerSweep`] that
//! owns a unique label value and removes the containers carrying it when dropped, so no
//! container outlives its test.
//!
//! Needs: the Docker engine that `scripts/setup.sh` starts.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptions,
};
use serde_json::json;

/// The label key every test container carries.
const TEST_LABEL: &str = "proctor.test";
/// The label key the local adapter puts on a run's container: the execution id.
pub(crate) const EXECUTION_LABEL: &str = "proctor.execution_id";

/// The engine, its API version negotiated.
pub(crate) async fn connect() -> Docker {
    let docker = Docker::connect_with_local_defaults().unwrap();
    docker.negotiate_version().await.unwrap()
}

/// IDs of the containers labelled `label` (`key=value`), stopped ones included.
pub(crate) async fn labelled_containers(docker: &Docker, label: String) -> Vec<String> {
    let filters = HashMap::from([("label", vec![label])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let listed = docker.list_containers(Some(options)).await.unwrap();
    listed
        .into_iter()
        .filter_map(|container| container.id)
        .collect()
}

/// Runs `work` against the engine on a private runtime (the tests are synchronous).
fn with_engine<T: Send + 'static>(
    work: impl FnOnce(Docker) -> futures_util::future::BoxFuture<'static, T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { work(connect().await).await })
    })
    .join()
    .unwrap()
}

/// [`labelled_containers`] for the synchronous tests.
pub(crate) fn containers_labelled(label: String) -> Vec<String> {
    with_engine(move |docker| Box::pin(async move { labelled_containers(&docker, label).await }))
}

/// Whether the engine has an image for `reference`.
pub(crate) fn image_present(reference: &str) -> bool {
    let reference = reference.to_owned();
    with_engine(move |docker| {
        Box::pin(async move { docker.inspect_image(&reference).await.is_ok() })
    })
}

/// Removes the engine's image reference `reference`, if present.
pub(crate) fn remove_image(reference: &str) {
    let reference = reference.to_owned();
    with_engine(move |docker| {
        Box::pin(async move {
            let _ = docker
                .remove_image(&reference, None::<RemoveImageOptions>, None)
                .await;
        })
    });
}

/// Owns a unique label value; lists and removes the containers carrying it.
pub(crate) struct ContainerSweep {
    label: String,
}

impl ContainerSweep {
    pub(crate) fn new() -> ContainerSweep {
        ContainerSweep {
            label: format!("cli-{}", uuid::Uuid::new_v4()),
        }
    }

    /// `--adapter-opts-json` that labels every container a run starts.
    pub(crate) fn adapter_options(&self) -> String {
        json!({"labels": {TEST_LABEL: self.label}}).to_string()
    }

    /// IDs of the containers carrying the label, stopped ones included.
    pub(crate) fn containers(&self) -> Vec<String> {
        containers_labelled(format!("{TEST_LABEL}={}", self.label))
    }

    /// Force-removes the containers carrying the label.
    pub(crate) fn remove_containers(&self) {
        let leftovers = self.containers();
        with_engine(move |docker| {
            Box::pin(async move {
                for id in leftovers {
                    let force = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = docker.remove_container(&id, Some(force)).await;
                }
            })
        });
    }
}

impl Drop for ContainerSweep {
    fn drop(&mut self) {
        self.remove_containers();
    }
}
