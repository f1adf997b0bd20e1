//! Loading a plan: every check before anything starts.
//!
//! Order: size → YAML or JSON → nesting depth → `schemas/plan.schema.json` → CI guard (any
//! `real` transition with `CI` set is `ERR_CI_SAFETY`, the engine's rule) → unique ids →
//! `after` and `$from` targets → no cycle → refs in the registry → attachments (valid names,
//! each referenced, every `$attach` naming one) → inputs against each processor's schema
//! with `$from` references stubbed by a string (by an `$artifact` object for `"as":
//! "artifact"`, and for `$attach`, whose media type is the file name's) → write prefixes →
//! secrets of
//! every `real` transition (`ERR_MISSING_SECRET`) → predicates. Every other refusal is
//! `ERR_PLAN` naming the transition and what is wrong.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proctor_contract::{
    ArtifactRef, CanonError, ErrorCode, Mode, ProcessorRef, WritePrefix, check_attachment_name,
    check_attachment_references, ci_guard, cid, resolve_attachments,
};
use proctor_engine::{AdapterKind, Attachment, EngineConfig, MAX_RUN_TIMEOUT, attachment_mime};
use proctor_registry::{Registry, check_secrets, validate_inputs};
use serde_json::Value;

use crate::graph::find_cycle;
use crate::model::{
    DEFAULT_MAX_PARALLEL, DEFAULT_WRITE_PREFIX, Plan, PlanFile, Transition, TransitionSpec,
};
use crate::predicates::{Predicate, PredicateSpec, Scope};
use crate::reference::{references, replace_references};

/// The largest plan file read, in bytes: 8 MiB.
pub const MAX_PLAN_BYTES: usize = 8 * 1024 * 1024;

/// The deepest nesting of arrays and objects a plan file may have.
pub const MAX_PLAN_DEPTH: usize = 64;

/// The plan file's JSON Schema (draft 2020-12).
pub const PLAN_SCHEMA: &str = include_str!("../../../schemas/plan.schema.json");

/// What a stubbed `$from` reference is while inputs are checked against a processor's
/// schema: a non-empty string, as the resolved bytes will be (their length is not known
/// before they exist).
const REFERENCE_STUB: &str = "$from";

fn plan_error(detail: impl Into<String>) -> CanonError {
    CanonError::new(ErrorCode::Plan, detail)
}

/// `error` as `ERR_PLAN` about `transition`, keeping its message.
fn in_transition(transition: &str, error: &CanonError) -> CanonError {
    plan_error(format!("transition `{transition}`: {}", error.message()))
}

/// Loads and checks a plan file's bytes against the registry and host environment of
/// `config`. Starts nothing and writes nothing.
pub fn load(bytes: &[u8], config: &EngineConfig) -> Result<Plan, CanonError> {
    let document = parse_document(bytes)?;
    check_schema(&document, plan_validator())?;
    let file: PlanFile = serde_json::from_value(document)
        .map_err(|e| plan_error(format!("the file does not match the plan schema: {e}")))?;
    let mut plan = check_plan(&file, config)?;
    plan.cid = cid(bytes);
    Ok(plan)
}

/// The most levels of planners: a transition proposed by a transition proposed by … a
/// planner of the plan file has at most this many `/` in its id.
pub const MAX_PROPOSAL_DEPTH: usize = 3;

