//! Image digests: `sha256:` followed by 64 lowercase hex digits, the way OCI registries name
//! manifests and blobs and the way a pin names an image.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The algorithm prefix every digest proctor accepts starts with.
const SHA256_PREFIX: &str = "sha256:";
/// Hex digits of a SHA-256 digest.
const SHA256_HEX_LEN: usize = 64;

/// A SHA-256 content digest, `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The 64 lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether every digit is `0`: the placeholder templates use where no image is pinned
    /// yet, never the digest of real content.
    pub fn is_placeholder(&self) -> bool {
        self.hex.bytes().all(|b| b == b'0')
    }
}

/// Text that is not `sha256:` followed by 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a digest sha256:<64 lowercase hex>")]
pub struct InvalidDigest(String);

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(raw: &str) -> Result<Digest, InvalidDigest> {
        let hex = raw
            .strip_prefix(SHA256_PREFIX)
            .filter(|hex| {
                hex.len() == SHA256_HEX_LEN
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .ok_or_else(|| InvalidDigest(raw.to_owned()))?;
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256_PREFIX}{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HEX: &str = "3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

    #[test]
    fn parses_and_displays() {
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        assert_eq!(digest.hex(), HEX);
        assert_eq!(digest.to_string(), format!("sha256:{HEX}"));
        assert!(!digest.is_placeholder());
        let zeros: Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
        assert!(zeros.is_placeholder());
    }

    #[test]
    fn refuses_anything_else() {
        for raw in [
            String::new(),
            HEX.to_owned(),
            format!("sha512:{HEX}"),
            format!("SHA256:{HEX}"),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("sha256:{}", &HEX[1..]),
            format!("sha256:{HEX}0"),
            format!("sha256:{HEX} "),
            "sha256:<64 hex>".to_owned(),
            "sha256:ab".to_owned(),
        ] {
            let err = raw.parse::<Digest>().unwrap_err();
            assert!(
                err.to_string().contains("sha256:<64 lowercase hex>"),
                "{raw}"
            );
        }
    }

    #[test]
    fn serializes_as_a_string() {
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"sha256:{HEX}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<Digest>("\"sha256:ab\"").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(hex in "[0-9a-f]{64}") {
            let raw = format!("sha256:{hex}");
            let digest: Digest = raw.parse().unwrap();
            prop_assert_eq!(digest.hex(), hex.as_str());
            prop_assert_eq!(digest.to_string(), raw);
        }

        #[test]
        fn refuses_wrong_lengths(hex in "[0-9a-f]{0,80}") {
            prop_assume!(hex.len() != 64);
            let raw = format!("sha256:{hex}");
            prop_assert!(raw.parse::<Digest>().is_err());
        }
    }
}
