//! `budget.available@1` and `lease.acquirable@1`: what the ledger would answer to a
//! reservation or a lease, asked without taking either.

use proctor_contract::{CanonError, WorldPath};
use proctor_ledger::selectors_overlap;
use serde::Deserialize;
use serde_json::Value;

use super::{Need, PathArg, PathRole, PredicateContext, Verdict, parse_args, plan_error};

pub(super) const BUDGET_AVAILABLE_ID: &str = "budget.available@1";
pub(super) const LEASE_ACQUIRABLE_ID: &str = "lease.acquirable@1";

/// `budget.available@1 {micro_usd?}`: the plan can still reserve `micro_usd` (default: the
/// transition's reservation). A plan without a budget (or not created yet) always can.
#[derive(Debug, Clone)]
pub(super) struct BudgetAvailable {
    micro_usd: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetAvailableArgs {
    #[serde(default)]
    micro_usd: Option<u64>,
}

impl BudgetAvailable {
    pub(super) fn parse(args: &Value) -> Result<BudgetAvailable, CanonError> {
        let BudgetAvailableArgs { micro_usd } = parse_args(BUDGET_AVAILABLE_ID, args)?;
        Ok(BudgetAvailable { micro_usd })
    }

    /// Whether it defaults to the reservation of the transition being admitted.
    pub(super) fn needs_admission(&self) -> bool {
        self.micro_usd.is_none()
    }

    pub(super) async fn evaluate(
        &self,
        _id: &str,
        cx: &PredicateContext<'_>,
    ) -> Result<Verdict, CanonError> {
        let needed = self.micro_usd.unwrap_or(cx.reserve_micro_usd);
        let plan = cx.ledger.plan(cx.plan).await?;
        let Some(available) = plan.as_ref().and_then(|plan| plan.available_micro_usd()) else {
            return Ok(Verdict::new(
                true,
                format!("plan `{}` has no budget", cx.plan),
            ));
        };
        Ok(if available >= needed {
            Verdict::new(true, format!("available {available} >= {needed} micro-USD"))
        } else {
            Verdict::new(false, format!("available {available} < {needed} micro-USD"))
        })
    }
}

/// `lease.acquirable@1 {selector?}`: no unexpired lease, whoever holds it, overlaps
/// `selector` (default: the transition's write prefix).
#[derive(Debug, Clone)]
pub(super) struct LeaseAcquirable {
    selector: Option<PathArg>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseAcquirableArgs {
    #[serde(default)]
    selector: Option<String>,
}

impl LeaseAcquirable {
    pub(super) fn parse(args: &Value) -> Result<LeaseAcquirable, CanonError> {
        let LeaseAcquirableArgs { selector } = parse_args(LEASE_ACQUIRABLE_ID, args)?;
        let selector = selector
            .map(|raw| PathArg::parse(LEASE_ACQUIRABLE_ID, "selector", raw, PathRole::Selector))
            .transpose()?;
        Ok(LeaseAcquirable { selector })
    }

    /// What it needs from its scope: the write prefix without a selector, the outputs
    /// directory for an `{outputs}` selector.
    pub(super) fn needs(&self) -> Option<Need> {
        match &self.selector {
            None => Some(Need::Admission),
            Some(selector) => selector.needs_outputs().then_some(Need::Outputs),
        }
    }

