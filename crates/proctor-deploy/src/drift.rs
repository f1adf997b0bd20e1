//! Drift: does each deployed processor run the image its registry entry pins? Modal keeps no
//! record of the registry digest an app was built from, so the processor's own `/healthz`
//! (which reports `PROCTOR_IMAGE_DIGEST`, set by the generated app) is asked.

use std::fmt;
use std::time::Duration;

use futures_util::future::join_all;
use proctor_contract::{CanonError, ErrorCode, Health, Platform, ProcessorRef, Redactor};
use proctor_registry::{ProcessorSpec, pinned_image};
use serde::Serialize;

use crate::{Endpoint, ModalTarget, ProxyAuth};

/// What a drift check found for one processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftStatus {
    /// The deployed digest equals the pinned one.
    Ok,
    /// The endpoint answers with another digest (or another processor).
    Drift,
    /// The endpoint did not give a `/healthz` answer: closed, timed out, not 2xx, not JSON.
    Unreachable,
    /// The registry entry has no amd64 pin, so there is nothing to compare.
    Unpinned,
}

impl DriftStatus {
    /// `ok`, `drift`, `unreachable` or `unpinned`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftStatus::Ok => "ok",
            DriftStatus::Drift => "drift",
            DriftStatus::Unreachable => "unreachable",
            DriftStatus::Unpinned => "unpinned",
        }
    }
}

impl fmt::Display for DriftStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the drift table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftRow {
    /// The processor.
    #[serde(rename = "ref")]
    pub processor_ref: ProcessorRef,
    /// The `/healthz` URL asked, redacted.
    pub endpoint: String,
    /// The pinned amd64 digest `sha256:…`, if pinned.
    pub pinned: Option<String>,
    /// The digest the endpoint reports, if it answered.
    pub deployed: Option<String>,
    /// The verdict.
    pub status: DriftStatus,
    /// Why the status is not `ok` (redacted), if it is not.
    pub detail: Option<String>,
}

