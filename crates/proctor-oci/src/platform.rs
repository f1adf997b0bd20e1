//! What building images needs of the canon [`Platform`]: its oci-spec architecture, and
//! whether it is the platform this process runs on (which needs no cross linker).

use oci_spec::image::Arch;
pub(crate) use proctor_contract::Platform;

/// The OCI architecture enum of `platform`.
pub(crate) fn oci_arch(platform: Platform) -> Arch {
    match platform {
        Platform::Amd64 => Arch::Amd64,
        Platform::Arm64 => Arch::ARM64,
    }
}

/// Whether `platform` is the one the current process runs on.
pub(crate) fn is_host(platform: Platform) -> bool {
    Platform::from_arch(std::env::consts::ARCH) == Some(platform)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_and_the_host() {
        for platform in Platform::ALL {
            assert_eq!(oci_arch(platform).to_string(), platform.as_str());
        }
        assert_eq!(Platform::ALL.iter().filter(|p| is_host(**p)).count(), 1);
    }
}
