//! The platforms a processor image exists for: `linux/amd64` and `linux/arm64`.
//!
//! One platform has several names: the OCI architecture (`amd64`, also the key under
//! `image.platforms` in `registry.yaml` and the serde form), the OCI platform
//! (`linux/amd64`, the [`Display`](fmt::Display) form), the Rust architecture of a host
//! (`x86_64`) and the Rust target triple a processor binary is compiled for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Linux platform a processor image is built and pinned for.
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

    /// The platform of a CPU architecture as Rust names it (`x86_64`, `aarch64`); callers
    /// pass `std::env::consts::ARCH` for the host. `None` when no image exists for it.
    pub fn from_arch(arch: &str) -> Option<Platform> {
        match arch {
            "x86_64" => Some(Platform::Amd64),
            "aarch64" => Some(Platform::Arm64),
            _ => None,
        }
    }

    /// The OCI (Go `GOARCH`) architecture name, which is also the platform's key under
    /// `image.platforms`: `amd64` or `arm64`.
    pub fn as_str(self) -> &'static str {
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
    pub fn gnu_triple(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-linux-gnu",
            Platform::Arm64 => "aarch64-linux-gnu",
        }
    }

    /// The ELF `e_machine` value of binaries for this platform.
    pub fn elf_machine(self) -> u16 {
        match self {
            Platform::Amd64 => 62,
            Platform::Arm64 => 183,
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
    /// The OCI platform, e.g. `linux/amd64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux/{}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        assert!("x86_64".parse::<Platform>().is_err());
    }

    #[test]
    fn follows_the_rust_architecture() {
        assert_eq!(Platform::from_arch("x86_64"), Some(Platform::Amd64));
        assert_eq!(Platform::from_arch("aarch64"), Some(Platform::Arm64));
        assert_eq!(Platform::from_arch("riscv64"), None);
        assert_eq!(Platform::from_arch("amd64"), None);
    }

    #[test]
    fn names_targets_and_machines() {
        assert_eq!(Platform::Arm64.to_string(), "linux/arm64");
        assert_eq!(Platform::Arm64.as_str(), "arm64");
        assert_eq!(Platform::Arm64.rust_target(), "aarch64-unknown-linux-gnu");
        assert_eq!(Platform::Arm64.gnu_triple(), "aarch64-linux-gnu");
        assert_eq!(Platform::Amd64.elf_machine(), 62);
        assert_eq!(
            serde_json::to_string(&Platform::Amd64).unwrap(),
            "\"amd64\""
        );
        assert_eq!(
            serde_json::from_str::<Platform>("\"arm64\"").unwrap(),
            Platform::Arm64
        );
    }

    proptest! {
        #[test]
        fn every_name_parses_back(index in 0..Platform::ALL.len()) {
            let platform = Platform::ALL[index];
            prop_assert_eq!(platform.to_string().parse::<Platform>().unwrap(), platform);
            prop_assert_eq!(platform.as_str().parse::<Platform>().unwrap(), platform);
            let rust_arch = platform.rust_target().split('-').next().unwrap();
            prop_assert_eq!(Platform::from_arch(rust_arch), Some(platform));
            prop_assert!(platform.gnu_triple().starts_with(rust_arch));
        }

        #[test]
        fn lists_are_sorted_and_deduplicated(picks in prop::collection::vec(0..2usize, 1..6)) {
            let raw: Vec<String> = picks.iter().map(|&i| Platform::ALL[i].to_string()).collect();
            let parsed = Platform::parse_list(&raw.join(",")).unwrap();
            let mut expected: Vec<Platform> = picks.iter().map(|&i| Platform::ALL[i]).collect();
            expected.sort();
            expected.dedup();
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn other_names_are_refused(raw in "[a-z0-9/_-]{0,16}") {
            prop_assume!(!matches!(
                raw.as_str(),
                "amd64" | "arm64" | "linux/amd64" | "linux/arm64"
            ));
            prop_assert!(raw.parse::<Platform>().is_err());
        }
    }
}
