//! `artifact.exists@1` and `file.size_gt@1`: what the store says about one artifact, without
//! reading it.

use proctor_contract::CanonError;
use proctor_store::ObjectInfo;
use serde::Deserialize;

use super::{PathArg, PathRole, PredicateContext, Verdict, parse_args};

pub(super) const EXISTS_ID: &str = "artifact.exists@1";
pub(super) const SIZE_GT_ID: &str = "file.size_gt@1";

/// `artifact.exists@1 {path}`: the artifact at `path` exists.
#[derive(Debug, Clone)]
pub(super) struct Exists {
    pub(super) path: PathArg,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExistsArgs {
    path: String,
}

impl Exists {
    pub(super) fn parse(args: &serde_json::Value) -> Result<Exists, CanonError> {
        let ExistsArgs { path } = parse_args(EXISTS_ID, args)?;
        Ok(Exists {
            path: PathArg::parse(EXISTS_ID, "path", path, PathRole::Artifact)?,
        })
    }

    pub(super) async fn evaluate(
        &self,
        id: &str,
        cx: &PredicateContext<'_>,
    ) -> Result<Verdict, CanonError> {
        let path = self.path.expand(id, cx.outputs)?;
        Ok(match head(cx, &path).await? {
            Some(info) => {
                Verdict::new(true, format!("`{path}` exists ({} bytes)", info.size_bytes))
            }
            None => Verdict::new(false, format!("`{path}` does not exist")),
        })
    }
}

/// `file.size_gt@1 {path, bytes}`: the artifact at `path` is larger than `bytes`.
#[derive(Debug, Clone)]
pub(super) struct SizeGreaterThan {
    pub(super) path: PathArg,
    bytes: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeGreaterThanArgs {
    path: String,
    bytes: u64,
}

impl SizeGreaterThan {
    pub(super) fn parse(args: &serde_json::Value) -> Result<SizeGreaterThan, CanonError> {
        let SizeGreaterThanArgs { path, bytes } = parse_args(SIZE_GT_ID, args)?;
        Ok(SizeGreaterThan {
            path: PathArg::parse(SIZE_GT_ID, "path", path, PathRole::Artifact)?,
            bytes,
        })
    }

