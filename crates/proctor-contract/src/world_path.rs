//! World paths: the canonical names of artifacts and streams.
//!
//! Canonicalization, in order: a leading `/` is required; an encoded slash (`%2F`) is
//! refused; percent-escapes are decoded exactly once (the result must be UTF-8); the text is
//! NFC-normalized; control characters are refused; `//` collapses to `/`; `.` and `..`
//! segments are refused; the first segment must be a facet (`artifacts` or `streams`);
//! lengths are bounded; a literal `%` is re-encoded as `%25`. A trailing `/` marks a prefix
//! selector, anything else an exact selector. The result is idempotent: canonicalizing a
//! canonical path returns it unchanged.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unicode_normalization::UnicodeNormalization;

use crate::{CanonError, ErrorCode};

/// Longest canonical world path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest single segment of a canonical world path, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The placeholder every write prefix must contain.
pub const EXECUTION_ID_PLACEHOLDER: &str = "{execution_id}";

/// The top-level namespaces of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facet {
    /// `/artifacts/`: files.
    Artifacts,
    /// `/streams/`: append-only streams.
    Streams,
}

/// Whether a path names one thing or everything under it. Serialized as `exact` or
/// `prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectorKind {
    /// Names one artifact: no trailing `/`.
    Exact,
    /// Names everything below it: a trailing `/`.
    Prefix,
}

impl SelectorKind {
    /// `exact` or `prefix`, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            SelectorKind::Exact => "exact",
            SelectorKind::Prefix => "prefix",
        }
    }
}

/// A canonical world path, such as `/artifacts/outputs/demo/42/outputs.json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorldPath(String);

impl WorldPath {
    /// Canonicalizes `raw` (see the module docs).
    pub fn parse(raw: &str) -> Result<WorldPath, CanonError> {
        let err = |code, why: &str| CanonError::new(code, format!("{why}: `{raw}`"));
        if !raw.starts_with('/') {
            return Err(err(ErrorCode::BadPath, "must start with /"));
        }
        if raw.len() > MAX_PATH_BYTES * 3 {
            return Err(err(ErrorCode::PathTooLong, "input too long"));
        }
        let decoded = percent_decode_once(raw).map_err(|code| err(code, "cannot decode"))?;
        let normalized: String = decoded.nfc().collect();
        if normalized.chars().any(char::is_control) {
            return Err(err(ErrorCode::BadPath, "control character"));
        }
        let is_prefix = normalized.ends_with('/');
        let segments: Vec<&str> = normalized.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(err(ErrorCode::DotSegments, "`.` or `..` segment"));
        }
        match segments.first() {
            Some(&"artifacts") | Some(&"streams") => {}
            _ => return Err(err(ErrorCode::BadFacet, "unknown facet")),
        }
        let mut canonical = String::with_capacity(normalized.len() + 1);
        for segment in &segments {
            let encoded = segment.replace('%', "%25");
            if encoded.len() > MAX_SEGMENT_BYTES {
                return Err(err(ErrorCode::PathTooLong, "segment longer than 255 bytes"));
            }
            canonical.push('/');
            canonical.push_str(&encoded);
        }
        if is_prefix || segments.len() == 1 {
            canonical.push('/');
        }
        if canonical.len() > MAX_PATH_BYTES {
            return Err(err(ErrorCode::PathTooLong, "longer than 1024 bytes"));
        }
        Ok(WorldPath(canonical))
    }

    /// Canonicalizes `raw` and requires the given selector kind.
    pub fn parse_kind(raw: &str, kind: SelectorKind) -> Result<WorldPath, CanonError> {
        let path = WorldPath::parse(raw)?;
        if path.kind() != kind {
            let want = match kind {
                SelectorKind::Exact => "an exact path (no trailing /)",
                SelectorKind::Prefix => "a prefix (trailing /)",
            };
            return Err(CanonError::new(
                ErrorCode::SelectorKindMismatch,
                format!("expected {want}: `{raw}`"),
            ));
        }
        Ok(path)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The facet the path lives in.
    pub fn facet(&self) -> Facet {
        if self.0.starts_with("/artifacts/") {
            Facet::Artifacts
        } else {
            Facet::Streams
        }
    }

    /// Exact or prefix.
    pub fn kind(&self) -> SelectorKind {
        if self.0.ends_with('/') {
            SelectorKind::Prefix
        } else {
            SelectorKind::Exact
        }
    }

    /// Whether this selector covers `other` (a prefix covers everything below it; an exact
    /// path covers itself).
    pub fn covers(&self, other: &WorldPath) -> bool {
        match self.kind() {
            SelectorKind::Prefix => other.0.starts_with(&self.0),
            SelectorKind::Exact => self.0 == other.0,
        }
    }

    /// The path relative to the world root, without the leading `/`
    /// (`artifacts/outputs/x`), for mapping onto a directory.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }
}

