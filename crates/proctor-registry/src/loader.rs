//! Loading a registry root: walk `<ns>/<name>/<version>/registry.yaml`, parse each file
//! strictly and check it once, so every later lookup works on a valid entry.
//!
//! The walk never leaves the root: every symbolic link it meets — a namespace, name or
//! version directory, or a `registry.yaml` — is refused, whether it points inside the root
//! or out of it, and its target is never read. Each `registry.yaml` is opened without
//! following a final link, must be a regular file of at most
//! [`MAX_REGISTRY_FILE_BYTES`], and an error quotes at most a short, redacted excerpt of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, ErrorCode, ProcessorRef, Redactor, WritePrefix};

use crate::checks::{compile_schema, schema_violation};
use crate::{Build, ProcessorSpec, Runtime};

/// The file name that declares one processor version.
pub const REGISTRY_FILE: &str = "registry.yaml";

/// The example every processor must declare; the README and smoke tests run it.
const SMOKE_EXAMPLE: &str = "smoke";

/// The largest `registry.yaml` the loader reads; a larger one is `ERR_REGISTRY`.
const MAX_REGISTRY_FILE_BYTES: u64 = 1024 * 1024;

/// The most bytes of a file's content (or of a message built from it) an error quotes.
const MAX_EXCERPT_BYTES: usize = 120;

/// One loaded processor version and where it was found.
#[derive(Debug, Clone)]
pub struct RegisteredProcessor {
    spec: ProcessorSpec,
    dir: PathBuf,
}

impl RegisteredProcessor {
    /// The parsed, checked `registry.yaml`.
    pub fn spec(&self) -> &ProcessorSpec {
        &self.spec
    }

    /// The directory holding `registry.yaml` (`<root>/<ns>/<name>/<version>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of its `registry.yaml`.
    pub fn file(&self) -> PathBuf {
        self.dir.join(REGISTRY_FILE)
    }
}

/// Every processor version under one registry root, by ref.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    processors: BTreeMap<ProcessorRef, RegisteredProcessor>,
}

impl Registry {
    /// Loads every `<ns>/<name>/<version>/registry.yaml` under `root`. Directories without
    /// a `registry.yaml` and hidden entries are skipped; any invalid file, and any symbolic
    /// link on the way (see the module documentation), is `ERR_REGISTRY` naming it.
    pub fn load(root: &Path) -> Result<Registry, CanonError> {
        let mut processors = BTreeMap::new();
        for version in version_dirs(root)? {
            let spec = load_file(&version.join(REGISTRY_FILE), &expected_ref(root, &version))?;
            processors.insert(
                spec.processor_ref.clone(),
                RegisteredProcessor { spec, dir: version },
            );
        }
        Ok(Registry {
            root: root.to_path_buf(),
            processors,
        })
    }

    /// The root it was loaded from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry for `processor_ref`, or `ERR_UNKNOWN_PROCESSOR`.
    pub fn get(&self, processor_ref: &ProcessorRef) -> Result<&RegisteredProcessor, CanonError> {
        self.processors.get(processor_ref).ok_or_else(|| {
            let known: Vec<String> = self.processors.keys().map(ToString::to_string).collect();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            CanonError::new(
                ErrorCode::UnknownProcessor,
                format!(
                    "`{processor_ref}` has no {REGISTRY_FILE} under `{}` (known: {known})",
                    self.root.display()
                ),
            )
        })
    }

    /// Every entry, sorted by ref.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredProcessor> {
        self.processors.values()
    }

    /// How many processor versions it holds.
    pub fn len(&self) -> usize {
        self.processors.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.processors.is_empty()
    }
}

/// The `<ns>/<name>/<version>` directories under `root` that hold a `registry.yaml`, in
/// order; a symbolic link on the way is refused.
fn version_dirs(root: &Path) -> Result<Vec<PathBuf>, CanonError> {
    let mut versions = Vec::new();
    for namespace in subdirectories(root)? {
        for name in subdirectories(&namespace)? {
            for version in subdirectories(&name)? {
                if registry_file_exists(&version.join(REGISTRY_FILE))? {
                    versions.push(version);
                }
            }
        }
    }
    Ok(versions)
}

