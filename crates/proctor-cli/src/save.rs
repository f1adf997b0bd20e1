//! `--save-dir`: copy a successful run's outputs and index out of the artifacts root,
//! mirroring world paths (`/artifacts/x` → `DIR/artifacts/x`), checking each file against
//! the envelope on the way.

use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, ErrorCode, OutputsIndex, SuccessEnvelope, WorldPath, cid};

/// The host file backing an `/artifacts/…` world path.
fn host_path(artifacts_root: &Path, path: &WorldPath) -> Result<PathBuf, CanonError> {
    path.relative()
        .strip_prefix("artifacts/")
        .map(|below| artifacts_root.join(below))
        .ok_or_else(|| write_error(format!("`{path}` is not under /artifacts/")))
}

fn write_error(detail: String) -> CanonError {
    CanonError::new(ErrorCode::OutputWrite, detail)
}

fn read(path: &Path) -> Result<Vec<u8>, CanonError> {
    std::fs::read(path).map_err(|e| write_error(format!("cannot read `{}`: {e}", path.display())))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CanonError> {
    let fail = |e: std::io::Error| write_error(format!("cannot write `{}`: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, bytes).map_err(fail)
}

/// Copies every output and the index to `save_dir`; a file that is missing or whose size,
/// content id or index differs from the envelope is `ERR_OUTPUT_WRITE`.
pub(crate) fn save_outputs(
    envelope: &SuccessEnvelope,
    artifacts_root: &Path,
    save_dir: &Path,
) -> Result<(), CanonError> {
    let index_bytes = read(&host_path(artifacts_root, &envelope.index_path)?)?;
    let index = OutputsIndex::from_bytes(&index_bytes)
        .map_err(|e| write_error(format!("`{}`: {}", envelope.index_path, e.message())))?;
    if index.outputs != envelope.outputs {
        return Err(write_error(format!(
            "`{}` differs from the envelope",
            envelope.index_path
        )));
    }
    for output in &envelope.outputs {
        let bytes = read(&host_path(artifacts_root, &output.path)?)?;
        if bytes.len() as u64 != output.size_bytes || cid(&bytes) != output.cid {
            return Err(write_error(format!(
                "`{}` on disk does not match its size and cid in the envelope",
                output.path
            )));
        }
        write(&save_dir.join(output.path.relative()), &bytes)?;
    }
    write(&save_dir.join(envelope.index_path.relative()), &index_bytes)
}

#[cfg(test)]
mod tests {
    use proctor_contract::{Envelope, Mode, SuccessMeta, WritePrefix};

    use super::*;

    fn envelope_for(files: &[(&str, &[u8])], prefix: &WritePrefix) -> SuccessEnvelope {
        let index = OutputsIndex::build(files.iter().map(|(name, bytes)| {
            let path = prefix.output_path(name).unwrap().to_string();
            (
                path,
                cid(bytes),
                bytes.len() as u64,
                "text/plain".to_owned(),
            )
        }))
        .unwrap();
        let meta = SuccessMeta {
            image_digest: "sha256:00".into(),
            env_fingerprint: "mode=mock".into(),
            duration_ms: 1,
            mode: Mode::Mock,
        };
        match Envelope::success("e1", index.outputs, prefix.index_path(), meta) {
            Envelope::Success(success) => success,
            Envelope::Error(_) => unreachable!(),
        }
    }

    /// An artifacts root holding the outputs and index of a run, and its envelope.
    fn artifacts(files: &[(&str, &[u8])]) -> (tempfile::TempDir, SuccessEnvelope) {
        let root = tempfile::tempdir().unwrap();
        let prefix = WritePrefix::expand("/artifacts/o/{execution_id}", "e1").unwrap();
        let envelope = envelope_for(files, &prefix);
        for output in &envelope.outputs {
            let bytes = files
                .iter()
                .find(|(name, _)| output.path.as_str().ends_with(name))
                .unwrap()
                .1;
            write(&host_path(root.path(), &output.path).unwrap(), bytes).unwrap();
        }
        let index = OutputsIndex {
            outputs: envelope.outputs.clone(),
        };
        write(
            &host_path(root.path(), &envelope.index_path).unwrap(),
            &index.to_bytes(),
        )
        .unwrap();
        (root, envelope)
    }

    #[test]
    fn copies_outputs_and_index_mirroring_world_paths() {
        let (root, envelope) = artifacts(&[("a.txt", b"abc"), ("d/b.txt", b"")]);
        let save = tempfile::tempdir().unwrap();
        save_outputs(&envelope, root.path(), save.path()).unwrap();
        let saved = save.path().join("artifacts/o/e1");
        assert_eq!(std::fs::read(saved.join("outputs/a.txt")).unwrap(), b"abc");
        assert_eq!(std::fs::read(saved.join("outputs/d/b.txt")).unwrap(), b"");
        let index = std::fs::read(saved.join("outputs.json")).unwrap();
        assert_eq!(
            OutputsIndex::from_bytes(&index).unwrap().outputs,
            envelope.outputs
        );
    }

    #[test]
    fn refuses_files_that_differ_from_the_envelope() {
        let (root, envelope) = artifacts(&[("a.txt", b"abc")]);
        std::fs::write(root.path().join("o/e1/outputs/a.txt"), b"abd").unwrap();
        let save = tempfile::tempdir().unwrap();
        let err = save_outputs(&envelope, root.path(), save.path()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::OutputWrite);
        assert!(
            err.message().contains("does not match its size and cid"),
            "{err}"
        );

        std::fs::remove_file(root.path().join("o/e1/outputs.json")).unwrap();
        let err = save_outputs(&envelope, root.path(), save.path()).unwrap_err();
        assert!(
            err.message()
                .starts_with("output write failed: cannot read"),
            "{err}"
        );

        let mut other = envelope.clone();
        other.outputs.clear();
        let (root, _) = artifacts(&[("a.txt", b"abc")]);
        let err = save_outputs(&other, root.path(), save.path()).unwrap_err();
        assert!(err.message().contains("differs from the envelope"), "{err}");
    }
}
