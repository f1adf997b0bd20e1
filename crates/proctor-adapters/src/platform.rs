//! Which platform this host is, and what building for a platform means.

use proctor_contract::{CanonError, ErrorCode};
use proctor_registry::Platform;

/// The platform of this host, whose pin a run without `--build` uses; an architecture with
/// no image platform is `ERR_IMAGE_UNPINNED`.
pub fn host_platform() -> Result<Platform, CanonError> {
    Platform::host().ok_or_else(|| {
        CanonError::new(
            ErrorCode::ImageUnpinned,
            format!(
                "no image platform for host architecture `{}`; use --build",
                std::env::consts::ARCH
            ),
        )
    })
}

/// The same platform, as `proctor_oci` names it for building.
pub(crate) fn oci_build_platform(platform: Platform) -> proctor_oci::Platform {
    match platform {
        Platform::Amd64 => proctor_oci::Platform::Amd64,
        Platform::Arm64 => proctor_oci::Platform::Arm64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_platform_matches_the_architecture() {
        assert_eq!(
            host_platform().ok(),
            Platform::from_arch(std::env::consts::ARCH)
        );
    }

    #[test]
    fn names_targets_platforms_and_variables() {
        assert_eq!(
            oci_build_platform(Platform::Amd64),
            proctor_oci::Platform::Amd64
        );
        assert_eq!(
            oci_build_platform(Platform::Arm64).to_string(),
            "linux/arm64"
        );
    }
}
