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

/// The Rust target a statically linked processor binary for `platform` is built for.
pub(crate) fn rust_target(platform: Platform) -> &'static str {
    match platform {
        Platform::Amd64 => "x86_64-unknown-linux-gnu",
        Platform::Arm64 => "aarch64-unknown-linux-gnu",
    }
}

/// The OCI platform string, e.g. `linux/amd64`.
pub(crate) fn oci_platform(platform: Platform) -> String {
    format!("linux/{}", platform.as_str())
}

/// The variable that sets `rustflags` for one target (`CARGO_TARGET_<TRIPLE>_RUSTFLAGS`).
pub(crate) fn rustflags_variable(target: &str) -> String {
    format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.to_uppercase().replace('-', "_")
    )
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
        assert_eq!(rust_target(Platform::Amd64), "x86_64-unknown-linux-gnu");
        assert_eq!(oci_platform(Platform::Arm64), "linux/arm64");
        assert_eq!(
            rustflags_variable("x86_64-unknown-linux-gnu"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS"
        );
    }
}