/// Decodes each `%XX` once; `%2F` (a slash in disguise) and malformed escapes are refused.
fn percent_decode_once(raw: &str) -> Result<String, ErrorCode> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(ErrorCode::PercentDecode)?;
            let hex = std::str::from_utf8(hex).map_err(|_| ErrorCode::PercentDecode)?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| ErrorCode::PercentDecode)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ErrorCode::PercentDecode);
            }
            if byte == b'/' || byte == b'\\' {
                return Err(ErrorCode::DecodedSlash);
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ErrorCode::PercentDecode)
}

impl fmt::Display for WorldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for WorldPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WorldPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<WorldPath, D::Error> {
        let raw = String::deserialize(deserializer)?;
        WorldPath::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An expanded write prefix: a canonical prefix selector under `/artifacts/` that names
/// where one execution writes its outputs, index and receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePrefix(WorldPath);

impl WritePrefix {
    /// Expands `{execution_id}` in `template`, canonicalizes it, requires it to lie under
    /// `/artifacts/`, and adds a missing trailing `/`.
    pub fn expand(template: &str, execution_id: &str) -> Result<WritePrefix, CanonError> {
        if !template.contains(EXECUTION_ID_PLACEHOLDER) {
            return Err(CanonError::new(
                ErrorCode::WritePrefix,
                format!("`{template}` must contain {EXECUTION_ID_PLACEHOLDER}"),
            ));
        }
        refuse_other_placeholders(template)?;
        let expanded = template.replace(EXECUTION_ID_PLACEHOLDER, execution_id);
        WritePrefix::from_expanded(&expanded)
    }

    /// The write prefix a processor receives in its payload: a template that still holds
    /// `{execution_id}` is expanded with `execution_id` exactly as the orchestrator does
    /// ([`WritePrefix::expand`]); an expanded one is validated ([`WritePrefix::from_expanded`]).
    /// Either way, any other `{…}` placeholder left in it is refused.
    pub fn receive(raw: &str, execution_id: &str) -> Result<WritePrefix, CanonError> {
        if raw.contains(EXECUTION_ID_PLACEHOLDER) {
            return WritePrefix::expand(raw, execution_id);
        }
        refuse_other_placeholders(raw)?;
        WritePrefix::from_expanded(raw)
    }

    /// Validates an already expanded prefix (as a processor receives it).
    pub fn from_expanded(expanded: &str) -> Result<WritePrefix, CanonError> {
        let with_slash = if expanded.ends_with('/') {
            expanded.to_owned()
        } else {
            format!("{expanded}/")
        };
        let path = WorldPath::parse(&with_slash)?;
        if path.facet() != Facet::Artifacts || path.as_str() == "/artifacts/" {
            return Err(CanonError::new(
                ErrorCode::WritePrefix,
                format!("`{expanded}` must lie under /artifacts/"),
            ));
        }
        Ok(WritePrefix(path))
    }

    /// The prefix selector, ending in `/`.
    pub fn path(&self) -> &WorldPath {
        &self.0
    }

