//! `proctor lane pr` and `proctor lane main`: the engine runs the lane's chain
//! ([`proctor_engine::run_lane`]) in the World the flags name; this module prints its report
//! — a summary table (step, status, time, detail) and the stopping error, or one JSON line —
//! and exits with the stopping error's code, 0 when every selected step settled.

use std::time::Duration;

use proctor_engine::{
    CancellationToken, ChainReport, Engine, EngineConfig, Limits, StepDetail, StepOutcome,
    StepStatus, run_lane,
};
use serde_json::{Value, json};

use crate::args::{LaneConfig, OutputFormat};
use crate::deploy_commands::host_env;
use crate::image_commands::{built_json, pins_json, pushed_json};
use crate::output::{emit, error_json, json_report, table};
use crate::progress::{ProgressOptions, reporter};

/// Runs the lane's chain and prints its report; returns the exit code (the stopping
/// error's, or 0). On a terminal its steps, builds, pushes and deploys show progress.
pub(crate) async fn execute(
    config: &LaneConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<i32> {
    let engine = Engine::new(EngineConfig {
        registry_root: config.registry_root.clone(),
        artifacts_root: config.artifacts_root.clone(),
        ledger_url: config.ledger_url.clone(),
        env: host_env(),
        limits: Limits::default(),
    })
    .with_cargo_workspace(config.cargo_workspace.clone())
    .with_progress(reporter(ProgressOptions::for_output(config.format)));
    let report = run_lane(&engine, &config.request, cancel).await;
    engine.close().await;
    match config.format {
        OutputFormat::Json => emit(&json_report(&report_json(&report)))?,
        OutputFormat::Human => emit(&report_text(&report))?,
    }
    Ok(report
        .error
        .as_ref()
        .map_or(0, |error| error.code().exit_code()))
}

/// What a settled step did, one record per processor.
fn detail_json(detail: &StepDetail) -> Value {
    match detail {
        StepDetail::BuildPin(pinned) => pinned
            .iter()
            .map(|pinned| {
                json!({
                    "ref": pinned.processor_ref,
                    "file": pinned.file,
                    "built": built_json(&pinned.processor_ref, &pinned.built),
                    "pushed": pushed_json(&pinned.pushed),
                    "pins": pins_json(&pinned.pins),
                })
            })
            .collect(),
        StepDetail::Runs(accepted) => json!(accepted),
        StepDetail::Deploy(apps) => apps
            .iter()
            .map(|app| {
                json!({
                    "ref": app.processor_ref,
                    "app": app.app,
                    "tag": app.tag,
                    "file": app.file,
                    "image_digest": app.image_digest,
                    "validation": app.validation,
                })
            })
            .collect(),
        StepDetail::Drift(rows) => json!(rows),
    }
}

fn step_json(outcome: &StepOutcome) -> Value {
    json!({
        "step": outcome.step.as_str(),
        "status": outcome.status.as_str(),
        "duration_ms": outcome.duration_ms(),
        "summary": outcome.report.as_ref().map(|report| &report.summary),
        "processors": outcome.report.as_ref().map(|report| detail_json(&report.detail)),
        "error": outcome.error.as_ref().map(error_json),
    })
}

fn report_json(report: &ChainReport) -> Value {
    let steps: Vec<Value> = report.steps.iter().map(step_json).collect();
    json!({
        "lane": report.lane.as_str(),
        "registry": report.registry.as_ref().map(ToString::to_string),
        "processors": report.processors,
        "skipped": report.skipped,
        "steps": steps,
        "error": report.error.as_ref().map(error_json),
    })
}

fn report_text(report: &ChainReport) -> String {
    let mut text = format!("lane {}: {}", report.lane, report.processor_list());
    if let Some(registry) = &report.registry {
        text.push_str(&format!(" (registry {registry})"));
    }
    text.push('\n');
    for skipped in &report.skipped {
        text.push_str(&format!(
            "skipped {}: {}\n",
            skipped.processor_ref, skipped.reason
        ));
    }
    let rows: Vec<[String; 4]> = report
        .steps
        .iter()
        .map(|outcome| {
            let detail = match (&outcome.report, &outcome.error, outcome.status) {
                (Some(report), _, _) => report.summary.clone(),
                (_, Some(error), _) => error.code().to_string(),
                (_, _, StepStatus::Skipped) => "not reached: an earlier step failed".to_owned(),
                _ => "-".to_owned(),
            };
            [
                outcome.step.as_str().to_owned(),
                outcome.status.as_str().to_owned(),
                outcome.duration.map_or("-".to_owned(), seconds),
                detail,
            ]
        })
        .collect();
    text.push_str(&table(["STEP", "STATUS", "TIME", "DETAIL"], &rows));
    if let Some(error) = &report.error {
        text.push_str(&format!("error: {error}\n"));
    }
    text
}

/// `12.3 s`.
fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use proctor_contract::{CanonError, ErrorCode};
    use proctor_engine::{AcceptedProcessor, Lane, LaneStep, SkippedProcessor, StepReport};

    use super::*;

    fn report() -> ChainReport {
        let settled = StepOutcome {
            step: LaneStep::BuildPin,
            status: StepStatus::NotRun,
            duration: None,
            report: None,
            error: None,
        };
        let accepted = AcceptedProcessor {
            processor_ref: "text/stats@1".parse().unwrap(),
            image_digest: "sha256:ab".to_owned(),
            executions: ["e1".to_owned(), "e2".to_owned()],
            outputs: 3,
        };
        let error = CanonError::new(ErrorCode::DeployTarget, "no Modal workspace");
        ChainReport {
            lane: Lane::Main,
            registry: Some("127.0.0.1:5000/proctor/lane".parse().unwrap()),
            processors: vec!["text/stats@1".parse().unwrap()],
            skipped: Vec::new(),
            steps: vec![
                settled,
                StepOutcome {
                    step: LaneStep::Acceptance,
                    status: StepStatus::Settled,
                    duration: Some(Duration::from_millis(1234)),
                    report: Some(StepReport {
                        summary: "accepted".to_owned(),
                        detail: StepDetail::Runs(vec![accepted]),
                    }),
                    error: None,
                },
                StepOutcome {
                    step: LaneStep::Deploy,
                    status: StepStatus::Failed,
                    duration: Some(Duration::from_millis(5)),
                    report: None,
                    error: Some(error.clone()),
                },
                StepOutcome {
                    step: LaneStep::Drift,
                    status: StepStatus::Skipped,
                    duration: None,
                    report: None,
                    error: None,
                },
            ],
            error: Some(error),
        }
    }

    #[test]
    fn the_summary_table_has_a_row_per_step_then_the_error() {
        let text = report_text(&report());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "lane main: text/stats@1 (registry 127.0.0.1:5000/proctor/lane)"
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["build-pin", "not", "run", "-", "-"]
        );
        assert!(lines[3].contains("settled") && lines[3].contains("1.2 s"));
        assert!(lines[3].ends_with("accepted"), "{text}");
        assert!(lines[4].ends_with("ERR_DEPLOY_TARGET"), "{text}");
        assert!(lines[5].ends_with("not reached: an earlier step failed"));
        assert_eq!(
            lines[6],
            "error: ERR_DEPLOY_TARGET: no deploy target configured: no Modal workspace"
        );
    }

    #[test]
    fn the_json_report_has_every_step() {
        let json = report_json(&report());
        assert_eq!(json["lane"], "main");
        assert_eq!(json["processors"], json!(["text/stats@1"]));
        assert_eq!(json["skipped"], json!([]));
        assert_eq!(json["steps"][0]["status"], "not run");
        let acceptance = &json["steps"][1];
        assert_eq!(acceptance["duration_ms"], 1234);
        assert_eq!(
            acceptance["processors"],
            json!([{"ref": "text/stats@1", "image_digest": "sha256:ab", "executions": ["e1", "e2"], "outputs": 3}])
        );
        assert_eq!(json["steps"][2]["error"]["code"], "ERR_DEPLOY_TARGET");
        assert_eq!(json["error"]["code"], "ERR_DEPLOY_TARGET");
    }

    #[test]
    fn skipped_processors_follow_the_header_and_are_in_the_json_report() {
        let mut report = report();
        report.skipped = vec![SkippedProcessor {
            processor_ref: "llm/litellm@2".parse().unwrap(),
            reason: "no build.cargo_package".to_owned(),
        }];
        let text = report_text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "skipped llm/litellm@2: no build.cargo_package");
        assert!(lines[2].starts_with("STEP"), "{text}");
        assert_eq!(
            report_json(&report)["skipped"],
            json!([{"ref": "llm/litellm@2", "reason": "no build.cargo_package"}])
        );
    }
}
