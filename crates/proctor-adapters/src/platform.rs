//! Which platform this host is: the one whose pin a run without `--build` uses.

use proctor_contract::{CanonError, ErrorCode, Platform};

/// The platform of this host, whose pin a run without `--build` uses; an architecture with
/// no image platform is `ERR_IMAGE_UNPINNED`.
pub fn host_platform() -> Result<Platform, CanonError> {
    let arch = std::env::consts::ARCH;
    Platform::from_arch(arch).ok_or_else(|| {
        CanonError::new(
            ErrorCode::ImageUnpinned,
            format!("no image platform for host architecture `{arch}`; use --build"),
        )
    })
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
}