/// A registry loaded once and loaded again only when a `registry.yaml` under its root was
/// added, removed or rewritten, so a long-lived caller pays a walk of the root per lookup,
/// not a parse of every file. A file counts as rewritten when its inode, size, or change
/// or modification time differs (an atomic rewrite always gets a new inode).
#[derive(Debug, Default)]
pub struct RegistryCache {
    loaded: std::sync::Mutex<Option<LoadedRegistry>>,
}

#[derive(Debug)]
struct LoadedRegistry {
    stamps: Vec<FileStamp>,
    registry: std::sync::Arc<Registry>,
}

/// What tells one `registry.yaml` from a rewrite of it.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp {
    file: PathBuf,
    inode: u64,
    size: u64,
    changed: (i64, i64),
    modified: (i64, i64),
}

impl RegistryCache {
    /// The registry under `root`, as [`Registry::load`] would load it now.
    pub fn get(&self, root: &Path) -> Result<std::sync::Arc<Registry>, CanonError> {
        use std::os::unix::fs::MetadataExt as _;
        let mut stamps = Vec::new();
        for version in version_dirs(root)? {
            let file = version.join(REGISTRY_FILE);
            let metadata = std::fs::symlink_metadata(&file)
                .map_err(|e| invalid(&file, format!("cannot read: {e}")))?;
            stamps.push(FileStamp {
                inode: metadata.ino(),
                size: metadata.size(),
                changed: (metadata.ctime(), metadata.ctime_nsec()),
                modified: (metadata.mtime(), metadata.mtime_nsec()),
                file,
            });
        }
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(kept) = loaded.as_ref()
            && kept.registry.root() == root
            && kept.stamps == stamps
        {
            return Ok(std::sync::Arc::clone(&kept.registry));
        }
        let registry = std::sync::Arc::new(Registry::load(root)?);
        *loaded = Some(LoadedRegistry {
            stamps,
            registry: std::sync::Arc::clone(&registry),
        });
        Ok(registry)
    }
}

/// `ERR_REGISTRY` for `path`.
fn invalid(path: &Path, detail: impl std::fmt::Display) -> CanonError {
    CanonError::new(ErrorCode::Registry, format!("{}: {detail}", path.display()))
}

/// `ERR_REGISTRY` for a symbolic link met on the walk.
fn refused_link(path: &Path) -> CanonError {
    invalid(
        path,
        "is a symbolic link; the registry does not follow links (they could lead out of its root)",
    )
}

/// The visible subdirectories of `dir`, sorted. A visible symbolic link is refused without
/// looking at its target.
fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>, CanonError> {
    let entries = std::fs::read_dir(dir).map_err(|e| invalid(dir, format!("cannot read: {e}")))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| invalid(dir, format!("cannot read: {e}")))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(|e| invalid(&path, format!("cannot read: {e}")))?;
        if file_type.is_symlink() {
            return Err(refused_link(&path));
        }
        if file_type.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Whether `file` exists, without following it; a symbolic link there is refused.
fn registry_file_exists(file: &Path) -> Result<bool, CanonError> {
    match std::fs::symlink_metadata(file) {
        Ok(metadata) if metadata.file_type().is_symlink() => Err(refused_link(file)),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(invalid(file, format!("cannot read: {e}"))),
    }
}

/// The text of `file`: opened without following a final link (nor blocking on a FIFO),
/// a regular file, at most [`MAX_REGISTRY_FILE_BYTES`] long, UTF-8.
fn read_bounded(file: &Path) -> Result<String, CanonError> {
    let cannot_read = |e: std::io::Error| invalid(file, format!("cannot read: {e}"));
    let handle = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(file)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refused_link(file)
            } else {
                cannot_read(e)
            }
        })?;
    let metadata = handle.metadata().map_err(cannot_read)?;
    if !metadata.is_file() {
        return Err(invalid(file, "is not a regular file"));
    }
    let too_large = || {
        invalid(
            file,
            format!("is larger than {MAX_REGISTRY_FILE_BYTES} bytes"),
        )
    };
    if metadata.len() > MAX_REGISTRY_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    handle
        .take(MAX_REGISTRY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_REGISTRY_FILE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| invalid(file, "is not UTF-8"))
}

/// `ERR_REGISTRY` for `file` whose `detail` may quote the file's content: the detail is
/// redacted and cut to [`MAX_EXCERPT_BYTES`].
fn invalid_content(file: &Path, detail: impl std::fmt::Display) -> CanonError {
    let excerpt = Redactor::default().truncate_redacted(&detail.to_string(), MAX_EXCERPT_BYTES);
    invalid(file, excerpt)
}