/// A planner's proposal, `{"transitions": [TRANSITION, ...]}`, checked like a plan file's
/// transitions (ids, `after` and `$from` local to the proposal) against `plan`'s defaults,
/// then namespaced under `planner` (`{planner}/{id}`); those that run after nothing in the
/// proposal run after the planner. `ERR_PROPOSAL` for what `ERR_PLAN` is in a plan file;
/// the CI guard and secrets keep their codes.
pub(crate) fn load_proposal(
    bytes: &[u8],
    planner: &str,
    plan: &Plan,
    config: &EngineConfig,
) -> Result<Vec<Transition>, CanonError> {
    let refused = |error: CanonError| {
        if error.code() == ErrorCode::Plan {
            CanonError::new(
                ErrorCode::Proposal,
                format!("proposal of `{planner}`: {}", error.detail()),
            )
        } else {
            error
        }
    };
    if planner.matches('/').count() >= MAX_PROPOSAL_DEPTH {
        return Err(CanonError::new(
            ErrorCode::Proposal,
            format!(
                "proposal of `{planner}`: planners nest deeper than {MAX_PROPOSAL_DEPTH} levels"
            ),
        ));
    }
    let document = parse_document(bytes).map_err(refused)?;
    check_schema(&document, proposal_validator()).map_err(refused)?;
    let specs: Vec<TransitionSpec> = serde_json::from_value(document["transitions"].clone())
        .map_err(|e| refused(plan_error(format!("not transitions: {e}"))))?;
    if let Some(attaching) = specs.iter().find(|spec| !spec.attach.is_empty()) {
        return Err(refused(plan_error(format!(
            "transition `{}`: a proposal cannot attach files of this host",
            attaching.id
        ))));
    }
    let defaults = Defaults {
        plan: plan.key.clone(),
        mode: plan.default_mode,
        adapter: plan.default_adapter,
    };
    let transitions = check_transitions(&specs, &defaults, config).map_err(refused)?;
    let namespaced = |id: &str| format!("{planner}/{id}");
    transitions
        .into_iter()
        .zip(&specs)
        .map(|(mut transition, spec)| {
            transition.id = namespaced(&transition.id);
            transition.after = if transition.after.is_empty() {
                vec![planner.to_owned()]
            } else {
                transition.after.iter().map(|id| namespaced(id)).collect()
            };
            for reference in &mut transition.references {
                reference.transition = namespaced(&reference.transition);
            }
            transition.inputs = replace_references(&transition.inputs, &mut |reference| {
                let mut reference = reference.clone();
                reference.transition = namespaced(&reference.transition);
                Ok(reference.to_value())
            })?;
            if spec.write_prefix.is_none() {
                transition.write_prefix = default_write_prefix(&plan.key, &transition.id);
            }
            Ok(transition)
        })
        .collect::<Result<Vec<_>, CanonError>>()
        .map_err(refused)
}

fn default_write_prefix(plan: &str, transition: &str) -> String {
    DEFAULT_WRITE_PREFIX
        .replace("{plan}", plan)
        .replace("{transition}", transition)
}

/// The bytes of a plan file or proposal as a JSON value: size, UTF-8, YAML or JSON (no key
/// twice), nesting depth.
fn parse_document(bytes: &[u8]) -> Result<Value, CanonError> {
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(plan_error(format!(
            "the file has {} bytes, more than the {MAX_PLAN_BYTES} allowed",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| plan_error("the file is not UTF-8 text"))?;
    // Through YAML's own value first: it refuses a key given twice, which a JSON map
    // would silently overwrite.
    let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| plan_error(format!("the file is not YAML or JSON: {e}")))?;
    let document: Value = serde_json::to_value(document)
        .map_err(|e| plan_error(format!("the file is not YAML or JSON: {e}")))?;
    check_depth(&document)?;
    Ok(document)
}

fn check_depth(document: &Value) -> Result<(), CanonError> {
    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let found = depth(document);
    if found > MAX_PLAN_DEPTH {
        return Err(plan_error(format!(
            "nested {found} levels deep, more than the {MAX_PLAN_DEPTH} allowed"
        )));
    }
    Ok(())
}

/// The compiled plan schema.
fn plan_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(PLAN_SCHEMA).expect("the plan schema is JSON");
        jsonschema::validator_for(&schema).expect("the plan schema compiles")
    })
}

/// The proposal schema: `{"transitions": [...]}` of the plan schema's `$defs/transition`.
fn proposal_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let mut schema: Value = serde_json::from_str(PLAN_SCHEMA).expect("the plan schema is JSON");
        schema["title"] = Value::from("proctor plan proposal");
        schema["required"] = serde_json::json!(["transitions"]);
        let transitions = schema["properties"]["transitions"].clone();
        schema["properties"] = serde_json::json!({ "transitions": transitions });
        jsonschema::validator_for(&schema).expect("the proposal schema compiles")
    })
}

