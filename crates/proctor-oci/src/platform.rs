//! The platforms a processor image is built for: `linux/amd64` and `linux/arm64`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Linux platform a processor image is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// `linux/amd64`, built with the Rust target `x86_64-unknown-linux-gnu`.
    Amd64,
    /// `linux/arm64`, built with the Rust target `aarch64-unknown-linux-gnu`.
    Arm64,
}

impl Platform {
    /// Every platform, in the order images list them. A pin needs all of them.
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// The OCI (Go `GOARCH`) architecture name: `amd64` or `arm64`.
    pub fn architecture(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The Rust target triple the processor binary is compiled for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-gnu",
            Platform::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The Debian GNU triple whose `-gcc` cross-links this platform from another host.
    pub(crate) fn gnu_triple(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-linux-gnu",
            Platform::Arm64 => "aarch64-linux-gnu",
        }
    }

    /// The ELF `e_machine` value of binaries for this platform.
    pub(crate) fn elf_machine(self) -> u16 {
        match self {
            Platform::Amd64 => 62,
            Platform::Arm64 => 183,
        }
    }

    /// Whether this is the platform the current process runs on.
    pub(crate) fn is_host(self) -> bool {
        matches!(
            (self, std::env::consts::ARCH),
            (Platform::Amd64, "x86_64") | (Platform::Arm64, "aarch64")
        )
    }

    /// The OCI architecture enum.
    pub(crate) fn oci_arch(self) -> oci_spec::image::Arch {
        match self {
            Platform::Amd64 => oci_spec::image::Arch::Amd64,
            Platform::Arm64 => oci_spec::image::Arch::ARM64,
        }
    }

    /// Parses a comma-separated list such as `linux/amd64,linux/arm64`, without duplicates,
    /// in [`Platform::ALL`] order.
    pub fn parse_list(raw: &str) -> Result<Vec<Platform>, UnknownPlatform> {
        let mut platforms = raw
            .split(',')
            .map(|part| part.trim().parse())
            .collect::<Result<Vec<Platform>, _>>()?;
        platforms.sort();
        platforms.dedup();
        Ok(platforms)
    }
}

/// A platform name that is neither `linux/amd64` nor `linux/arm64`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown platform `{0}`; expected linux/amd64 or linux/arm64")]
pub struct UnknownPlatform(String);

impl FromStr for Platform {
    type Err = UnknownPlatform;

    /// Accepts `linux/amd64`, `linux/arm64`, or the bare architecture.
    fn from_str(raw: &str) -> Result<Platform, UnknownPlatform> {
        match raw.strip_prefix("linux/").unwrap_or(raw) {
            "amd64" => Ok(Platform::Amd64),
            "arm64" => Ok(Platform::Arm64),
            _ => Err(UnknownPlatform(raw.to_owned())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux/{}", self.architecture())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_lists() {
        assert_eq!("linux/amd64".parse::<Platform>().unwrap(), Platform::Amd64);
        assert_eq!("arm64".parse::<Platform>().unwrap(), Platform::Arm64);
        assert_eq!(
            Platform::parse_list("linux/arm64, linux/amd64,linux/arm64").unwrap(),
            vec![Platform::Amd64, Platform::Arm64]
        );
        let err = "linux/s390x".parse::<Platform>().unwrap_err();
        assert!(err.to_string().contains("linux/s390x"));
        assert!(Platform::parse_list("").is_err());
        assert!("windows/amd64".parse::<Platform>().is_err());
    }

    #[test]
    fn names_targets_and_machines() {
        assert_eq!(Platform::Arm64.to_string(), "linux/arm64");
        assert_eq!(Platform::Arm64.rust_target(), "aarch64-unknown-linux-gnu");
        assert_eq!(Platform::Amd64.elf_machine(), 62);
        assert_eq!(
            serde_json::to_string(&Platform::Amd64).unwrap(),
            "\"amd64\""
        );
        assert_eq!(Platform::ALL.iter().filter(|p| p.is_host()).count(), 1);
    }
}
