//! Processor references: `ns/name@version`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{CanonError, ErrorCode};

/// A processor reference `ns/name@version`, e.g. `llm/litellm@1`.
///
/// Grammar: `ns` and `name` are 1–64 characters of `[a-z0-9_-]` starting with a letter or
/// digit; `version` is 1–32 characters of `[a-z0-9._-]` starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessorRef {
    namespace: String,
    name: String,
    version: String,
}

impl ProcessorRef {
    /// The namespace, e.g. `llm`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name, e.g. `litellm`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version, e.g. `1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `ns-name`, the repository-scoped image name.
    pub fn image_name(&self) -> String {
        format!("{}-{}", self.namespace, self.name)
    }

    /// `ns/name/version`, the ref as world path segments (e.g. `llm/litellm/1`): three
    /// canonical segments, since no part holds a `/`, `%` or anything canonicalization
    /// changes, and no part is `.` or `..`; two refs share a slug only when they are equal.
    pub fn slug(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.name, self.version)
    }

    /// The write prefix of a run that names none: `/artifacts/outputs/{slug}/{execution_id}/`.
    pub fn default_write_prefix(&self) -> String {
        format!(
            "/artifacts/outputs/{}/{}/",
            self.slug(),
            crate::EXECUTION_ID_PLACEHOLDER
        )
    }
}

fn valid_part(part: &str, max: usize, extra: &[char]) -> bool {
    let mut chars = part.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    part.len() <= max
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && chars.all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || c == '_'
                || extra.contains(&c)
        })
}

impl FromStr for ProcessorRef {
    type Err = CanonError;

    fn from_str(raw: &str) -> Result<ProcessorRef, CanonError> {
        let invalid = |why: &str| {
            CanonError::new(
                ErrorCode::ProcessorRef,
                format!("`{raw}` {why}; expected ns/name@version, e.g. llm/litellm@1"),
            )
        };
        let (path, version) = raw
            .split_once('@')
            .ok_or_else(|| invalid("has no @version"))?;
        let (namespace, name) = path.split_once('/').ok_or_else(|| invalid("has no ns/"))?;
        if !valid_part(namespace, 64, &[]) {
            return Err(invalid("has an invalid namespace"));
        }
        if !valid_part(name, 64, &[]) {
            return Err(invalid("has an invalid name"));
        }
        if !valid_part(version, 32, &['.']) {
            return Err(invalid("has an invalid version"));
        }
        Ok(ProcessorRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }
}

impl fmt::Display for ProcessorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.version)
    }
}

impl Serialize for ProcessorRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProcessorRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ProcessorRef, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{WorldPath, WritePrefix};

    #[test]
    fn parses_valid_refs() {
        let r: ProcessorRef = "llm/litellm@1".parse().unwrap();
        assert_eq!(
            (r.namespace(), r.name(), r.version()),
            ("llm", "litellm", "1")
        );
        assert_eq!(r.to_string(), "llm/litellm@1");
        assert_eq!(r.image_name(), "llm-litellm");
        assert!("text/stats@1.2.0".parse::<ProcessorRef>().is_ok());
        assert!("a_b/c-d@v2".parse::<ProcessorRef>().is_ok());
    }

    #[test]
    fn rejects_invalid_refs() {
        for raw in [
            "",
            "llm",
            "llm/litellm",
            "llm@1",
            "/litellm@1",
            "llm/@1",
            "llm/litellm@",
            "LLM/litellm@1",
            "llm/lite llm@1",
            "llm/litellm@1@2",
            "llm/a/b@1",
            "-x/y@1",
            "llm/litellm@.1",
        ] {
            let err = raw.parse::<ProcessorRef>().unwrap_err();
            assert_eq!(err.code(), ErrorCode::ProcessorRef, "{raw}");
            assert!(err.message().contains("invalid processor ref"));
        }
    }

    /// Valid refs, each part drawn from its whole alphabet and length range.
    fn valid_refs() -> impl Strategy<Value = ProcessorRef> {
        (
            "[a-z0-9][a-z0-9_-]{0,63}",
            "[a-z0-9][a-z0-9_-]{0,63}",
            "[a-z0-9][a-z0-9._-]{0,31}",
        )
            .prop_map(|(namespace, name, version)| {
                format!("{namespace}/{name}@{version}").parse().unwrap()
            })
    }

    #[test]
    fn the_slug_and_default_write_prefix_follow_the_ref() {
        let r: ProcessorRef = "text/stats@1.2.0".parse().unwrap();
        assert_eq!(r.slug(), "text/stats/1.2.0");
        assert_eq!(
            r.default_write_prefix(),
            "/artifacts/outputs/text/stats/1.2.0/{execution_id}/"
        );
        let prefix = WritePrefix::expand(&r.default_write_prefix(), "e1").unwrap();
        assert_eq!(prefix.as_str(), "/artifacts/outputs/text/stats/1.2.0/e1/");
    }

    proptest! {
        #[test]
        fn every_valid_ref_slugs_to_canonical_world_path_segments(r in valid_refs()) {
            let slug = r.slug();
            let raw = format!("/artifacts/outputs/{slug}/");
            let path = WorldPath::parse(&raw).unwrap();
            prop_assert_eq!(path.as_str(), raw.as_str());
            let segments: Vec<&str> = slug.split('/').collect();
            prop_assert_eq!(segments, [r.namespace(), r.name(), r.version()]);
            let prefix = WritePrefix::expand(
                &r.default_write_prefix(),
                "0b9c1e52-58f1-4a8e-8f0e-9d2b7f6f9c11",
            )
            .unwrap();
            prop_assert!(path.covers(prefix.path()), "{}", prefix);
        }

        #[test]
        fn different_refs_give_different_slugs(a in valid_refs(), b in valid_refs()) {
            prop_assert_eq!(a == b, a.slug() == b.slug());
        }

        /// The same characters split into parts at other places: the nearest misses.
        #[test]
        fn the_same_text_split_elsewhere_gives_another_slug(
            text in "[a-z0-9][a-z0-9_-]{2,20}",
            version in "[a-z0-9][a-z0-9._-]{0,4}",
            at in 1usize..20,
            other in 1usize..20,
        ) {
            let split = |at: usize| -> Option<ProcessorRef> {
                let at = at.min(text.len() - 1);
                let (namespace, name) = text.split_at(at);
                format!("{namespace}/{name}@{version}").parse().ok()
            };
            if let (Some(a), Some(b)) = (split(at), split(other)) {
                prop_assert_eq!(a == b, a.slug() == b.slug());
            }
        }
    }
}