/// `ns/name@version` spelled by the directory `root/ns/name/version`.
fn expected_ref(root: &Path, version_dir: &Path) -> String {
    let parts: Vec<String> = version_dir
        .strip_prefix(root)
        .unwrap_or(version_dir)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [namespace, name, version] => format!("{namespace}/{name}@{version}"),
        _ => version_dir.display().to_string(),
    }
}

/// Reads, parses and checks one `registry.yaml`.
fn load_file(file: &Path, expected_ref: &str) -> Result<ProcessorSpec, CanonError> {
    let text = read_bounded(file)?;
    let spec: ProcessorSpec =
        serde_yaml_ng::from_str(&text).map_err(|e| invalid_content(file, e))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    check_spec(&spec, dir, expected_ref).map_err(|why| invalid_content(file, why))?;
    Ok(spec)
}

/// Every load-time rule of one spec; `dir` holds its `registry.yaml`.
fn check_spec(spec: &ProcessorSpec, dir: &Path, expected_ref: &str) -> Result<(), String> {
    if spec.processor_ref.to_string() != expected_ref {
        return Err(format!(
            "ref `{}` does not match its directory (expected `{expected_ref}`)",
            spec.processor_ref
        ));
    }
    if spec.description.trim().is_empty() {
        return Err("description is empty".into());
    }
    check_build(spec, dir)?;
    check_runtime(spec)?;
    check_variable_names(spec)?;
    let validator = compile_schema(&spec.inputs)
        .map_err(|why| format!("inputs is not a JSON Schema: {why}"))?;
    check_outputs(spec)?;
    check_planner(spec)?;
    if !spec.examples.contains_key(SMOKE_EXAMPLE) {
        return Err(format!("examples must include `{SMOKE_EXAMPLE}`"));
    }
    for (name, example) in &spec.examples {
        if let Some(why) = schema_violation(&validator, &example.inputs) {
            return Err(format!("example `{name}` does not match inputs: {why}"));
        }
    }
    Ok(())
}

fn check_build(spec: &ProcessorSpec, dir: &Path) -> Result<(), String> {
    let build = &spec.build;
    let context = Path::new(&build.context);
    if context.is_absolute() || !dir.join(context).is_dir() {
        return Err(format!(
            "build.context `{}` is not a directory next to it",
            build.context
        ));
    }
    if build.dockerfile.trim().is_empty() {
        return Err("build.dockerfile must not be empty".into());
    }
    if build.port == 0 {
        return Err("build.port must not be 0".into());
    }
    match (&build.cargo_package, &build.python) {
        (Some(_), Some(_)) => Err(
            "build.cargo_package and build.python exclude each other: a processor is \
                 either a Rust binary or a Python package"
                .into(),
        ),
        (Some(package), None) if package.trim().is_empty() => {
            Err("build.cargo_package must not be empty".into())
        }
        (None, Some(python)) => check_python_build(python, &dir.join(context)),
        _ => Ok(()),
    }
}

/// A Python build names a CPython `3.N` and has pinned requirements in its context.
fn check_python_build(python: &str, context: &Path) -> Result<(), String> {
    let minor = python.strip_prefix("3.").unwrap_or_default();
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "build.python `{python}` is not a CPython version such as `3.11`"
        ));
    }
    let requirements = Build::PYTHON_REQUIREMENTS;
    if !context.join(requirements).is_file() {
        return Err(format!(
            "build.python needs `{requirements}` in the build context"
        ));
    }
    Ok(())
}

fn check_runtime(spec: &ProcessorSpec) -> Result<(), String> {
    let runtime = &spec.runtime;
    let positive = |value: f64| value.is_finite() && value > 0.0;
    if !positive(runtime.cpu) || !positive(runtime.memory_gb) || runtime.timeout_s == 0 {
        return Err("runtime.cpu, runtime.memory_gb and runtime.timeout_s must be positive".into());
    }
    if runtime.timeout_s > Runtime::MAX_TIMEOUT_S {
        return Err(format!(
            "runtime.timeout_s {} is above the maximum of {} s (7 days)",
            runtime.timeout_s,
            Runtime::MAX_TIMEOUT_S
        ));
    }
    Ok(())
}