    /// The prefix text, ending in `/`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// `{prefix}outputs.json`.
    pub fn index_path(&self) -> WorldPath {
        WorldPath(format!("{}outputs.json", self.0))
    }

    /// `{prefix}receipt.json`.
    pub fn receipt_path(&self) -> WorldPath {
        WorldPath(format!("{}receipt.json", self.0))
    }

    /// `{prefix}outputs/`.
    pub fn outputs_dir(&self) -> WorldPath {
        WorldPath(format!("{}outputs/", self.0))
    }

    /// The world path of an output named relative to `{prefix}outputs/`. Absolute paths,
    /// `.`/`..` segments and trailing slashes are refused, so nothing escapes the prefix.
    pub fn output_path(&self, relative: &str) -> Result<WorldPath, CanonError> {
        if relative.is_empty() || relative.starts_with('/') {
            return Err(CanonError::new(
                ErrorCode::BadPath,
                format!("output path must be relative and non-empty: `{relative}`"),
            ));
        }
        let joined = format!("{}{relative}", self.outputs_dir());
        let path = WorldPath::parse_kind(&joined, SelectorKind::Exact)?;
        debug_assert!(self.outputs_dir().covers(&path));
        Ok(path)
    }
}

/// Refuses a `{name}` placeholder (braces around a run of characters without `/`) other
/// than `{execution_id}`: nothing expands it, so it would become a literal directory name.
fn refuse_other_placeholders(template: &str) -> Result<(), CanonError> {
    let rest = template.replace(EXECUTION_ID_PLACEHOLDER, "");
    let mut from = 0;
    while let Some(open) = rest[from..].find('{').map(|i| from + i) {
        let segment_end = rest[open..].find('/').map_or(rest.len(), |i| open + i);
        if let Some(close) = rest[open..segment_end].find('}') {
            return Err(CanonError::new(
                ErrorCode::WritePrefix,
                format!(
                    "`{template}` holds the placeholder `{}`; only {EXECUTION_ID_PLACEHOLDER} is expanded",
                    &rest[open..=open + close]
                ),
            ));
        }
        from = open + 1;
    }
    Ok(())
}

impl WorldPath {
    /// `/artifacts/execution/{execution_id}/receipt.json`.
    pub fn execution_receipt(execution_id: &str) -> Result<WorldPath, CanonError> {
        WorldPath::parse_kind(
            &format!("/artifacts/execution/{execution_id}/receipt.json"),
            SelectorKind::Exact,
        )
    }
}

impl fmt::Display for WritePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn code(raw: &str) -> ErrorCode {
        WorldPath::parse(raw).unwrap_err().code()
    }

    #[test]
    fn canonicalizes() {
        let cases = [
            ("/artifacts/a/b", "/artifacts/a/b"),
            ("/artifacts//a///b/", "/artifacts/a/b/"),
            ("/artifacts", "/artifacts/"),
            ("/streams/x", "/streams/x"),
            ("/artifacts/caf%C3%A9", "/artifacts/café"),
            ("/artifacts/caf%c3%a9", "/artifacts/café"),
            ("/artifacts/cafe\u{301}", "/artifacts/café"),
            ("/artifacts/100%25", "/artifacts/100%25"),
            ("/artifacts/a%2541", "/artifacts/a%2541"),
            ("/artifacts/a%20b", "/artifacts/a b"),
        ];
        for (raw, want) in cases {
            assert_eq!(WorldPath::parse(raw).unwrap().as_str(), want, "{raw}");
        }
    }