/// Asks every processor's deployed endpoint for `/healthz` (concurrently, each within
/// `timeout`, with proxy-auth headers when given) and compares the reported digest and ref
/// with the pin. Rows come back in the order of `specs`. A target without a workspace or
/// base URL is `ERR_DEPLOY_TARGET` before any request.
pub async fn check_drift(
    specs: &[ProcessorSpec],
    target: &ModalTarget,
    auth: Option<&ProxyAuth>,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<Vec<DriftRow>, CanonError> {
    let endpoints = specs
        .iter()
        .map(|spec| Endpoint::resolve(&spec.processor_ref, target))
        .collect::<Result<Vec<_>, _>>()?;
    let redactor = Redactor::new(auth.map(ProxyAuth::secret_values).into_iter().flatten());
    let checks = specs
        .iter()
        .zip(&endpoints)
        .map(|(spec, endpoint)| check_one(spec, endpoint, auth, client, timeout, &redactor));
    Ok(join_all(checks).await)
}

/// The verdict over a drift table: `ERR_IMAGE_DRIFT` naming the drifted refs, else
/// `ERR_MODAL_INVOCATION` naming the unreachable ones, else `ERR_IMAGE_UNPINNED` naming the
/// unpinned ones, else success.
pub fn drift_verdict(rows: &[DriftRow]) -> Result<(), CanonError> {
    let refs_with = |status: DriftStatus| -> Vec<String> {
        rows.iter()
            .filter(|row| row.status == status)
            .map(|row| row.processor_ref.to_string())
            .collect()
    };
    let checks = [
        (
            DriftStatus::Drift,
            ErrorCode::ImageDrift,
            "deployed image differs from the pin for",
        ),
        (
            DriftStatus::Unreachable,
            ErrorCode::ModalInvocation,
            "no /healthz answer from the deployment of",
        ),
        (
            DriftStatus::Unpinned,
            ErrorCode::ImageUnpinned,
            "nothing to compare, no amd64 pin for",
        ),
    ];
    for (status, code, what) in checks {
        let refs = refs_with(status);
        if !refs.is_empty() {
            return Err(CanonError::new(code, format!("{what} {}", refs.join(", "))));
        }
    }
    Ok(())
}

/// The drift row of one processor.
async fn check_one(
    spec: &ProcessorSpec,
    endpoint: &Endpoint,
    auth: Option<&ProxyAuth>,
    client: &reqwest::Client,
    timeout: Duration,
    redactor: &Redactor,
) -> DriftRow {
    let url = endpoint.url("/healthz");
    let mut row = DriftRow {
        processor_ref: spec.processor_ref.clone(),
        endpoint: redactor.redact(&url).into_owned(),
        pinned: None,
        deployed: None,
        status: DriftStatus::Unpinned,
        detail: None,
    };
    let pinned = match pinned_image(spec, Platform::Amd64) {
        Ok(reference) => reference.digest().to_string(),
        Err(error) => {
            row.detail = Some(error.detail().to_owned());
            return row;
        }
    };
    row.pinned = Some(pinned.clone());
    let health = match fetch_health(&url, auth, client, timeout).await {
        Ok(health) => health,
        Err(why) => {
            row.status = DriftStatus::Unreachable;
            row.detail = Some(redactor.redact(&why).into_owned());
            return row;
        }
    };
    row.deployed = Some(health.image_digest.clone());
    (row.status, row.detail) = if health.processor_ref != spec.processor_ref {
        (
            DriftStatus::Drift,
            Some(format!("the endpoint serves {}", health.processor_ref)),
        )
    } else if health.image_digest != pinned {
        (
            DriftStatus::Drift,
            Some("deployed digest differs from the pin; redeploy".to_owned()),
        )
    } else {
        (DriftStatus::Ok, None)
    };
    row
}

/// `GET url` and parse a [`Health`]; why not, otherwise.
async fn fetch_health(
    url: &str,
    auth: Option<&ProxyAuth>,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<Health, String> {
    let mut request = client.get(url).timeout(timeout);
    if let Some(auth) = auth {
        request = auth.apply(request);
    }
    let response = request
        .send()
        .await
        .map_err(|error| describe(&error, timeout))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| describe(&error, timeout))?;
    if !status.is_success() {
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            format!(
                " (proxy auth: set {} and {})",
                ProxyAuth::ENV_TOKEN_ID,
                ProxyAuth::ENV_TOKEN_SECRET
            )
        } else {
            String::new()
        };
        return Err(format!("HTTP {status}{hint}"));
    }
    serde_json::from_slice::<Health>(&body)
        .map_err(|error| format!("not a /healthz answer: {error}"))
}

/// A transport failure in a few words, without the URL.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("no answer within {}s", timeout.as_secs_f64())
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        format!("request failed: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(processor_ref: &str, status: DriftStatus) -> DriftRow {
        DriftRow {
            processor_ref: processor_ref.parse().unwrap(),
            endpoint: "http://127.0.0.1:9/healthz".into(),
            pinned: None,
            deployed: None,
            status,
            detail: None,
        }
    }

    #[test]
    fn the_verdict_names_the_worst_rows() {
        assert!(drift_verdict(&[]).is_ok());
        assert!(drift_verdict(&[row("a/b@1", DriftStatus::Ok)]).is_ok());
        let rows = [
            row("a/b@1", DriftStatus::Unreachable),
            row("a/c@1", DriftStatus::Drift),
            row("a/d@1", DriftStatus::Unpinned),
        ];
        let err = drift_verdict(&rows).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ImageDrift);
        assert_eq!(
            err.message(),
            "image digest mismatch: deployed image differs from the pin for a/c@1"
        );
        let err = drift_verdict(&[rows[0].clone(), rows[2].clone()]).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ModalInvocation);
        assert!(
            err.message()
                .starts_with("modal invocation failed: no /healthz answer"),
            "{err}"
        );
        let err = drift_verdict(&rows[2..]).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ImageUnpinned);
    }

    #[test]
    fn rows_serialize_with_lowercase_status() {
        let json = serde_json::to_value(row("a/b@1", DriftStatus::Unreachable)).unwrap();
        assert_eq!(json["ref"], "a/b@1");
        assert_eq!(json["status"], "unreachable");
    }
}