/// Secret and pass-through names are distinct environment variable names (`[A-Z_][A-Z0-9_]*`)
/// outside the `PROCTOR_` namespace the container contract uses.
fn check_variable_names(spec: &ProcessorSpec) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for name in spec.secrets.required.iter().chain(&spec.env) {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(format!(
                "`{name}` is not an environment variable name ([A-Z_][A-Z0-9_]*)"
            ));
        }
        if name.starts_with("PROCTOR_") {
            return Err(format!("`{name}`: the PROCTOR_ prefix is reserved"));
        }
        if !seen.insert(name) {
            return Err(format!(
                "`{name}` is listed twice in secrets.required and env"
            ));
        }
    }
    Ok(())
}

/// Declared outputs are canonical paths relative to `{write_prefix}outputs/`, distinct, with
/// a `type/subtype` mime.
fn check_outputs(spec: &ProcessorSpec) -> Result<(), String> {
    let prefix = WritePrefix::expand("/artifacts/registry/{execution_id}", "check")
        .map_err(|e| e.to_string())?;
    let outputs_dir = prefix.outputs_dir();
    let mut seen = BTreeSet::new();
    for output in &spec.outputs {
        let path = prefix
            .output_path(&output.path)
            .map_err(|e| format!("output {e}"))?;
        let Some(canonical) = path.as_str().strip_prefix(outputs_dir.as_str()) else {
            return Err(format!(
                "output path `{}` is not under outputs/",
                output.path
            ));
        };
        if canonical != output.path {
            return Err(format!(
                "output path `{}` is not canonical (write `{canonical}`)",
                output.path
            ));
        }
        if !seen.insert(canonical.to_owned()) {
            return Err(format!("output path `{}` is declared twice", output.path));
        }
        let valid_mime = output
            .mime
            .split_once('/')
            .is_some_and(|(kind, sub)| !kind.is_empty() && !sub.is_empty() && !sub.contains('/'));
        if !valid_mime {
            return Err(format!("output mime `{}` is not type/subtype", output.mime));
        }
    }
    Ok(())
}