    #[test]
    fn refuses_with_canonical_codes() {
        assert_eq!(code("artifacts/a"), ErrorCode::BadPath);
        assert_eq!(code("/artifacts/a%2Fb"), ErrorCode::DecodedSlash);
        assert_eq!(code("/artifacts/a%2fb"), ErrorCode::DecodedSlash);
        assert_eq!(code("/artifacts/a%5Cb"), ErrorCode::DecodedSlash);
        assert_eq!(code("/artifacts/../etc"), ErrorCode::DotSegments);
        assert_eq!(code("/artifacts/./a"), ErrorCode::DotSegments);
        assert_eq!(code("/artifacts/%2E%2E/a"), ErrorCode::DotSegments);
        assert_eq!(code("/etc/passwd"), ErrorCode::BadFacet);
        assert_eq!(code("/"), ErrorCode::BadFacet);
        assert_eq!(code("/artifacts/a%zz"), ErrorCode::PercentDecode);
        assert_eq!(code("/artifacts/a%4"), ErrorCode::PercentDecode);
        assert_eq!(code("/artifacts/%FF"), ErrorCode::PercentDecode);
        assert_eq!(code("/artifacts/a%0Ab"), ErrorCode::BadPath);
        assert_eq!(
            code(&format!("/artifacts/{}", "a".repeat(256))),
            ErrorCode::PathTooLong
        );
        let long = format!("/artifacts{}", "/abcdefghi".repeat(110));
        assert_eq!(code(&long), ErrorCode::PathTooLong);
    }