    pub(super) async fn evaluate(
        &self,
        id: &str,
        cx: &PredicateContext<'_>,
    ) -> Result<Verdict, CanonError> {
        let path = self.path.expand(id, cx.outputs)?;
        let Some(info) = head(cx, &path).await? else {
            return Ok(Verdict::new(false, format!("`{path}` does not exist")));
        };
        let (size, bytes) = (info.size_bytes, self.bytes);
        Ok(if size > bytes {
            Verdict::new(true, format!("size {size} > {bytes}"))
        } else {
            Verdict::new(false, format!("size {size} <= {bytes}"))
        })
    }
}

/// The artifact's size and path, `None` when it does not exist; other store failures are
/// errors.
async fn head(
    cx: &PredicateContext<'_>,
    path: &proctor_contract::WorldPath,
) -> Result<Option<ObjectInfo>, CanonError> {
    match cx.store.head(path).await {
        Ok(info) => Ok(Some(info)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use proctor_contract::ErrorCode;
    use serde_json::json;

    use super::super::testing::{Fixture, assert_refused, predicate};

    #[tokio::test]
    async fn exists_true_false_and_outputs() {
        let fixture = Fixture::new().await;
        fixture.put("/artifacts/inputs/style.md", b"# style").await;
        fixture
            .put("/artifacts/plans/p/t/e1/outputs/stats.json", b"{}")
            .await;

        let style = predicate(
            "artifact.exists@1",
            json!({"path": "/artifacts/inputs/style.md"}),
        );
        let verdict = style.evaluate(&fixture.admission()).await.unwrap();
        assert!(verdict.holds, "{verdict:?}");
        assert_eq!(
            verdict.detail,
            "`/artifacts/inputs/style.md` exists (7 bytes)"
        );

        let missing = predicate(
            "artifact.exists@1",
            json!({"path": "/artifacts/inputs/none.md"}),
        );
        let verdict = missing.evaluate(&fixture.admission()).await.unwrap();
        assert!(!verdict.holds);
        assert_eq!(verdict.detail, "`/artifacts/inputs/none.md` does not exist");

        let outputs = predicate("artifact.exists@1", json!({"path": "{outputs}/stats.json"}));
        let verdict = outputs
            .evaluate(&fixture.success("/artifacts/plans/p/t/e1/outputs"))
            .await
            .unwrap();
        assert!(verdict.holds, "{verdict:?}");
        let verdict = outputs
            .evaluate(&fixture.success("/artifacts/plans/p/t/e2/outputs"))
            .await
            .unwrap();
        assert!(!verdict.holds, "{verdict:?}");
    }

    #[tokio::test]
    async fn outputs_outside_the_success_scope_is_a_plan_error() {
        let fixture = Fixture::new().await;
        let outputs = predicate("artifact.exists@1", json!({"path": "{outputs}/stats.json"}));
        let err = outputs.evaluate(&fixture.admission()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Plan);
        assert!(err.message().contains("success scope"), "{err}");
    }

    #[tokio::test]
    async fn a_directory_is_not_an_artifact() {
        let fixture = Fixture::new().await;
        fixture.put("/artifacts/dir/a", b"x").await;
        let dir = predicate("artifact.exists@1", json!({"path": "/artifacts/dir"}));
        assert!(!dir.evaluate(&fixture.admission()).await.unwrap().holds);
    }

    #[tokio::test]
    async fn store_failures_are_errors() {
        let fixture = Fixture::new().await;
        fixture.put("/artifacts/file", b"x").await;
        // The store refuses to read through a symbolic link: an error, not a false verdict.
        fixture.link("/artifacts/link", "/artifacts/file");
        let through_link = predicate("artifact.exists@1", json!({"path": "/artifacts/link"}));
        let err = through_link
            .evaluate(&fixture.admission())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Store, "{err}");
    }

    #[tokio::test]
    async fn size_gt_true_false_missing() {
        let fixture = Fixture::new().await;
        fixture.put("/artifacts/a.txt", b"twelve bytes").await;
        let over = |bytes: u64| {
            predicate(
                "file.size_gt@1",
                json!({"path": "/artifacts/a.txt", "bytes": bytes}),
            )
        };

        let verdict = over(10).evaluate(&fixture.admission()).await.unwrap();
        assert!(verdict.holds);
        assert_eq!(verdict.detail, "size 12 > 10");
        let verdict = over(12).evaluate(&fixture.admission()).await.unwrap();
        assert!(!verdict.holds);
        assert_eq!(verdict.detail, "size 12 <= 12");

        let missing = predicate(
            "file.size_gt@1",
            json!({"path": "/artifacts/b.txt", "bytes": 0}),
        );
        let verdict = missing.evaluate(&fixture.admission()).await.unwrap();
        assert!(!verdict.holds);
        assert!(verdict.detail.contains("does not exist"), "{verdict:?}");
    }

    #[test]
    fn bad_args_name_the_predicate_and_the_problem() {
        for (id, args, why) in [
            ("artifact.exists@1", json!({}), "missing field `path`"),
            ("artifact.exists@1", json!({"path": 1}), "invalid type"),
            (
                "artifact.exists@1",
                json!({"path": "/artifacts/a", "extra": 1}),
                "unknown field `extra`",
            ),
            (
                "file.size_gt@1",
                json!({"path": "/artifacts/a"}),
                "missing field `bytes`",
            ),
            (
                "file.size_gt@1",
                json!({"path": "/artifacts/a", "bytes": -1}),
                "invalid value",
            ),
            (
                "file.size_gt@1",
                json!({"path": "/artifacts/a", "bytes": "1"}),
                "invalid type",
            ),
        ] {
            assert_refused(id, args, why);
        }
    }
}
