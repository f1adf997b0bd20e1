//! Predicates: versioned, pure checks that gate a transition's admission and success and a
//! plan's invariants.
//!
//! A plan writes a predicate as `{id: "name@version", args: {...}}` ([`PredicateSpec`]).
//! [`Predicate::parse`] checks the id and the args when the plan is loaded (an unknown id, an
//! unknown or mistyped arg, a path that is not a world path, a JSONPath that does not parse,
//! a schema that does not compile are `ERR_PLAN`); [`Predicate::evaluate`] reads the World
//! and the ledger, never writes either, and gives a [`Verdict`].
//!
//! | id | args | holds when |
//! | --- | --- | --- |
//! | `artifact.exists@1` | `path` | the artifact at `path` exists |
//! | `file.size_gt@1` | `path`, `bytes` | the artifact at `path` is larger than `bytes` |
//! | `json.schema_ok@1` | `path`, `schema` | the artifact is JSON valid against `schema` |
//! | `json.path@1` | `path`, `query`, `equals` | the RFC 9535 `query` selects exactly one node, equal to `equals` |
//! | `budget.available@1` | `micro_usd`? | the plan can still reserve `micro_usd` (default: the transition's reservation) |
//! | `lease.acquirable@1` | `selector`? | no unexpired lease overlaps `selector` (default: the transition's write prefix) |
//!
//! `path` is an exact world path under `/artifacts/`; `selector` any world path, exact or a
//! prefix. Either may start with `{outputs}/`, which expands to the transition's outputs
//! directory: such a predicate belongs in the `success` scope only. A predicate that
//! defaults to the transition's reservation or write prefix belongs in the `admission` scope
//! only: after admission the transition holds both itself, and an invariant has neither.
//! [`Predicate::check_scope`] tells both at load time; evaluating an `{outputs}` path without
//! outputs, or a defaulted selector without a write prefix, is `ERR_PLAN`.
//!
//! A missing artifact is a false verdict, not an error; a store or ledger failure is an
//! error. The JSON predicates read at most [`MAX_JSON_BYTES`]: a larger document, or one that
//! is not JSON, is a false verdict saying so. Details never quote artifact contents.

mod artifact;
mod json;
mod ledger;
#[cfg(test)]
mod testing;

use proctor_contract::{CanonError, ErrorCode, Facet, SelectorKind, WorldPath};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use json::MAX_JSON_BYTES;

/// A predicate as a plan writes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicateSpec {
    /// `name@version`, e.g. `artifact.exists@1`.
    pub id: String,
    /// The predicate's arguments: an object (absent or `null` means none).
    #[serde(default)]
    pub args: Value,
}

/// Where a predicate gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Before a transition starts: a false one keeps it from starting.
    Admission,
    /// After a transition's envelope: a false one fails it, its evidence kept.
    Success,
    /// Plan level, re-checked after every transition.
    Invariant,
}

/// A predicate whose id and args were checked when the plan was loaded.
#[derive(Debug, Clone)]
pub struct Predicate {
    spec: PredicateSpec,
    check: Check,
}

/// Each predicate's checked args.
#[derive(Debug, Clone)]
enum Check {
    ArtifactExists(artifact::Exists),
    SizeGreaterThan(artifact::SizeGreaterThan),
    SchemaOk(json::SchemaOk),
    PathEquals(json::PathEquals),
    BudgetAvailable(ledger::BudgetAvailable),
    LeaseAcquirable(ledger::LeaseAcquirable),
}

/// Every predicate id, as a plan names it.
pub const PREDICATE_IDS: &[&str] = &[
    artifact::EXISTS_ID,
    artifact::SIZE_GT_ID,
    json::SCHEMA_OK_ID,
    json::PATH_ID,
    ledger::BUDGET_AVAILABLE_ID,
    ledger::LEASE_ACQUIRABLE_ID,
];

impl Predicate {
    /// `ERR_PLAN` naming the id and what is wrong for an unknown id or bad args.
    pub fn parse(spec: &PredicateSpec) -> Result<Predicate, CanonError> {
        let id = spec.id.as_str();
        let check = match id {
            artifact::EXISTS_ID => Check::ArtifactExists(artifact::Exists::parse(&spec.args)?),
            artifact::SIZE_GT_ID => {
                Check::SizeGreaterThan(artifact::SizeGreaterThan::parse(&spec.args)?)
            }
            json::SCHEMA_OK_ID => Check::SchemaOk(json::SchemaOk::parse(&spec.args)?),
            json::PATH_ID => Check::PathEquals(json::PathEquals::parse(&spec.args)?),
            ledger::BUDGET_AVAILABLE_ID => {
                Check::BudgetAvailable(ledger::BudgetAvailable::parse(&spec.args)?)
            }
            ledger::LEASE_ACQUIRABLE_ID => {
                Check::LeaseAcquirable(ledger::LeaseAcquirable::parse(&spec.args)?)
            }
            _ => {
                return Err(CanonError::new(
                    ErrorCode::Plan,
                    format!(
                        "unknown predicate `{id}` (known: {})",
                        PREDICATE_IDS.join(", ")
                    ),
                ));
            }
        };
        Ok(Predicate {
            spec: spec.clone(),
            check,
        })
    }

