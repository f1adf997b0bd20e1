//! Loading a registry root: walk `<ns>/<name>/<version>/registry.yaml`, parse each file
//! strictly and check it once, so every later lookup works on a valid entry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, ErrorCode, ProcessorRef, WritePrefix};

use crate::ProcessorSpec;
use crate::checks::{compile_schema, schema_violation};

/// The file name that declares one processor version.
pub const REGISTRY_FILE: &str = "registry.yaml";

/// The example every processor must declare; the README and smoke tests run it.
const SMOKE_EXAMPLE: &str = "smoke";

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
    /// a `registry.yaml` and hidden directories are skipped; any invalid file is
    /// `ERR_REGISTRY` naming it.
    pub fn load(root: &Path) -> Result<Registry, CanonError> {
        let mut processors = BTreeMap::new();
        for namespace in subdirectories(root)? {
            for name in subdirectories(&namespace)? {
                for version in subdirectories(&name)? {
                    let file = version.join(REGISTRY_FILE);
                    if !file.is_file() {
                        continue;
                    }
                    let spec = load_file(&file, &expected_ref(root, &version))?;
                    processors.insert(
                        spec.processor_ref.clone(),
                        RegisteredProcessor { spec, dir: version },
                    );
                }
            }
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

/// `ERR_REGISTRY` for `path`.
fn invalid(path: &Path, detail: impl std::fmt::Display) -> CanonError {
    CanonError::new(ErrorCode::Registry, format!("{}: {detail}", path.display()))
}

/// The visible subdirectories of `dir`, sorted.
fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>, CanonError> {
    let entries = std::fs::read_dir(dir).map_err(|e| invalid(dir, format!("cannot read: {e}")))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| invalid(dir, format!("cannot read: {e}")))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
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
    let text =
        std::fs::read_to_string(file).map_err(|e| invalid(file, format!("cannot read: {e}")))?;
    let spec: ProcessorSpec = serde_yaml_ng::from_str(&text).map_err(|e| invalid(file, e))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    check_spec(&spec, dir, expected_ref).map_err(|why| invalid(file, why))?;
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
    if build.dockerfile.trim().is_empty() || build.cargo_package.trim().is_empty() {
        return Err("build.dockerfile and build.cargo_package must not be empty".into());
    }
    if build.port == 0 {
        return Err("build.port must not be 0".into());
    }
    Ok(())
}

fn check_runtime(spec: &ProcessorSpec) -> Result<(), String> {
    let runtime = &spec.runtime;
    let positive = |value: f64| value.is_finite() && value > 0.0;
    if !positive(runtime.cpu) || !positive(runtime.memory_gb) || runtime.timeout_s == 0 {
        return Err("runtime.cpu, runtime.memory_gb and runtime.timeout_s must be positive".into());
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
        let canonical = &path.as_str()[outputs_dir.as_str().len()..];
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
            ("cpu: 0.5", "cpu: 0", "must be positive"),
            ("timeout_s: 30", "timeout_s: 0", "must be positive"),
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
    fn yaml_that_does_not_parse_is_refused() {
        let err = load_error("ref: [unclosed");
        assert_eq!(err.code(), ErrorCode::Registry);
        assert!(err.message().contains("registry.yaml"), "{err}");
    }
}
