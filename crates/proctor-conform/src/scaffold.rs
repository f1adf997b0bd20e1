//! `proctor new NS/NAME@VERSION --lang rust|python`: a new processor's directory,
//! `<registry root>/NS/NAME/VERSION/`, written from the templates under this crate's
//! `templates/` with the names substituted, that passes `proctor conform` and
//! `proctor run --build --mode mock` as it is.
//!
//! - **Rust:** `registry.yaml` (an inputs schema, the `smoke` example), the documenting
//!   `Dockerfile`, `Cargo.toml`, `src/main.rs`, the provider in `src/lib.rs` and one test in
//!   `tests/processor.rs`. The package, `processor-NS-NAME-vVERSION`, joins the workspace's
//!   `members` (and `default-members`, when the workspace lists them) in the root
//!   `Cargo.toml`, edited in place as `cargo new` does, so `--build` compiles it as every
//!   shipped processor is compiled.
//! - **Python:** `registry.yaml`, a `Dockerfile` taking `BASE_IMAGE` and installing wheels
//!   with `--no-index`, `main.py`, the provider in `provider.py`, `requirements.txt` and one
//!   test in `tests/test_provider.py`.
//!
//! An existing directory or a bad ref is refused (`ERR_REGISTRY`, `ERR_PROCESSOR_REF`) and
//! nothing is written. The directory appears whole (its files are written into a temporary
//! sibling that is renamed into place); if the workspace manifest cannot be updated, it is
//! removed again.

use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, ErrorCode, ProcessorRef};
use toml_edit::{Array, DocumentMut, Item, Value};

/// A processor's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A Rust package of the Cargo workspace, on the Rust SDK.
    Rust,
    /// A Python program on the Python SDK, built from its Dockerfile.
    Python,
}

/// What to scaffold, and where.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// `ns/name@version`, as given.
    pub processor_ref: String,
    /// The language.
    pub lang: Lang,
    /// The registry root the directory goes under.
    pub registry_root: PathBuf,
    /// The Cargo workspace root, whose `Cargo.toml` a Rust package joins.
    pub workspace_root: PathBuf,
}

/// What [`new_processor`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffolded {
    /// The processor.
    pub processor_ref: ProcessorRef,
    /// Its new directory.
    pub dir: PathBuf,
    /// The files in it, relative, in the order written.
    pub files: Vec<String>,
    /// The workspace member added to the root `Cargo.toml` (Rust).
    pub workspace_member: Option<String>,
}

/// One template: where its output goes in the new directory, and its text.
type Template = (&'static str, &'static str);

const RUST_TEMPLATES: &[Template] = &[
    (
        "registry.yaml",
        include_str!("../templates/rust/registry.yaml.tmpl"),
    ),
    (
        "Dockerfile",
        include_str!("../templates/rust/Dockerfile.tmpl"),
    ),
    (
        "Cargo.toml",
        include_str!("../templates/rust/Cargo.toml.tmpl"),
    ),
    (
        "src/main.rs",
        include_str!("../templates/rust/main.rs.tmpl"),
    ),
    ("src/lib.rs", include_str!("../templates/rust/lib.rs.tmpl")),
    (
        "tests/processor.rs",
        include_str!("../templates/rust/processor.rs.tmpl"),
    ),
];

const PYTHON_TEMPLATES: &[Template] = &[
    (
        "registry.yaml",
        include_str!("../templates/python/registry.yaml.tmpl"),
    ),
    (
        "Dockerfile",
        include_str!("../templates/python/Dockerfile.tmpl"),
    ),
    ("main.py", include_str!("../templates/python/main.py.tmpl")),
    (
        "provider.py",
        include_str!("../templates/python/provider.py.tmpl"),
    ),
    (
        "requirements.txt",
        include_str!("../templates/python/requirements.txt.tmpl"),
    ),
    (
        "tests/test_provider.py",
        include_str!("../templates/python/test_provider.py.tmpl"),
    ),
];

/// Writes the new processor `request` asks for; see the module documentation.
pub fn new_processor(request: &NewRequest) -> Result<Scaffolded, CanonError> {
    let processor_ref: ProcessorRef = request.processor_ref.parse()?;
    let dir = request
        .registry_root
        .join(processor_ref.namespace())
        .join(processor_ref.name())
        .join(processor_ref.version());
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Err(CanonError::new(
            ErrorCode::Registry,
            format!(
                "{} already exists; a new processor needs a directory of its own",
                dir.display()
            ),
        ));
    }
    let names = Names::of(&processor_ref);
    let (templates, manifest) = match request.lang {
        Lang::Rust => {
            let manifest_path = request.workspace_root.join("Cargo.toml");
            let member = member_path(&request.workspace_root, &dir)?;
            let edited = with_member(&manifest_path, &member)?;
            (
                RUST_TEMPLATES,
                edited.map(|text| (manifest_path, member, text)),
            )
        }
        Lang::Python => (PYTHON_TEMPLATES, None),
    };
    let files: Vec<(&str, String)> = templates
        .iter()
        .map(|(path, text)| (*path, names.fill(text)))
        .collect();
    let created = write_directory(&dir, &files)?;
    let workspace_member = match manifest {
        None => None,
        Some((path, member, text)) => {
            if let Err(error) = proctor_fs::write_atomically(&path, text.as_bytes(), None) {
                let _ = std::fs::remove_dir_all(&created);
                return Err(CanonError::new(
                    ErrorCode::Registry,
                    format!("cannot update {}: {error}", path.display()),
                ));
            }
            Some(member)
        }
    };
    Ok(Scaffolded {
        processor_ref,
        dir,
        files: files.iter().map(|(path, _)| (*path).to_owned()).collect(),
        workspace_member,
    })
}