    /// The predicate as the plan wrote it.
    pub fn spec(&self) -> &PredicateSpec {
        &self.spec
    }

    /// Whether the predicate can be evaluated in `scope`: `ERR_PLAN` for an `{outputs}` path
    /// outside `success`, and for a predicate that defaults to the transition's reservation
    /// or write prefix outside `admission`.
    pub fn check_scope(&self, scope: Scope) -> Result<(), CanonError> {
        let needs = match &self.check {
            Check::ArtifactExists(check) => check.path.needs_outputs().then_some(Need::Outputs),
            Check::SizeGreaterThan(check) => check.path.needs_outputs().then_some(Need::Outputs),
            Check::SchemaOk(check) => check.path.needs_outputs().then_some(Need::Outputs),
            Check::PathEquals(check) => check.path.needs_outputs().then_some(Need::Outputs),
            Check::BudgetAvailable(check) => check.needs_admission().then_some(Need::Admission),
            Check::LeaseAcquirable(check) => check.needs(),
        };
        match (needs, scope) {
            (Some(Need::Outputs), Scope::Admission | Scope::Invariant) => Err(plan_error(
                &self.spec.id,
                "`{outputs}` is defined only in the success scope",
            )),
            (Some(Need::Admission), Scope::Success | Scope::Invariant) => Err(plan_error(
                &self.spec.id,
                "it defaults to the reservation or write prefix of a transition being \
                 admitted: give the argument outside the admission scope",
            )),
            _ => Ok(()),
        }
    }

    /// Pure and fast: reads the World and the ledger, never writes.
    pub async fn evaluate(&self, cx: &PredicateContext<'_>) -> Result<Verdict, CanonError> {
        let id = self.spec.id.as_str();
        match &self.check {
            Check::ArtifactExists(check) => check.evaluate(id, cx).await,
            Check::SizeGreaterThan(check) => check.evaluate(id, cx).await,
            Check::SchemaOk(check) => check.evaluate(id, cx).await,
            Check::PathEquals(check) => check.evaluate(id, cx).await,
            Check::BudgetAvailable(check) => check.evaluate(id, cx).await,
            Check::LeaseAcquirable(check) => check.evaluate(id, cx).await,
        }
    }
}

/// What a predicate needs from its scope beyond the World and the ledger.
enum Need {
    /// The transition's outputs directory (success only).
    Outputs,
    /// The reservation or write prefix of a transition being admitted.
    Admission,
}

/// What a predicate evaluates against.
pub struct PredicateContext<'a> {
    /// The World's artifact store.
    pub store: &'a dyn proctor_store::ArtifactStore,
    /// The ledger.
    pub ledger: &'a proctor_ledger::Ledger,
    /// The plan key.
    pub plan: &'a str,
    /// What `{outputs}` in a path argument expands to: the transition's expanded write prefix
    /// followed by `outputs` (success scope); `None` at admission and for invariants.
    pub outputs: Option<&'a str>,
    /// The transition's reservation (for `budget.available@1`), when a transition is being
    /// admitted.
    pub reserve_micro_usd: u64,
    /// The transition's write prefix selector (for `lease.acquirable@1`), when a transition
    /// is being admitted.
    pub write_prefix: Option<&'a WorldPath>,
}

/// A predicate's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// Whether the predicate holds.
    pub holds: bool,
    /// Short, redacted, e.g. "size 12 > 10".
    pub detail: String,
}

impl Verdict {
    fn new(holds: bool, detail: impl Into<String>) -> Verdict {
        Verdict {
            holds,
            detail: detail.into(),
        }
    }
}

/// `ERR_PLAN` naming the predicate and what is wrong.
fn plan_error(id: &str, problem: impl std::fmt::Display) -> CanonError {
    CanonError::new(ErrorCode::Plan, format!("predicate `{id}`: {problem}"))
}

/// Deserializes a predicate's args (absent or `null` meaning none) into its typed form,
/// refusing unknown fields and wrong types with `ERR_PLAN`.
fn parse_args<T: DeserializeOwned>(id: &str, args: &Value) -> Result<T, CanonError> {
    let args = match args {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(_) => args.clone(),
        _ => return Err(plan_error(id, "args must be an object")),
    };
    serde_json::from_value(args).map_err(|err| plan_error(id, format!("bad args: {err}")))
}