/// A planner declares its proposal output as JSON.
fn check_planner(spec: &ProcessorSpec) -> Result<(), String> {
    if !spec.planner {
        return Ok(());
    }
    let proposal = spec
        .outputs
        .iter()
        .find(|output| output.path == proctor_contract::PROPOSAL_OUTPUT);
    match proposal {
        Some(output) if output.mime == "application/json" => Ok(()),
        Some(output) => Err(format!(
            "a planner's output `{}` must be application/json, not {}",
            proctor_contract::PROPOSAL_OUTPUT,
            output.mime
        )),
        None => Err(format!(
            "a planner must declare the output `{}`",
            proctor_contract::PROPOSAL_OUTPUT
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::spec::tests::SAMPLE_YAML;

    /// A registry root holding `files` (relative path → contents).
    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let path = root.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }
        root
    }

    fn load_error(yaml: &str) -> CanonError {
        let root = root_with(&[("text/stats/1/registry.yaml", yaml)]);
        Registry::load(root.path()).unwrap_err()
    }

    #[test]
    fn loads_valid_files_and_skips_the_rest() {
        let other = SAMPLE_YAML.replace("ref: text/stats@1", "ref: text/stats@2");
        let root = root_with(&[
            ("text/stats/1/registry.yaml", SAMPLE_YAML),
            ("text/stats/2/registry.yaml", &other),
            ("text/stats/1/src/main.rs", "fn main() {}"),
            ("text/stats/3/Cargo.toml", ""),
            (".hidden/x/1/registry.yaml", "not: yaml: at all"),
            ("README.md", "# processors"),
        ]);
        let registry = Registry::load(root.path()).unwrap();
        let refs: Vec<String> = registry
            .iter()
            .map(|p| p.spec().processor_ref.to_string())
            .collect();
        assert_eq!(refs, ["text/stats@1", "text/stats@2"]);
        let entry = registry.get(&"text/stats@1".parse().unwrap()).unwrap();
        assert_eq!(entry.dir(), root.path().join("text/stats/1"));
        assert_eq!(entry.file(), root.path().join("text/stats/1/registry.yaml"));
        assert_eq!(registry.len(), 2);
        assert!(Registry::load(root_with(&[]).path()).unwrap().is_empty());
    }

    #[test]
    fn the_cache_loads_again_only_after_a_file_changes() {
        let root = root_with(&[("text/stats/1/registry.yaml", SAMPLE_YAML)]);
        let cache = RegistryCache::default();
        let first = cache.get(root.path()).unwrap();
        assert!(std::sync::Arc::ptr_eq(
            &first,
            &cache.get(root.path()).unwrap()
        ));
        let file = root.path().join("text/stats/1/registry.yaml");
        let rewritten = SAMPLE_YAML.replace("timeout_s: 30", "timeout_s: 31");
        assert_ne!(rewritten, SAMPLE_YAML);
        let next = root.path().join("text/stats/1/registry.yaml.next");
        std::fs::write(&next, rewritten).unwrap();
        std::fs::rename(&next, &file).unwrap();
        let second = cache.get(root.path()).unwrap();
        assert!(!std::sync::Arc::ptr_eq(&first, &second));
        let stats = "text/stats@1".parse().unwrap();
        assert_eq!(second.get(&stats).unwrap().spec().runtime.timeout_s, 31);
        std::fs::remove_file(&file).unwrap();
        assert!(cache.get(root.path()).unwrap().is_empty());
    }

    #[test]
    fn a_build_without_cargo_package_is_a_dockerfile_build() {
        let dockerfile_only = SAMPLE_YAML.replace(", cargo_package: processor-text-stats", "");
        let python = SAMPLE_YAML.replace("cargo_package: processor-text-stats", "python: '3.11'");
        let root = root_with(&[
            ("text/stats/1/registry.yaml", &dockerfile_only),
            ("text/stats/2/registry.yaml", &python.replace("@1", "@2")),
            ("text/stats/2/requirements.txt", "litellm==1.0.0\n"),
        ]);
        let registry = Registry::load(root.path()).unwrap();
        let build = |version: &str| {
            let entry = registry.get(&version.parse().unwrap()).unwrap();
            entry.spec().build.clone()
        };
        let plain = build("text/stats@1");
        assert_eq!((plain.cargo_package, plain.python), (None, None));
        let python = build("text/stats@2");
        assert_eq!(python.cargo_package, None);
        assert_eq!(python.python.as_deref(), Some("3.11"));
        let json = serde_json::to_value(&python).unwrap();
        assert!(json.get("cargo_package").is_none(), "{json}");
    }

    #[test]
    fn unknown_refs_are_refused_with_the_known_ones() {
        let root = root_with(&[("text/stats/1/registry.yaml", SAMPLE_YAML)]);
        let registry = Registry::load(root.path()).unwrap();
        let err = registry.get(&"llm/litellm@1".parse().unwrap()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnknownProcessor);
        assert!(
            err.message()
                .starts_with("processor not found in registry: `llm/litellm@1`")
        );
        assert!(err.message().contains("known: text/stats@1"), "{err}");
    }

    #[test]
    fn a_missing_root_is_a_registry_error() {
        let root = tempfile::tempdir().unwrap();
        let err = Registry::load(&root.path().join("absent")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Registry);
        assert!(err.message().contains("absent: cannot read"), "{err}");
    }

    #[test]
    fn each_invalid_file_is_refused_with_its_path_and_why() {
        let cases: &[(&str, &str, &str)] = &[
            ("env: []", "env: []\nlabels: {}", "unknown field `labels`"),
            (
                "timeout_s: 30",
                "timeout_s: 30, disk_gb: 1",
                "unknown field `disk_gb`",
            ),
            (
                "ref: text/stats@1",
                "ref: text/stats@2",
                "does not match its directory",
            ),
            (
                "ref: text/stats@1",
                "ref: Text/stats@1",
                "invalid processor ref",
            ),
            (
                "description: Word and line counts of a text.",
                "description: ' '",
                "description",
            ),
            ("context: \".\"", "context: missing", "build.context"),
            ("port: 8000", "port: 0", "build.port"),
            (
                "cargo_package: processor-text-stats",
                "cargo_package: ' '",
                "build.cargo_package must not be empty",
            ),
            (
                "cargo_package: processor-text-stats",
                "cargo_package: processor-text-stats, python: '3.11'",
                "exclude each other",
            ),
            (
                "cargo_package: processor-text-stats",
                "python: '3.11'",
                "needs `requirements.txt` in the build context",
            ),
            (
                "cargo_package: processor-text-stats",
                "python: '3'",
                "not a CPython version",
            ),
            (
                "cargo_package: processor-text-stats",
                "python: 3.x1",
                "not a CPython version",
            ),
            ("cpu: 0.5", "cpu: 0", "must be positive"),
            ("timeout_s: 30", "timeout_s: 0", "must be positive"),
            (
                "timeout_s: 30",
                "timeout_s: 604801",
                "runtime.timeout_s 604801 is above the maximum of 604800 s (7 days)",
            ),
            (
                "timeout_s: 30",
                "timeout_s: 99999999999999999999",
                "runtime.timeout_s",
            ),
            ("timeout_s: 30", "timeout_s: -1", "runtime.timeout_s"),
            (
                "required: []",
                "required: [api_key]",
                "not an environment variable name",
            ),
            ("required: []", "required: [PROCTOR_PORT]", "reserved"),
            (
                "secrets: {required: []}\nenv: []",
                "secrets: {required: [KEY]}\nenv: [KEY]",
                "twice",
            ),
            (
                "required: []",
                "required: [API_KEY, API_KEY]",
                "listed twice",
            ),
            (
                "type: object\n  additionalProperties",
                "type: 12\n  additionalProperties",
                "JSON Schema",
            ),
            ("minimum: 0", "minimum: zero", "JSON Schema"),
            ("path: stats.json", "path: ../stats.json", "dot segments"),
            ("path: stats.json", "path: /stats.json", "must be relative"),
            (
                "path: stats.json",
                "path: text//stats.json",
                "not canonical",
            ),
            (
                "path: stats.json",
                "path: text/normalized.txt",
                "declared twice",
            ),
            ("mime: application/json", "mime: json", "not type/subtype"),
            ("  smoke:", "  demo:", "must include `smoke`"),
            (
                "params: {}}}",
                "params: {n: -1}}}",
                "example `smoke` does not match inputs: at `/params/n`",
            ),
            ("inputs: {schema: v1", "inputs: {schema: v2", "at `/schema`"),
        ];
        for (from, to, why) in cases {
            assert!(SAMPLE_YAML.contains(from), "fixture lacks {from:?}");
            let err = load_error(&SAMPLE_YAML.replacen(from, to, 1));
            assert_eq!(err.code(), ErrorCode::Registry, "{to}");
            let message = err.message();
            assert!(
                message.starts_with("invalid processor registry: "),
                "{message}"
            );
            assert!(message.contains("text/stats/1/registry.yaml"), "{message}");
            assert!(
                message.contains(why),
                "{to:?} should say {why:?}: {message}"
            );
        }
    }

    #[test]
    fn a_planner_loads_only_when_it_declares_its_proposal_as_json() {
        let planner = |output: &str| {
            SAMPLE_YAML
                .replace("env: []", "env: []\nplanner: true")
                .replace("  - {path: text/normalized.txt, mime: text/plain}", output)
        };
        let root = root_with(&[(
            "text/stats/1/registry.yaml",
            &planner("  - {path: plan/transitions.json, mime: application/json}"),
        )]);
        let registry = Registry::load(root.path()).unwrap();
        let entry = registry.get(&"text/stats@1".parse().unwrap()).unwrap();
        assert!(entry.spec().planner);
        for (output, why) in [
            (
                "  - {path: plan/other.json, mime: application/json}",
                "a planner must declare the output `plan/transitions.json`",
            ),
            (
                "  - {path: plan/transitions.json, mime: text/plain}",
                "a planner's output `plan/transitions.json` must be application/json, not text/plain",
            ),
        ] {
            let err = load_error(&planner(output));
            assert_eq!(err.code(), ErrorCode::Registry);
            assert!(err.message().contains(why), "{err}");
        }
        let not_a_planner = SAMPLE_YAML.replace(
            "  - {path: text/normalized.txt, mime: text/plain}",
            "  - {path: plan/transitions.json, mime: text/plain}",
        );
        let root = root_with(&[("text/stats/1/registry.yaml", &not_a_planner)]);
        assert!(
            !Registry::load(root.path())
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .spec()
                .planner
        );
    }

    /// A file outside any registry root holding a fake secret, in its own tempdir.
    const FAKE_SECRET: &str = "sk-live0123456789abcdefghij";

    fn outside_secret() -> (tempfile::TempDir, PathBuf) {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.txt");
        fs::write(&secret, format!("token: {FAKE_SECRET}\n")).unwrap();
        (outside, secret)
    }

    fn assert_refused_link(err: &CanonError, link: &str) {
        assert_eq!(err.code(), ErrorCode::Registry);
        let message = err.message();
        assert!(message.contains(link), "{message}");
        assert!(message.contains("symbolic link"), "{message}");
        assert!(!message.contains(FAKE_SECRET), "{message}");
        assert!(!message.contains("root:"), "{message}");
    }

    #[test]
    fn a_registry_file_linking_out_of_the_root_is_refused_unread() {
        let (_outside, secret) = outside_secret();
        for target in [secret.as_path(), Path::new("/etc/passwd")] {
            let root = root_with(&[("text/stats/1/src/main.rs", "fn main() {}")]);
            std::os::unix::fs::symlink(target, root.path().join("text/stats/1/registry.yaml"))
                .unwrap();
            let err = Registry::load(root.path()).unwrap_err();
            assert_refused_link(&err, "text/stats/1/registry.yaml");
        }
    }

    #[test]
    fn a_directory_linking_out_of_the_root_is_refused() {
        let (outside, _secret) = outside_secret();
        let version = outside.path().join("1");
        fs::create_dir(&version).unwrap();
        fs::write(version.join(REGISTRY_FILE), FAKE_SECRET).unwrap();
        for (link, target) in [
            ("text", outside.path().to_path_buf()),
            ("text/stats", outside.path().to_path_buf()),
            ("text/stats/1", version.clone()),
        ] {
            let root = tempfile::tempdir().unwrap();
            let link_path = root.path().join(link);
            fs::create_dir_all(link_path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&target, &link_path).unwrap();
            let err = Registry::load(root.path()).unwrap_err();
            assert_refused_link(&err, link);
        }
    }

    #[test]
    fn a_link_inside_the_root_is_refused_too() {
        let root = root_with(&[("text/stats/1/registry.yaml", SAMPLE_YAML)]);
        std::os::unix::fs::symlink(
            root.path().join("text/stats/1"),
            root.path().join("text/stats/2"),
        )
        .unwrap();
        let err = Registry::load(root.path()).unwrap_err();
        assert_refused_link(&err, "text/stats/2");
    }

    #[test]
    fn a_hidden_link_is_skipped_like_any_hidden_entry() {
        let root = root_with(&[("text/stats/1/registry.yaml", SAMPLE_YAML)]);
        std::os::unix::fs::symlink("/etc", root.path().join(".cache")).unwrap();
        assert_eq!(Registry::load(root.path()).unwrap().len(), 1);
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let padding = "#".repeat(usize::try_from(MAX_REGISTRY_FILE_BYTES).unwrap());
        let err = load_error(&format!("{SAMPLE_YAML}\n{padding}\n"));
        assert_eq!(err.code(), ErrorCode::Registry);
        assert!(err.message().contains("larger than 1048576 bytes"), "{err}");
    }

    #[test]
    fn a_registry_file_that_is_not_a_regular_file_is_refused() {
        let root = root_with(&[]);
        fs::create_dir_all(root.path().join("text/stats/1/registry.yaml")).unwrap();
        let err = Registry::load(root.path()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Registry);
        assert!(err.message().contains("not a regular file"), "{err}");
    }

    #[test]
    fn errors_quote_a_short_redacted_excerpt() {
        let long_line = format!("{FAKE_SECRET} {}", "word ".repeat(200));
        for yaml in [long_line.clone(), format!("ref: \"{long_line}\"")] {
            let err = load_error(&yaml);
            assert_eq!(err.code(), ErrorCode::Registry);
            let message = err.message();
            assert!(!message.contains(FAKE_SECRET), "{message}");
            assert!(!message.contains("sk-live"), "{message}");
            let (_, excerpt) = message.split_once("registry.yaml: ").unwrap();
            assert!(excerpt.len() <= MAX_EXCERPT_BYTES, "{excerpt}");
        }
    }

    #[test]
    fn yaml_that_does_not_parse_is_refused() {
        let err = load_error("ref: [unclosed");
        assert_eq!(err.code(), ErrorCode::Registry);
        assert!(err.message().contains("registry.yaml"), "{err}");
    }
}