/// `ERR_PLAN` naming the first place `document` fails `validator`.
fn check_schema(document: &Value, validator: &jsonschema::Validator) -> Result<(), CanonError> {
    let mut errors = validator.iter_errors(document);
    let Some(first) = errors.next() else {
        return Ok(());
    };
    let pointer = first.instance_path().to_string();
    let location = if pointer.is_empty() {
        "at the root".to_owned()
    } else {
        format!("at `{pointer}`")
    };
    let more = errors.count();
    let tail = if more == 0 {
        String::new()
    } else {
        format!(" (and {more} more)")
    };
    Err(plan_error(format!(
        "{location}: {}{tail}; see schemas/plan.schema.json",
        first.masked()
    )))
}

/// Plan-level defaults a transition falls back on.
struct Defaults {
    plan: String,
    mode: Option<Mode>,
    adapter: AdapterKind,
}

fn check_plan(file: &PlanFile, config: &EngineConfig) -> Result<Plan, CanonError> {
    let defaults = Defaults {
        plan: file.plan.clone(),
        mode: file.mode,
        adapter: file.adapter.unwrap_or(AdapterKind::Local),
    };
    let transitions = check_transitions(&file.transitions, &defaults, config)?;
    let invariants = file
        .invariants
        .iter()
        .map(|spec| parse_predicate(spec, Scope::Invariant))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| plan_error(format!("invariants: {}", e.message())))?;
    Ok(Plan {
        key: file.plan.clone(),
        cid: String::new(),
        budget_micro_usd: file.budget_micro_usd,
        default_mode: file.mode,
        default_adapter: defaults.adapter,
        max_parallel: file.policy.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL),
        on_failure: file.policy.on_failure.unwrap_or_default(),
        invariants,
        transitions,
    })
}

fn parse_predicate(spec: &PredicateSpec, scope: Scope) -> Result<Predicate, CanonError> {
    let predicate = Predicate::parse(spec)?;
    predicate.check_scope(scope)?;
    Ok(predicate)
}

/// Checks a list of transitions as a whole, in the order the module documents.
fn check_transitions(
    specs: &[TransitionSpec],
    defaults: &Defaults,
    config: &EngineConfig,
) -> Result<Vec<Transition>, CanonError> {
    let ci = config.env.get("CI").map(String::as_str);
    let mut modes = Vec::with_capacity(specs.len());
    for spec in specs {
        let mode = spec.mode.or(defaults.mode).ok_or_else(|| {
            plan_error(format!(
                "transition `{}`: no mode; set `mode` on it or on the plan",
                spec.id
            ))
        })?;
        ci_guard(mode, ci)?;
        modes.push(mode);
    }
    let mut ids = HashSet::with_capacity(specs.len());
    for spec in specs {
        if !ids.insert(spec.id.as_str()) {
            return Err(plan_error(format!(
                "transition id `{}` is used twice",
                spec.id
            )));
        }
    }
    let mut edges = Vec::with_capacity(specs.len());
    let mut all_references = Vec::with_capacity(specs.len());
    for spec in specs {
        let found = references(&spec.inputs).map_err(|e| in_transition(&spec.id, &e))?;
        let mut after: Vec<String> = Vec::new();
        for upstream in spec
            .after
            .iter()
            .chain(found.iter().map(|reference| &reference.transition))
        {
            if !ids.contains(upstream.as_str()) {
                return Err(plan_error(format!(
                    "transition `{}`: runs after `{upstream}`, which the plan does not have",
                    spec.id
                )));
            }
            if upstream == &spec.id {
                return Err(plan_error(format!(
                    "transition `{}`: depends on itself",
                    spec.id
                )));
            }
            if !after.contains(upstream) {
                after.push(upstream.clone());
            }
        }
        edges.push((spec.id.clone(), after));
        all_references.push(found);
    }
    if let Some(cycle) = find_cycle(&edges) {
        return Err(plan_error(format!("a cycle: {}", cycle.join(" → "))));
    }
    let registry = Registry::load(&config.registry_root)?;
    let mut transitions = Vec::with_capacity(specs.len());
    for (((spec, mode), (_, after)), found) in
        specs.iter().zip(modes).zip(edges).zip(all_references)
    {
        let fail = |e: CanonError| in_transition(&spec.id, &e);
        let processor_ref: ProcessorRef = spec.processor_ref.parse().map_err(fail)?;
        let entry = registry.get(&processor_ref).map_err(fail)?;
        let attachments = attachments(spec).map_err(fail)?;
        let stubbed = replace_references(&spec.inputs, &mut |reference| {
            Ok(if reference.as_artifact {
                artifact_stub(Path::new(&reference.path)).to_value()
            } else {
                Value::from(REFERENCE_STUB)
            })
        })?;
        let attached: BTreeMap<String, ArtifactRef> = attachments
            .iter()
            .map(|a| (a.name.clone(), artifact_stub(&a.path)))
            .collect();
        let stubbed = resolve_attachments(&stubbed, &attached).map_err(fail)?;
        validate_inputs(entry.spec(), &stubbed).map_err(fail)?;
        let write_prefix = spec
            .write_prefix
            .clone()
            .unwrap_or_else(|| default_write_prefix(&defaults.plan, &spec.id));
        WritePrefix::expand(&write_prefix, "00000000-0000-4000-8000-000000000000").map_err(fail)?;
        let timeout = spec.timeout_s.map(Duration::from_secs);
        if timeout.is_some_and(|timeout| timeout > MAX_RUN_TIMEOUT) {
            return Err(plan_error(format!(
                "transition `{}`: timeout_s is more than the {} s allowed",
                spec.id,
                MAX_RUN_TIMEOUT.as_secs()
            )));
        }
        if mode == Mode::Real {
            check_secrets(entry.spec(), |name| config.env.get(name).cloned())?;
        }
        let parse_all = |specs: &[PredicateSpec], scope: Scope| {
            specs
                .iter()
                .map(|predicate| parse_predicate(predicate, scope))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)
        };
        transitions.push(Transition {
            id: spec.id.clone(),
            processor_ref,
            mode,
            adapter: spec.adapter.unwrap_or(defaults.adapter),
            inputs: spec.inputs.clone(),
            after,
            references: found,
            attachments,
            reserve_micro_usd: spec.reserve_micro_usd,
            write_prefix,
            timeout,
            admission: parse_all(&spec.predicates.admission, Scope::Admission)?,
            success: parse_all(&spec.predicates.success, Scope::Success)?,
            planner: entry.spec().planner,
            memo: spec.memo.unwrap_or(mode == Mode::Mock),
        });
    }
    Ok(transitions)
}