/// The token a path argument may start with.
const OUTPUTS_TOKEN: &str = "{outputs}";
/// What `{outputs}` stands for when a path is checked at load time.
const OUTPUTS_STUB: &str = "/artifacts/plans/plan/transition/execution/outputs";

/// What a path argument must name once expanded.
#[derive(Debug, Clone, Copy)]
enum PathRole {
    /// An exact path under `/artifacts/`, read from the store.
    Artifact,
    /// Any world path, exact or a prefix, compared with leases.
    Selector,
}

/// A world-path argument, checked at load time with `{outputs}` stubbed.
#[derive(Debug, Clone)]
struct PathArg {
    field: &'static str,
    template: String,
    role: PathRole,
}

impl PathArg {
    /// Checks `template`: `{outputs}` only as its leading segment, and a valid world path of
    /// `role` once expanded.
    fn parse(
        id: &str,
        field: &'static str,
        template: String,
        role: PathRole,
    ) -> Result<PathArg, CanonError> {
        let occurrences = template.matches(OUTPUTS_TOKEN).count();
        let leading = template.starts_with(&format!("{OUTPUTS_TOKEN}/"));
        if occurrences > 1 || (occurrences == 1 && !leading) {
            return Err(plan_error(
                id,
                format!("`{field}` may use {OUTPUTS_TOKEN} only as its first segment"),
            ));
        }
        let arg = PathArg {
            field,
            template,
            role,
        };
        arg.expand(id, Some(OUTPUTS_STUB))?;
        Ok(arg)
    }

    fn needs_outputs(&self) -> bool {
        self.template.starts_with(OUTPUTS_TOKEN)
    }

    /// The world path this argument names, `{outputs}` expanded to `outputs`.
    fn expand(&self, id: &str, outputs: Option<&str>) -> Result<WorldPath, CanonError> {
        let field = self.field;
        let raw = match self.template.strip_prefix(OUTPUTS_TOKEN) {
            None => self.template.clone(),
            Some(rest) => {
                let outputs = outputs.ok_or_else(|| {
                    plan_error(
                        id,
                        format!(
                            "`{field}` uses {OUTPUTS_TOKEN}, defined only in the success scope"
                        ),
                    )
                })?;
                format!("{outputs}{rest}")
            }
        };
        let path = WorldPath::parse(&raw)
            .map_err(|err| plan_error(id, format!("`{field}` is not a world path: {err}")))?;
        if let PathRole::Artifact = self.role {
            if path.facet() != Facet::Artifacts {
                return Err(plan_error(
                    id,
                    format!("`{field}` must lie under /artifacts/: `{path}`"),
                ));
            }
            if path.kind() != SelectorKind::Exact {
                return Err(plan_error(
                    id,
                    format!("`{field}` must name one artifact (no trailing /): `{path}`"),
                ));
            }
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn parse(id: &str, args: Value) -> Result<Predicate, CanonError> {
        Predicate::parse(&PredicateSpec {
            id: id.to_owned(),
            args,
        })
    }

    #[test]
    fn unknown_ids_are_refused_with_the_known_ones() {
        for id in ["nope@1", "artifact.exists@2", "artifact.exists", ""] {
            let err = parse(id, json!({})).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Plan);
            assert!(err.message().contains(&format!("`{id}`")), "{err}");
            assert!(err.message().contains("json.path@1"), "{err}");
        }
    }

    #[test]
    fn args_must_be_an_object() {
        for args in [json!([]), json!("x"), json!(1), json!(true)] {
            let err = parse("budget.available@1", args).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Plan);
            assert!(err.message().contains("args must be an object"), "{err}");
        }
        assert!(parse("budget.available@1", Value::Null).is_ok());
    }

    #[test]
    fn spec_deserializes_strictly() {
        let spec: PredicateSpec =
            serde_json::from_value(json!({"id": "artifact.exists@1"})).unwrap();
        assert_eq!(spec.args, Value::Null);
        let err =
            serde_json::from_value::<PredicateSpec>(json!({"id": "artifact.exists@1", "arg": {}}))
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `arg`"), "{err}");
    }

