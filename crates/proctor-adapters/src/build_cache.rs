//! Each processor is built from source at most once per adapter: the runs it starts
//! afterwards (a plan's transitions, a lane's runs) use that image, and runs that ask at
//! the same time wait for the one build. A failed or cancelled build is not kept, so the
//! next run builds again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use proctor_contract::{CanonError, Platform};
use tokio::sync::OnceCell;

use crate::image_build::BuiltImage;

/// What a build is of: the workspace, the recipe and the platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BuildKey {
    pub(crate) workspace_root: PathBuf,
    pub(crate) recipe: Recipe,
    pub(crate) platform: Platform,
}

/// How an image is made from source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Recipe {
    /// The static binary of this Cargo package, assembled by `proctor-oci`.
    Cargo(String),
    /// The Dockerfile of the processor whose `registry.yaml` is in this directory.
    Dockerfile(PathBuf),
}

/// The images an adapter built, by what they were built from.
#[derive(Debug, Default)]
pub(crate) struct BuildCache {
    builds: Mutex<HashMap<BuildKey, Arc<OnceCell<BuiltImage>>>>,
}

impl BuildCache {
    /// The image built for `key`, running `build` only if none was built yet.
    pub(crate) async fn get_or_build<F, Fut>(
        &self,
        key: BuildKey,
        build: F,
    ) -> Result<BuiltImage, CanonError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<BuiltImage, CanonError>>,
    {
        let cell = {
            let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(builds.entry(key).or_default())
        };
        cell.get_or_try_init(build).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proctor_contract::ErrorCode;

    use super::*;

    fn key(package: &str) -> BuildKey {
        BuildKey {
            workspace_root: PathBuf::from("/ws"),
            recipe: Recipe::Cargo(package.to_owned()),
            platform: Platform::Amd64,
        }
    }

    fn image(id: &str) -> BuiltImage {
        BuiltImage {
            id: id.to_owned(),
            tag: "proctor/t:1".to_owned(),
        }
    }

    #[tokio::test]
    async fn one_build_serves_every_run_of_a_package_even_at_once() {
        let cache = BuildCache::default();
        let builds = AtomicUsize::new(0);
        let build = || async {
            builds.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(image("sha256:a"))
        };
        let (first, second) = tokio::join!(
            cache.get_or_build(key("p"), build),
            cache.get_or_build(key("p"), build)
        );
        assert_eq!(first.unwrap(), image("sha256:a"));
        assert_eq!(second.unwrap(), image("sha256:a"));
        assert_eq!(
            cache.get_or_build(key("p"), build).await.unwrap().id,
            "sha256:a"
        );
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        cache.get_or_build(key("q"), build).await.unwrap();
        assert_eq!(builds.load(Ordering::SeqCst), 2, "another package builds");
    }

    #[tokio::test]
    async fn a_failed_build_is_not_kept() {
        let cache = BuildCache::default();
        let failed = cache
            .get_or_build(key("p"), || async {
                Err(CanonError::new(ErrorCode::Build, "compile error"))
            })
            .await
            .unwrap_err();
        assert_eq!(failed.code(), ErrorCode::Build);
        let built = cache
            .get_or_build(key("p"), || async { Ok(image("sha256:b")) })
            .await
            .unwrap();
        assert_eq!(built.id, "sha256:b");
    }
}
