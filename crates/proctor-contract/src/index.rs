//! The outputs index: `{"outputs":[…]}`, compact UTF-8 JSON sorted by path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CanonError, ErrorCode, WorldPath};

/// One output of an execution, as listed in the index and the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputEntry {
    /// Canonical world path of the output.
    pub path: WorldPath,
    /// Content id of its bytes (`b3:…`).
    pub cid: String,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// Its media type.
    pub mime: String,
}

/// The outputs index written to `{write_prefix}outputs.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsIndex {
    /// Entries sorted by path, no two equal after canonicalization.
    pub outputs: Vec<OutputEntry>,
}

impl OutputsIndex {
    /// Builds an index from entries whose paths are given raw: each is canonicalized, the
    /// entries are sorted by canonical path, and two that collide are
    /// `ERR_OUTPUT_DUPLICATE`.
    pub fn build(
        entries: impl IntoIterator<Item = (String, String, u64, String)>,
    ) -> Result<OutputsIndex, CanonError> {
        let mut by_path = BTreeMap::new();
        for (raw_path, cid, size_bytes, mime) in entries {
            let path = WorldPath::parse(&raw_path)?;
            if by_path.contains_key(&path) {
                return Err(CanonError::new(
                    ErrorCode::OutputDuplicate,
                    format!("`{raw_path}` is `{path}` again"),
                ));
            }
            by_path.insert(
                path.clone(),
                OutputEntry {
                    path,
                    cid,
                    size_bytes,
                    mime,
                },
            );
        }
        Ok(OutputsIndex {
            outputs: by_path.into_values().collect(),
        })
    }

    /// The compact JSON bytes written to disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an index always serializes")
    }

    /// Parses index bytes, re-checking order and duplicates.
    pub fn from_bytes(bytes: &[u8]) -> Result<OutputsIndex, CanonError> {
        let index: OutputsIndex = serde_json::from_slice(bytes)
            .map_err(|e| CanonError::new(ErrorCode::Envelope, format!("outputs index: {e}")))?;
        for pair in index.outputs.windows(2) {
            if pair[0].path == pair[1].path {
                return Err(CanonError::new(
                    ErrorCode::OutputDuplicate,
                    pair[0].path.to_string(),
                ));
            }
            if pair[0].path > pair[1].path {
                return Err(CanonError::new(
                    ErrorCode::Envelope,
                    "outputs index is not sorted",
                ));
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::world_path::tests::raw_world_paths;

    fn entry(path: &str) -> (String, String, u64, String) {
        (
            path.to_owned(),
            "b3:00".to_owned(),
            1,
            "text/plain".to_owned(),
        )
    }

    #[test]
    fn sorts_by_path_and_serializes_compactly() {
        let index =
            OutputsIndex::build([entry("/artifacts/o/b"), entry("/artifacts/o/a")]).unwrap();
        assert_eq!(
            String::from_utf8(index.to_bytes()).unwrap(),
            r#"{"outputs":[{"path":"/artifacts/o/a","cid":"b3:00","size_bytes":1,"mime":"text/plain"},{"path":"/artifacts/o/b","cid":"b3:00","size_bytes":1,"mime":"text/plain"}]}"#
        );
        assert_eq!(OutputsIndex::from_bytes(&index.to_bytes()).unwrap(), index);
    }

    #[test]
    fn duplicates_after_canonicalization_are_refused() {
        for (a, b) in [
            ("/artifacts/o/caf%C3%A9", "/artifacts/o/caf%c3%a9"),
            ("/artifacts/o/café", "/artifacts/o/cafe\u{301}"),
            ("/artifacts/o//x", "/artifacts/o/x"),
        ] {
            let err = OutputsIndex::build([entry(a), entry(b)]).unwrap_err();
            assert_eq!(err.code(), ErrorCode::OutputDuplicate);
            assert!(
                err.message()
                    .contains("duplicate output after canonicalization")
            );
        }
    }

    #[test]
    fn unsorted_index_bytes_are_refused() {
        let bytes = br#"{"outputs":[{"path":"/artifacts/b","cid":"b3:0","size_bytes":1,"mime":"x"},{"path":"/artifacts/a","cid":"b3:0","size_bytes":1,"mime":"x"}]}"#;
        assert_eq!(
            OutputsIndex::from_bytes(bytes).unwrap_err().code(),
            ErrorCode::Envelope
        );
    }

    /// Entries whose paths are canonical, in any order, possibly repeated.
    fn entries() -> impl Strategy<Value = Vec<OutputEntry>> {
        let entry = (raw_world_paths(), ".{0,8}", any::<u64>(), ".{0,8}").prop_filter_map(
            "the path must canonicalize",
            |(raw, cid, size_bytes, mime)| {
                Some(OutputEntry {
                    path: WorldPath::parse(&raw).ok()?,
                    cid,
                    size_bytes,
                    mime,
                })
            },
        );
        proptest::collection::vec(entry, 0..5)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_bytes_are_parsed_without_panic(bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            entries().prop_map(|outputs| serde_json::to_vec_pretty(&OutputsIndex { outputs }).unwrap()),
        ]) {
            if let Ok(index) = OutputsIndex::from_bytes(&bytes) {
                let canonical = index.to_bytes();
                let again = OutputsIndex::from_bytes(&canonical).unwrap();
                prop_assert_eq!(&again, &index);
                prop_assert_eq!(again.to_bytes(), canonical);
            }
        }

        #[test]
        fn accepted_index_bytes_reserialize_to_the_same_bytes(outputs in entries(), sort in any::<bool>()) {
            let mut outputs = outputs;
            if sort {
                outputs.sort_by(|a, b| a.path.cmp(&b.path));
            }
            let bytes = OutputsIndex { outputs }.to_bytes();
            if let Ok(index) = OutputsIndex::from_bytes(&bytes) {
                prop_assert_eq!(index.to_bytes(), bytes);
            }
        }
    }
}