    #[test]
    fn outputs_only_as_the_first_segment() {
        assert!(parse("artifact.exists@1", json!({"path": "{outputs}/a.json"})).is_ok());
        for path in [
            "/artifacts/{outputs}/a",
            "{outputs}",
            "{outputs}a",
            "{outputs}/{outputs}/a",
        ] {
            let err = parse("artifact.exists@1", json!({ "path": path })).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Plan, "{path}");
            assert!(err.message().contains("artifact.exists@1"), "{err}");
        }
    }

    #[test]
    fn paths_must_name_one_artifact() {
        for (path, why) in [
            ("relative/a", "not a world path"),
            ("/artifacts/../a", "not a world path"),
            ("/streams/a", "under /artifacts/"),
            ("/artifacts/a/", "no trailing /"),
            ("{outputs}/", "no trailing /"),
        ] {
            let err = parse("file.size_gt@1", json!({"path": path, "bytes": 1})).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Plan, "{path}");
            assert!(err.message().contains(why), "{path}: {err}");
        }
    }

    #[test]
    fn scopes_follow_what_a_predicate_needs() {
        let outputs = parse("artifact.exists@1", json!({"path": "{outputs}/a"})).unwrap();
        assert!(outputs.check_scope(Scope::Success).is_ok());
        for scope in [Scope::Admission, Scope::Invariant] {
            let err = outputs.check_scope(scope).unwrap_err();
            assert!(err.message().contains("success scope"), "{err}");
        }
        let fixed = parse("artifact.exists@1", json!({"path": "/artifacts/a"})).unwrap();
        for scope in [Scope::Admission, Scope::Success, Scope::Invariant] {
            assert!(fixed.check_scope(scope).is_ok());
        }
        for defaulted in ["budget.available@1", "lease.acquirable@1"] {
            let predicate = parse(defaulted, json!({})).unwrap();
            assert!(predicate.check_scope(Scope::Admission).is_ok());
            for scope in [Scope::Success, Scope::Invariant] {
                let err = predicate.check_scope(scope).unwrap_err();
                assert_eq!(err.code(), ErrorCode::Plan);
                assert!(err.message().contains(defaulted), "{err}");
                assert!(err.message().contains("give the argument"), "{err}");
            }
        }
        for given in [
            parse("budget.available@1", json!({"micro_usd": 1})).unwrap(),
            parse("lease.acquirable@1", json!({"selector": "/artifacts/x/"})).unwrap(),
        ] {
            for scope in [Scope::Admission, Scope::Success, Scope::Invariant] {
                assert!(given.check_scope(scope).is_ok());
            }
        }
        let selector = parse("lease.acquirable@1", json!({"selector": "{outputs}/"})).unwrap();
        assert!(selector.check_scope(Scope::Admission).is_err());
        assert!(selector.check_scope(Scope::Success).is_ok());
    }

    #[tokio::test]
    async fn predicates_evaluate_on_spawned_tasks() {
        let fixture = testing::Fixture::new().await;
        fixture.put("/artifacts/a.json", br#"{"n": 1}"#).await;
        let predicate = parse(
            "json.path@1",
            json!({"path": "/artifacts/a.json", "query": "$.n", "equals": 1}),
        )
        .unwrap();
        let verdict = tokio::spawn(async move { predicate.evaluate(&fixture.admission()).await })
            .await
            .unwrap()
            .unwrap();
        assert!(verdict.holds, "{verdict:?}");
    }

    #[test]
    fn scope_serializes_lowercase() {
        assert_eq!(
            serde_json::to_value([Scope::Admission, Scope::Success, Scope::Invariant]).unwrap(),
            json!(["admission", "success", "invariant"])
        );
    }

    /// Any JSON value, with keys that are often the predicates' own.
    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            "[a-z/{}$.@\\[\\]*?=<>'\"0-9 ]{0,24}".prop_map(Value::from),
            prop_oneof![
                Just("{outputs}/a.json"),
                Just("/artifacts/a"),
                Just("$.a"),
                Just("$..*"),
                Just("/artifacts/x/"),
            ]
            .prop_map(Value::from),
        ];
        let key = prop_oneof![
            Just("path".to_owned()),
            Just("bytes".to_owned()),
            Just("schema".to_owned()),
            Just("query".to_owned()),
            Just("equals".to_owned()),
            Just("micro_usd".to_owned()),
            Just("selector".to_owned()),
            Just("type".to_owned()),
            Just("$ref".to_owned()),
            "[a-z$]{0,6}",
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Parsing never panics: any id and any args give a predicate or `ERR_PLAN`.
        #[test]
        fn parse_never_panics(
            id in prop_oneof![
                prop::sample::select(PREDICATE_IDS).prop_map(str::to_owned),
                "[a-z.@0-9]{0,20}",
            ],
            args in arbitrary_json(),
        ) {
            match parse(&id, args) {
                Ok(predicate) => prop_assert_eq!(&predicate.spec().id, &id),
                Err(err) => prop_assert_eq!(err.code(), ErrorCode::Plan),
            }
        }
    }
}