/// The names the templates use.
struct Names {
    processor_ref: String,
    package: String,
}

impl Names {
    fn of(processor_ref: &ProcessorRef) -> Names {
        Names {
            processor_ref: processor_ref.to_string(),
            package: format!(
                "processor-{}-{}-v{}",
                processor_ref.namespace(),
                processor_ref.name(),
                processor_ref.version().replace('.', "_")
            ),
        }
    }

    /// `template` with `{{ref}}`, `{{package}}` and `{{crate}}` (the package's library
    /// name) filled in.
    fn fill(&self, template: &str) -> String {
        template
            .replace("{{ref}}", &self.processor_ref)
            .replace("{{package}}", &self.package)
            .replace("{{crate}}", &self.package.replace('-', "_"))
    }
}

/// `dir` relative to the workspace root, `/`-separated: the member to add.
fn member_path(workspace_root: &Path, dir: &Path) -> Result<String, CanonError> {
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let relative = absolute(dir)
        .strip_prefix(absolute(workspace_root))
        .map(Path::to_path_buf)
        .map_err(|_| {
            CanonError::new(
                ErrorCode::Registry,
                format!(
                    "{} is outside the workspace {}: a Rust processor must be a member of it",
                    dir.display(),
                    workspace_root.display()
                ),
            )
        })?;
    Ok(relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/"))
}

/// The workspace manifest at `path` with `member` added to `members` (and to
/// `default-members` when present), as text; `None` when `members` already covers it.
fn with_member(path: &Path, member: &str) -> Result<Option<String>, CanonError> {
    let invalid = |why: String| {
        CanonError::new(
            ErrorCode::Registry,
            format!("workspace manifest {}: {why}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|error| invalid(error.to_string()))?;
    let mut manifest: DocumentMut = text.parse().map_err(|error| invalid(format!("{error}")))?;
    let workspace = manifest
        .get_mut("workspace")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| invalid("no [workspace] table".to_owned()))?;
    let members = workspace
        .get("members")
        .and_then(Item::as_array)
        .ok_or_else(|| invalid("no workspace.members array".to_owned()))?;
    if covers(members, member) {
        return Ok(None);
    }
    for key in ["members", "default-members"] {
        if let Some(list) = workspace.get_mut(key).and_then(Item::as_array_mut) {
            list.push(member);
        }
    }
    Ok(Some(manifest.to_string()))
}

/// Whether one of `members` (paths or `*` globs, one segment each) names `member`.
fn covers(members: &Array, member: &str) -> bool {
    let wanted: Vec<&str> = member.split('/').collect();
    members.iter().filter_map(Value::as_str).any(|pattern| {
        let parts: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
        parts.len() == wanted.len()
            && parts
                .iter()
                .zip(&wanted)
                .all(|(pattern, part)| *pattern == "*" || pattern == part)
    })
}

/// Writes `files` into a temporary sibling of `dir` and renames it into place; gives the
/// outermost directory it created (`dir` or a parent it had to make), for undoing it.
fn write_directory(dir: &Path, files: &[(&str, String)]) -> Result<PathBuf, CanonError> {
    let failed = |what: &Path, error: std::io::Error| {
        CanonError::new(
            ErrorCode::Registry,
            format!("cannot write {}: {error}", what.display()),
        )
    };
    let parent = dir.parent().expect("a processor directory has a parent");
    let created = dir
        .ancestors()
        .take_while(|ancestor| std::fs::symlink_metadata(ancestor).is_err())
        .last()
        .unwrap_or(dir)
        .to_path_buf();
    std::fs::create_dir_all(parent).map_err(|error| failed(parent, error))?;
    let written = (|| {
        let staging = tempfile::Builder::new()
            .prefix(".proctor-new-")
            .tempdir_in(parent)
            .map_err(|error| failed(parent, error))?;
        for (relative, text) in files {
            let path = staging.path().join(relative);
            if let Some(directory) = path.parent() {
                std::fs::create_dir_all(directory).map_err(|error| failed(directory, error))?;
            }
            std::fs::write(&path, text).map_err(|error| failed(&path, error))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, dir).map_err(|error| {
            let _ = std::fs::remove_dir_all(&staged);
            failed(dir, error)
        })
    })();
    if let Err(error) = written {
        if created != dir {
            let _ = std::fs::remove_dir_all(&created);
        }
        return Err(error);
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"[workspace]
resolver = "3"
# the members
members = ["crates/*", "processors/text/stats/1"]
default-members = ["crates/*"]

[workspace.package]
version = "0.1.0"
"#;

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), MANIFEST).unwrap();
        dir
    }

    fn request(root: &Path, processor_ref: &str, lang: Lang) -> NewRequest {
        NewRequest {
            processor_ref: processor_ref.to_owned(),
            lang,
            registry_root: root.join("processors"),
            workspace_root: root.to_path_buf(),
        }
    }

    #[test]
    fn a_rust_processor_is_written_and_joins_the_workspace() {
        let root = workspace();
        let made = new_processor(&request(root.path(), "acme/echo@1", Lang::Rust)).unwrap();
        assert_eq!(made.dir, root.path().join("processors/acme/echo/1"));
        assert_eq!(
            made.workspace_member.as_deref(),
            Some("processors/acme/echo/1")
        );
        let manifest = std::fs::read_to_string(root.path().join("Cargo.toml")).unwrap();
        assert_eq!(
            manifest,
            MANIFEST
                .replace(
                    r#""processors/text/stats/1"]"#,
                    r#""processors/text/stats/1", "processors/acme/echo/1"]"#
                )
                .replace(
                    r#"default-members = ["crates/*"]"#,
                    r#"default-members = ["crates/*", "processors/acme/echo/1"]"#
                )
        );
        let cargo = std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap();
        assert!(
            cargo.contains(r#"name = "processor-acme-echo-v1""#),
            "{cargo}"
        );
        let main = std::fs::read_to_string(made.dir.join("src/main.rs")).unwrap();
        assert!(
            main.contains("processor_acme_echo_v1::definition()"),
            "{main}"
        );
        for (path, _) in RUST_TEMPLATES {
            let text = std::fs::read_to_string(made.dir.join(path)).unwrap();
            assert!(!text.contains("{{"), "{path} keeps a placeholder");
        }
        let siblings: Vec<_> = std::fs::read_dir(made.dir.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(siblings, ["1"], "no temporary directory is left");
    }

    #[test]
    fn a_member_a_glob_covers_is_not_added_twice() {
        let root = workspace();
        std::fs::write(
            root.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"processors/*/*/*\"]\n",
        )
        .unwrap();
        let made = new_processor(&request(root.path(), "acme/echo@2", Lang::Rust)).unwrap();
        assert_eq!(made.workspace_member, None);
        assert_eq!(
            std::fs::read_to_string(root.path().join("Cargo.toml")).unwrap(),
            "[workspace]\nmembers = [\"processors/*/*/*\"]\n"
        );
    }

    #[test]
    fn a_python_processor_leaves_the_workspace_alone() {
        let root = workspace();
        let made = new_processor(&request(root.path(), "acme/echo@1", Lang::Python)).unwrap();
        assert_eq!(made.workspace_member, None);
        let provider = std::fs::read_to_string(made.dir.join("provider.py")).unwrap();
        assert!(
            provider.contains(r#"PROCESSOR_REF = "acme/echo@1""#),
            "{provider}"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("Cargo.toml")).unwrap(),
            MANIFEST
        );
    }

    #[test]
    fn bad_refs_and_existing_directories_write_nothing() {
        let root = workspace();
        for bad in ["acme/echo", "Acme/echo@1", "acme/echo@1/x", "../x@1"] {
            let error = new_processor(&request(root.path(), bad, Lang::Rust)).unwrap_err();
            assert_eq!(error.code(), ErrorCode::ProcessorRef, "{bad}: {error}");
        }
        assert!(!root.path().join("processors").exists());

        std::fs::create_dir_all(root.path().join("processors/acme/echo/1")).unwrap();
        let error = new_processor(&request(root.path(), "acme/echo@1", Lang::Rust)).unwrap_err();
        assert_eq!(error.code(), ErrorCode::Registry);
        assert!(error.message().contains("already exists"), "{error}");
        assert_eq!(
            std::fs::read_to_string(root.path().join("Cargo.toml")).unwrap(),
            MANIFEST
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("processors/acme/echo/1"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_workspace_without_members_refuses_a_rust_processor_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        let error = new_processor(&request(root.path(), "acme/echo@1", Lang::Rust)).unwrap_err();
        assert_eq!(error.code(), ErrorCode::Registry);
        assert!(error.message().contains("no [workspace] table"), "{error}");
        assert!(!root.path().join("processors").exists());
    }
}
