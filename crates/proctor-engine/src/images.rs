//! Processor images as `proctor build` and the main lane's Build & Pin make them: the
//! registry entry's build recipe handed to [`proctor_oci::build`].

use std::path::Path;

use proctor_contract::{CanonError, ErrorCode, Platform, Progress};
use proctor_oci::{BuildRequest, BuiltImage, layout_dir};
use proctor_registry::RegisteredProcessor;

/// Builds `entry`'s image for `platforms` into its layout under `oci_root`, compiling in
/// the Cargo workspace at `workspace_root`, reporting to `progress`. Blocks while cargo
/// compiles.
pub fn build_layout(
    entry: &RegisteredProcessor,
    platforms: &[Platform],
    oci_root: &Path,
    workspace_root: &Path,
    progress: &Progress,
) -> Result<BuiltImage, CanonError> {
    let spec = entry.spec();
    let Some(cargo_package) = spec.build.cargo_package.clone() else {
        return Err(CanonError::new(
            ErrorCode::Build,
            format!(
                "{} has no build.cargo_package: the container engine builds it from its \
                 Dockerfile (`proctor run --build`), which `proctor build` does not do",
                spec.processor_ref
            ),
        ));
    };
    proctor_oci::build(
        &BuildRequest {
            processor_ref: spec.processor_ref.clone(),
            cargo_package,
            port: spec.build.port,
            workspace_root: workspace_root.to_path_buf(),
            platforms: platforms.to_vec(),
            layout_dir: layout_dir(oci_root, &spec.processor_ref),
        },
        progress,
    )
}