/// A transition's attachments, checked: valid names, and agreeing with its `$attach`
/// references.
fn attachments(spec: &TransitionSpec) -> Result<Vec<Attachment>, CanonError> {
    for name in spec.attach.keys() {
        check_attachment_name(name)?;
    }
    check_attachment_references(&spec.inputs, spec.attach.keys().map(String::as_str))?;
    Ok(spec
        .attach
        .iter()
        .map(|(name, path)| Attachment {
            name: name.clone(),
            path: PathBuf::from(path),
        })
        .collect())
}

/// What an input artifact that does not exist yet stands for while inputs are checked
/// against a schema: a valid `$artifact` object with the media type of `file`'s name.
fn artifact_stub(file: &Path) -> ArtifactRef {
    let cid = format!("b3:{}", "0".repeat(64));
    ArtifactRef {
        path: proctor_contract::attachment_path(&cid, "stub").expect("a valid stub path"),
        cid,
        mime: attachment_mime(file),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;

    /// A registry holding the shipped `text/stats@1` and `llm/litellm@1` entries only.
    fn registry() -> &'static Path {
        static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
        ROOT.get_or_init(|| {
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../processors");
            let root = tempfile::tempdir().unwrap();
            for entry in ["text/stats/1", "llm/litellm/1"] {
                let dir = root.path().join(entry);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::copy(
                    shipped.join(entry).join("registry.yaml"),
                    dir.join("registry.yaml"),
                )
                .unwrap();
            }
            root
        })
        .path()
    }

    fn config(env: &[(&str, &str)]) -> EngineConfig {
        EngineConfig {
            registry_root: registry().to_owned(),
            artifacts_root: PathBuf::new(),
            ledger_url: String::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            limits: proctor_engine::Limits::default(),
        }
    }

    const TWO_LEVELS: &str = r#"
plan: demo
mode: mock
policy: {max_parallel: 2, on_failure: continue}
transitions:
  - id: stats
    ref: text/stats@1
    inputs: {schema: v1, text: "The quick brown fox."}
    reserve_micro_usd: 5
    predicates:
      success: [{id: artifact.exists@1, args: {path: "{outputs}/stats.json"}}]
  - id: again
    ref: text/stats@1
    after: [stats]
    inputs: {schema: v1, text: {$from: "stats:outputs/normalized.txt"}}
"#;

    fn refusal(text: &str, env: &[(&str, &str)]) -> CanonError {
        load(text.as_bytes(), &config(env)).unwrap_err()
    }

    fn assert_plan_error(text: &str, fragment: &str) {
        let err = refusal(text, &[]);
        assert_eq!(err.code(), ErrorCode::Plan, "{err}");
        assert!(err.message().contains(fragment), "{err} lacks {fragment:?}");
    }

    #[test]
    fn loads_a_two_level_plan() {
        let plan = load(TWO_LEVELS.as_bytes(), &config(&[])).unwrap();
        assert_eq!(plan.key, "demo");
        assert_eq!(plan.cid, cid(TWO_LEVELS.as_bytes()));
        assert_eq!(plan.max_parallel, 2);
        assert_eq!(plan.on_failure, crate::OnFailure::Continue);
        let again = plan.transition("again").unwrap();
        assert_eq!(again.after, ["stats"]);
        assert_eq!(again.references[0].path, "normalized.txt");
        assert_eq!(
            again.write_prefix,
            "/artifacts/plans/demo/again/{execution_id}/"
        );
        assert_eq!(plan.transition("stats").unwrap().success.len(), 1);
    }

    #[test]
    fn memo_is_on_by_default_in_mock_and_asked_for_in_real() {
        let plan = r#"
plan: m
transitions:
  - {id: mock, ref: text/stats@1, mode: mock, inputs: {schema: v1, text: a}}
  - {id: mock-off, ref: text/stats@1, mode: mock, memo: false, inputs: {schema: v1, text: a}}
  - {id: real, ref: text/stats@1, mode: real, inputs: {schema: v1, text: a}}
  - {id: real-on, ref: text/stats@1, mode: real, memo: true, inputs: {schema: v1, text: a}}
"#;
        let plan = load(plan.as_bytes(), &config(&[])).unwrap();
        let memo: Vec<bool> = plan.transitions.iter().map(|t| t.memo).collect();
        assert_eq!(memo, [true, false, false, true]);
        assert_plan_error(
            &TWO_LEVELS.replace("reserve_micro_usd: 5", "memo: yes please"),
            "memo",
        );
    }

    #[test]
    fn json_plans_load_too() {
        let json = r#"{"plan": "j", "transitions": [{"id": "a", "ref": "text/stats@1", "mode": "mock", "inputs": {"schema": "v1", "text": "x"}}]}"#;
        assert_eq!(
            load(json.as_bytes(), &config(&[]))
                .unwrap()
                .transitions
                .len(),
            1
        );
    }

    #[test]
    fn refuses_files_that_are_not_plans() {
        assert_plan_error("plan: [", "not YAML or JSON");
        assert_plan_error("plan: x\nplan: y\ntransitions: []", "not YAML or JSON");
        assert_plan_error(
            &TWO_LEVELS.replace("plan: demo", "plan: demo\nextra: 1"),
            "extra",
        );
        assert_plan_error(&TWO_LEVELS.replace("plan: demo", "plan: 'a b'"), "/plan");
        assert_plan_error("plan: p\ntransitions: []", "/transitions");
        assert_plan_error(
            &TWO_LEVELS.replace("    reserve_micro_usd: 5", "    reserve: 5"),
            "reserve",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("id: again", "id: Again"),
            "/transitions/1/id",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("max_parallel: 2", "max_parallel: 65"),
            "/policy/max_parallel",
        );
        let deep = format!("plan: p\nx: {}{}", "[".repeat(80), "]".repeat(80));
        assert_plan_error(&deep, "levels deep");
        let big = vec![b' '; MAX_PLAN_BYTES + 1];
        let err = load(&big, &config(&[])).unwrap_err();
        assert!(err.message().contains("more than the"), "{err}");
    }

    #[test]
    fn refuses_bad_ids_edges_and_cycles() {
        assert_plan_error(
            &TWO_LEVELS.replace("id: again", "id: stats"),
            "`stats` is used twice",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("after: [stats]", "after: [nope]"),
            "`nope`",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("stats:outputs/normalized.txt", "gone:outputs/x"),
            "`gone`",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("stats:outputs/normalized.txt", "stats:outputs/../x"),
            "`..` segment",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("after: [stats]", "after: [again]"),
            "itself",
        );
        let cycle = TWO_LEVELS.replace(
            "    reserve_micro_usd: 5",
            "    reserve_micro_usd: 5\n    after: [again]",
        );
        assert_plan_error(&cycle, "a cycle: ");
        assert!(
            refusal(&cycle, &[])
                .message()
                .contains("stats → again → stats")
                || refusal(&cycle, &[])
                    .message()
                    .contains("again → stats → again")
        );
    }

    #[test]
    fn refuses_unknown_refs_and_bad_inputs() {
        assert_plan_error(
            &TWO_LEVELS.replace(
                "ref: text/stats@1\n    after",
                "ref: text/nope@1\n    after",
            ),
            "processor not found in registry",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("text: \"The quick brown fox.\"", "txt: 1"),
            "transition `stats`: invalid inputs payload",
        );
        assert_plan_error(&TWO_LEVELS.replace("mode: mock\n", ""), "no mode");
        assert_plan_error(
            &TWO_LEVELS.replace("reserve_micro_usd: 5", "write_prefix: /artifacts/fixed/"),
            "invalid write_prefix",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("reserve_micro_usd: 5", "timeout_s: 999999999"),
            "timeout_s",
        );
    }

    #[test]
    fn refuses_unknown_predicates_and_misplaced_ones() {
        assert_plan_error(
            &TWO_LEVELS.replace("artifact.exists@1", "artifact.exists@9"),
            "artifact.exists@9",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("path: \"{outputs}/stats.json\"", "bytes: 1"),
            "artifact.exists@1",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("success: [", "admission: ["),
            "`{outputs}` is defined only in the success scope",
        );
        assert_plan_error(
            &TWO_LEVELS.replace("policy:", "invariants: [{id: budget.available@1}]\npolicy:"),
            "invariants: ",
        );
    }

    #[test]
    fn real_transitions_meet_the_ci_guard_and_their_secrets() {
        let real = TWO_LEVELS.replace(
            "ref: text/stats@1\n    after",
            "ref: text/stats@1\n    mode: real\n    after",
        );
        let err = refusal(&real, &[("CI", "true")]);
        assert_eq!(err.code(), ErrorCode::CiSafety, "{err}");
        assert!(load(real.as_bytes(), &config(&[("CI", "false")])).is_ok());
        let litellm = r#"
plan: p
transitions:
  - {id: chat, ref: llm/litellm@1, mode: real, inputs: {schema: v1, params: {}}}
"#;
        let err = refusal(litellm, &[]);
        assert_eq!(err.code(), ErrorCode::MissingSecret, "{err}");
        assert!(err.message().contains("OPENAI_API_KEY"));
        assert!(load(litellm.as_bytes(), &config(&[("OPENAI_API_KEY", "k")])).is_ok());
        // The CI guard comes before every other check.
        let err = refusal(&litellm.replace("params: {}", "nope: 1"), &[("CI", "1")]);
        assert_eq!(err.code(), ErrorCode::CiSafety, "{err}");
    }

    fn proposal(transitions: &str) -> Result<Vec<Transition>, CanonError> {
        let plan = load(TWO_LEVELS.as_bytes(), &config(&[])).unwrap();
        let bytes = format!(r#"{{"transitions": {transitions}}}"#);
        load_proposal(bytes.as_bytes(), "map", &plan, &config(&[]))
    }

    #[test]
    fn proposals_are_namespaced_under_their_planner() {
        let admitted = proposal(
            r#"[{"id": "a", "ref": "text/stats@1", "inputs": {"schema": "v1", "text": "x"}},
                {"id": "b", "ref": "text/stats@1", "inputs": {"schema": "v1", "text": {"$from": "a:outputs/normalized.txt"}}}]"#,
        )
        .unwrap();
        assert_eq!(admitted[0].id, "map/a");
        assert_eq!(admitted[0].after, ["map"]);
        assert_eq!(admitted[0].mode, Mode::Mock, "the plan's default mode");
        assert_eq!(admitted[1].after, ["map/a"]);
        assert_eq!(admitted[1].references[0].transition, "map/a");
        assert_eq!(
            admitted[1].inputs["text"]["$from"],
            "map/a:outputs/normalized.txt"
        );
        assert_eq!(
            admitted[1].write_prefix,
            "/artifacts/plans/demo/map/b/{execution_id}/"
        );
        let artifact = proposal(
            r#"[{"id": "a", "ref": "text/stats@1", "inputs": {"schema": "v1", "text": "x"}},
                {"id": "b", "ref": "text/stats@1", "inputs": {"schema": "v1", "text": {"$from": "a:outputs/normalized.txt", "as": "artifact"}}}]"#,
        )
        .unwrap();
        assert_eq!(
            artifact[1].inputs["text"],
            serde_json::json!({"$from": "map/a:outputs/normalized.txt", "as": "artifact"})
        );
    }

    #[test]
    fn attachments_agree_with_references_and_their_media_types_are_checked() {
        let plan = r#"
plan: files
mode: mock
transitions:
  - id: file
    ref: text/stats@1
    attach: {doc: notes/today.txt}
    inputs: {schema: v1, text: {$attach: doc}}
  - id: upstream-file
    ref: text/stats@1
    inputs: {schema: v1, text: {$from: "file:outputs/normalized.txt", as: artifact}}
"#;
        let loaded = load(plan.as_bytes(), &config(&[])).unwrap();
        let file = loaded.transition("file").unwrap();
        assert_eq!(file.attachments.len(), 1);
        assert_eq!(file.attachments[0].name, "doc");
        assert_eq!(file.attachments[0].path, PathBuf::from("notes/today.txt"));
        assert!(loaded.transition("upstream-file").unwrap().references[0].as_artifact);
        for (changed, fragment) in [
            (
                plan.replace("{doc: notes", "{other: notes"),
                "names no attachment",
            ),
            (
                plan.replace(
                    "attach: {doc: notes/today.txt}",
                    "attach: {doc: a.txt, more: b.txt}",
                ),
                "never referenced",
            ),
            (plan.replace("today.txt", "today.png"), "at `/text`"),
            (plan.replace("normalized.txt", "stats.json"), "at `/text`"),
            (
                plan.replace("{doc: notes", "{'a b': notes"),
                "/transitions/0/attach",
            ),
        ] {
            assert_plan_error(&changed, fragment);
        }
    }

    #[test]
    fn refuses_bad_proposals() {
        for (transitions, fragment) in [
            ("[]", "/transitions"),
            (
                r#"[{"id": "a", "ref": "text/none@1"}]"#,
                "processor not found in registry",
            ),
            (
                r#"[{"id": "a", "ref": "text/stats@1", "after": ["b"], "inputs": {"schema": "v1", "text": "x"}},
                    {"id": "b", "ref": "text/stats@1", "after": ["a"], "inputs": {"schema": "v1", "text": "x"}}]"#,
                "a cycle",
            ),
            (
                r#"[{"id": "a", "ref": "text/stats@1", "extra": 1}]"#,
                "extra",
            ),
            (
                r#"[{"id": "a", "ref": "text/stats@1", "attach": {"doc": "/etc/passwd"}, "inputs": {"schema": "v1", "text": {"$attach": "doc"}}}]"#,
                "cannot attach files",
            ),
        ] {
            let err = proposal(transitions).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Proposal, "{err}");
            assert!(
                err.message()
                    .starts_with("invalid plan proposal: proposal of `map`"),
                "{err}"
            );
            assert!(err.message().contains(fragment), "{err} lacks {fragment:?}");
        }
        let plan = load(TWO_LEVELS.as_bytes(), &config(&[])).unwrap();
        let err =
            load_proposal(br#"{"transitions": []}"#, "a/b/c/d", &plan, &config(&[])).unwrap_err();
        assert!(err.message().contains("nest deeper"), "{err}");
    }
}