    #[test]
    fn selector_kinds() {
        let err = WorldPath::parse_kind("/artifacts/a/", SelectorKind::Exact).unwrap_err();
        assert_eq!(err.code(), ErrorCode::SelectorKindMismatch);
        assert!(WorldPath::parse_kind("/artifacts/a", SelectorKind::Exact).is_ok());
        let err = WorldPath::parse_kind("/artifacts/a", SelectorKind::Prefix).unwrap_err();
        assert_eq!(err.code(), ErrorCode::SelectorKindMismatch);
        let prefix = WorldPath::parse("/artifacts/a/").unwrap();
        assert!(prefix.covers(&WorldPath::parse("/artifacts/a/b").unwrap()));
        assert!(!prefix.covers(&WorldPath::parse("/artifacts/ab").unwrap()));
        for kind in [SelectorKind::Exact, SelectorKind::Prefix] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<SelectorKind>(&json).unwrap(), kind);
        }
    }

    #[test]
    fn write_prefix_expands_and_normalizes() {
        let prefix = WritePrefix::expand("/artifacts/outputs/demo/{execution_id}", "e1").unwrap();
        assert_eq!(prefix.as_str(), "/artifacts/outputs/demo/e1/");
        assert_eq!(
            prefix.index_path().as_str(),
            "/artifacts/outputs/demo/e1/outputs.json"
        );
        assert_eq!(
            prefix.receipt_path().as_str(),
            "/artifacts/outputs/demo/e1/receipt.json"
        );
        assert_eq!(
            prefix.output_path("text/response.txt").unwrap().as_str(),
            "/artifacts/outputs/demo/e1/outputs/text/response.txt"
        );
    }

    #[test]
    fn write_prefix_refusals() {
        let code = |t: &str| WritePrefix::expand(t, "e1").unwrap_err().code();
        assert_eq!(code("/artifacts/outputs/demo"), ErrorCode::WritePrefix);
        assert_eq!(code("/streams/{execution_id}/"), ErrorCode::WritePrefix);
        assert_eq!(code("/artifacts/../{execution_id}"), ErrorCode::DotSegments);
        assert_eq!(code("outputs/{execution_id}"), ErrorCode::BadPath);
    }

    #[test]
    fn received_prefixes_expand_like_templates_and_refuse_other_placeholders() {
        for template in [
            "/artifacts/o/{execution_id}",
            "/artifacts/o/{execution_id}/x/",
        ] {
            assert_eq!(
                WritePrefix::receive(template, "e1").unwrap(),
                WritePrefix::expand(template, "e1").unwrap(),
                "{template}"
            );
        }
        assert_eq!(
            WritePrefix::receive("/artifacts/o/e1", "e1")
                .unwrap()
                .as_str(),
            "/artifacts/o/e1/"
        );
        for good in ["/artifacts/o/{a/b}/", "/artifacts/o/}{/", "/artifacts/o/{"] {
            assert!(WritePrefix::receive(good, "e1").is_ok(), "{good}");
        }
        for bad in [
            "/artifacts/o/{plan_id}/{execution_id}/",
            "/artifacts/o/{}/e1/",
            "/artifacts/o/{execution-id}/",
            "/artifacts/o/x{execution_id}{run}/",
        ] {
            let err = WritePrefix::receive(bad, "e1").unwrap_err();
            assert_eq!(err.code(), ErrorCode::WritePrefix, "{bad}");
            assert!(err.detail().contains("only {execution_id}"), "{bad}: {err}");
        }
        let err = WritePrefix::expand("/artifacts/{plan}/{execution_id}", "e1").unwrap_err();
        assert_eq!(err.code(), ErrorCode::WritePrefix);
    }

    #[test]
    fn output_paths_cannot_escape() {
        let prefix = WritePrefix::expand("/artifacts/o/{execution_id}/", "e1").unwrap();
        for bad in ["../x", "a/../../x", "/x", "", "a/", "./a", "a%2Fb"] {
            assert!(prefix.output_path(bad).is_err(), "{bad}");
        }
    }

    /// Strings that often start like a world path, and anything else.
    pub(crate) fn raw_world_paths() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "(/artifacts|/streams|/)(/[a-zA-Z0-9%./é\u{301} \t-]{0,12}){0,6}/?",
            any::<String>().prop_map(|tail| format!("/artifacts/{tail}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_string_parses_without_panic_to_a_canonical_path(raw in raw_world_paths()) {
            if let Ok(path) = WorldPath::parse(&raw) {
                let text = path.as_str();
                prop_assert_eq!(&WorldPath::parse(text).unwrap(), &path);
                prop_assert!(!text.split('/').any(|s| s == "." || s == ".."), "{}", text);
                prop_assert!(!text.contains("%2F") && !text.contains("%2f"), "{}", text);
                prop_assert!(text.len() <= MAX_PATH_BYTES);
            }
        }
    }

    proptest! {
        #[test]
        fn canonicalization_is_idempotent(raw in "/(artifacts|streams)(/[a-zA-Z0-9%._ é\u{301}-]{0,12}){0,6}/?") {
            if let Ok(once) = WorldPath::parse(&raw) {
                let twice = WorldPath::parse(once.as_str()).unwrap();
                prop_assert_eq!(&once, &twice);
            }
        }

        #[test]
        fn any_text_is_a_world_path_and_a_write_prefix_or_refused(raw in prop_oneof![
            "\\PC{0,48}",
            "/artifacts/[%{}a-zA-F0-9./\\\\_é-]{0,40}",
            "/artifacts/[a-z%./]{0,12}\\{execution_id\\}[a-z%./]{0,12}",
        ]) {
            if let Ok(path) = WorldPath::parse(&raw) {
                prop_assert_eq!(&WorldPath::parse(path.as_str()).unwrap(), &path);
                prop_assert_eq!(format!("/{}", path.relative()), path.as_str());
            }
            if let Ok(prefix) = WritePrefix::expand(&raw, "0b9c1e52-58f1-4a8e-8f0e-9d2b7f6f9c11") {
                prop_assert!(prefix.as_str().starts_with("/artifacts/"), "{}", prefix);
                prop_assert!(prefix.as_str().ends_with('/'), "{}", prefix);
                prop_assert!(prefix.index_path().as_str().starts_with(prefix.as_str()));
            }
            if let Ok(prefix) = WritePrefix::from_expanded(&raw) {
                prop_assert_eq!(&WritePrefix::from_expanded(prefix.as_str()).unwrap(), &prefix);
            }
        }

        #[test]
        fn canonical_paths_have_no_dots_doubles_or_encoded_slashes(raw in "/artifacts/[a-z%2Ff./]{0,40}") {
            if let Ok(path) = WorldPath::parse(&raw) {
                let text = path.as_str();
                prop_assert!(!text.contains("//"));
                prop_assert!(!text.contains("%2F") && !text.contains("%2f"));
                prop_assert!(!text.split('/').any(|s| s == "." || s == ".."));
            }
        }
    }
}