    pub(super) async fn evaluate(
        &self,
        id: &str,
        cx: &PredicateContext<'_>,
    ) -> Result<Verdict, CanonError> {
        let selector: WorldPath = match &self.selector {
            Some(selector) => selector.expand(id, cx.outputs)?,
            None => cx.write_prefix.cloned().ok_or_else(|| {
                plan_error(
                    id,
                    "no `selector` given and no transition write prefix to default to",
                )
            })?,
        };
        let leases = cx.ledger.leases().await?;
        let blocking = leases
            .iter()
            .find(|lease| !lease.is_expired() && selectors_overlap(&lease.selector, &selector));
        Ok(match blocking {
            Some(lease) => Verdict::new(
                false,
                format!(
                    "`{selector}` overlaps `{}` held by execution `{}` until {}",
                    lease.selector, lease.holder, lease.expires_at
                ),
            ),
            None => Verdict::new(true, format!("no unexpired lease overlaps `{selector}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proctor_contract::{ErrorCode, WorldPath};
    use serde_json::json;

    use super::super::testing::{Fixture, PLAN, assert_refused, predicate};
    use super::super::{Predicate, PredicateSpec};

    #[tokio::test]
    async fn budget_without_a_budget_holds() {
        let fixture = Fixture::new().await;
        let any = predicate("budget.available@1", json!({"micro_usd": u64::MAX}));
        let verdict = any.evaluate(&fixture.admission()).await.unwrap();
        assert!(verdict.holds);
        assert_eq!(verdict.detail, format!("plan `{PLAN}` has no budget"));
        fixture.ledger.set_budget(PLAN, None).await.unwrap();
        assert!(any.evaluate(&fixture.admission()).await.unwrap().holds);
    }

    #[tokio::test]
    async fn budget_counts_reserved_and_spent() {
        let fixture = Fixture::new().await;
        fixture.ledger.set_budget(PLAN, Some(1000)).await.unwrap();
        fixture.start_execution("e1").await;
        fixture.ledger.reserve(PLAN, "e1", 300).await.unwrap();
        fixture.start_execution("e2").await;
        fixture.ledger.reserve(PLAN, "e2", 200).await.unwrap();
        fixture.ledger.settle(PLAN, "e2", 100).await.unwrap();
        // 1000 - 300 reserved - 100 spent.
        let explicit =
            |micro_usd: u64| predicate("budget.available@1", json!({ "micro_usd": micro_usd }));
        let verdict = explicit(600).evaluate(&fixture.admission()).await.unwrap();
        assert!(verdict.holds);
        assert_eq!(verdict.detail, "available 600 >= 600 micro-USD");
        let verdict = explicit(601).evaluate(&fixture.admission()).await.unwrap();
        assert!(!verdict.holds);
        assert_eq!(verdict.detail, "available 600 < 601 micro-USD");

        let defaulted = predicate("budget.available@1", json!({}));
        let mut cx = fixture.admission();
        cx.reserve_micro_usd = 500;
        assert!(defaulted.evaluate(&cx).await.unwrap().holds);
        cx.reserve_micro_usd = 700;
        let verdict = defaulted.evaluate(&cx).await.unwrap();
        assert!(!verdict.holds);
        assert_eq!(verdict.detail, "available 600 < 700 micro-USD");
    }

    #[tokio::test]
    async fn lease_true_false_and_expired() {
        let fixture = Fixture::new().await;
        fixture.start_execution("holder").await;
        let held = WorldPath::parse("/artifacts/plans/p/a/").unwrap();
        let guard = fixture
            .ledger
            .acquire_lease(PLAN, &held, "holder", Duration::from_secs(3600))
            .await
            .unwrap();

        let at = |selector: &str| predicate("lease.acquirable@1", json!({ "selector": selector }));
        let verdict = at("/artifacts/plans/p/a/x.json")
            .evaluate(&fixture.admission())
            .await
            .unwrap();
        assert!(!verdict.holds);
        assert!(
            verdict.detail.starts_with(
                "`/artifacts/plans/p/a/x.json` overlaps `/artifacts/plans/p/a/` held by execution `holder` until "
            ),
            "{verdict:?}"
        );
        assert!(
            !at("/artifacts/plans/")
                .evaluate(&fixture.admission())
                .await
                .unwrap()
                .holds
        );
        let verdict = at("/artifacts/plans/p/b/")
            .evaluate(&fixture.admission())
            .await
            .unwrap();
        assert!(verdict.holds);
        assert_eq!(
            verdict.detail,
            "no unexpired lease overlaps `/artifacts/plans/p/b/`"
        );

        let defaulted = predicate("lease.acquirable@1", json!({}));
        let prefix = WorldPath::parse("/artifacts/plans/p/a/e9/").unwrap();
        let mut cx = fixture.admission();
        cx.write_prefix = Some(&prefix);
        assert!(!defaulted.evaluate(&cx).await.unwrap().holds);
        assert!(guard.release().await.unwrap());
        assert!(defaulted.evaluate(&cx).await.unwrap().holds);

        // A lease past its TTL is taken over by the next acquire: it blocks nothing.
        let expired = fixture
            .ledger
            .acquire_lease(PLAN, &held, "holder", Duration::ZERO)
            .await
            .unwrap();
        assert!(defaulted.evaluate(&cx).await.unwrap().holds);
        assert!(expired.release().await.unwrap());
    }

    #[tokio::test]
    async fn lease_without_a_selector_or_prefix_is_a_plan_error() {
        let fixture = Fixture::new().await;
        let defaulted = predicate("lease.acquirable@1", json!(null));
        let err = defaulted.evaluate(&fixture.admission()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Plan);
        assert!(err.message().contains("lease.acquirable@1"), "{err}");
    }

    #[test]
    fn bad_args_name_the_predicate_and_the_problem() {
        for (id, args, why) in [
            (
                "budget.available@1",
                json!({"micro_usd": -5}),
                "invalid value",
            ),
            (
                "budget.available@1",
                json!({"micro_usd": 1.5}),
                "invalid type",
            ),
            (
                "budget.available@1",
                json!({"budget": 1}),
                "unknown field `budget`",
            ),
            (
                "lease.acquirable@1",
                json!({"selector": "artifacts/x"}),
                "not a world path",
            ),
            (
                "lease.acquirable@1",
                json!({"selector": ["/artifacts/x"]}),
                "invalid type",
            ),
        ] {
            assert_refused(id, args, why);
        }
        // A selector may be a prefix, and may lie outside /artifacts/.
        for selector in ["/artifacts/x/", "/streams/x"] {
            assert!(
                Predicate::parse(&PredicateSpec {
                    id: "lease.acquirable@1".to_owned(),
                    args: json!({ "selector": selector }),
                })
                .is_ok()
            );
        }
    }
}
