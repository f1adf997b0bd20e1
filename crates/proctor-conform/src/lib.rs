//! The processor author's kit: `proctor conform`, which says whether a processor image
//! honours the container contract, and `proctor new`, which writes a processor that does.
//!
//! # Conformance
//!
//! [`conform`] starts the processor's image in a container of the local Docker engine,
//! through the local adapter ([`proctor_adapters::LocalAdapter::hold`]: the hardening, the
//! network and the staging of a real run), speaks to it directly, and reports named checks,
//! each passed, failed or not applicable, with its evidence. The names are stable:
//!
//! | check | passes when |
//! |---|---|
//! | `healthz.json_with_digest` | `GET /healthz` answers 200 with a health document naming the processor and the started image's digest |
//! | `container.non_root` | the image declares a `USER` other than root |
//! | `container.no_network_in_mock` | the mock runs succeed in a container with no network at all |
//! | `run.envelope_valid` | `POST /run` of the example answers 200 with a valid success envelope for the execution, its mode and the started image |
//! | `run.index_under_prefix` | the envelope's index is `{write_prefix}outputs.json` and every output lies under `{write_prefix}outputs/` |
//! | `run.index_sorted_compact` | the index file holds the canonical index (compact, sorted, no duplicates) of the envelope's outputs |
//! | `run.cids_match` | every output file has the size and content id the envelope gives |
//! | `run.receipts_identical` | both receipt copies exist, are byte-identical, hold every receipt field and no other, and agree with the run |
//! | `mock.byte_stable` | a second mock run of the same inputs writes the same output bytes and a receipt with the same stable part |
//! | `errors.canonical` | malformed JSON, another content type, a wrong schema, a bad mode, another processor's ref, non-object inputs, a bad execution id and bad write prefixes are refused with the contract's status and an error envelope with its code |
//! | `stream.sse_valid` | `POST /run-stream` answers a valid event stream of `progress` events ending in a `done` event whose data is the success envelope |
//! | `container.stops_on_sigterm` | the processor exits within 10 s of SIGTERM |
//! | `real.canary_secret_not_leaked` | run in `real` mode with a canary value for every declared secret and pass-through variable, none of the values appears in the envelope, `/healthz`, any file written or any log line; not applicable to a processor that declares neither |
//!
//! A check that depends on an earlier one that failed (no success envelope, no container)
//! fails too, saying so. Any failure makes the report an `ERR_ACCEPTANCE`. The canary run
//! gives the processor made-up values, never real secrets, in a container with no network
//! at all (local adapter option `{"network": "none"}`): it reaches no upstream, so it is as
//! hermetic as a mock run, under CI too.
//!
//! # Scaffold
//!
//! [`scaffold::new_processor`] writes `processors/NS/NAME/VERSION/` from the templates under
//! this crate's `templates/`, for Rust or Python.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod checks;
mod kit;
pub mod scaffold;
mod sse;

use proctor_contract::CanonError;
use proctor_workspace_hack as _;
use serde::{Serialize, Serializer};

pub use kit::{ConformRequest, ImageChoice, conform};

/// The check names, in the order a report lists them.
pub const CHECKS: [&str; 13] = [
    HEALTHZ,
    NON_ROOT,
    NO_NETWORK_IN_MOCK,
    ENVELOPE_VALID,
    INDEX_UNDER_PREFIX,
    INDEX_SORTED_COMPACT,
    CIDS_MATCH,
    RECEIPTS_IDENTICAL,
    BYTE_STABLE,
    ERRORS_CANONICAL,
    SSE_VALID,
    STOPS_ON_SIGTERM,
    CANARY_NOT_LEAKED,
];

const HEALTHZ: &str = "healthz.json_with_digest";
const NON_ROOT: &str = "container.non_root";
const NO_NETWORK_IN_MOCK: &str = "container.no_network_in_mock";
const ENVELOPE_VALID: &str = "run.envelope_valid";
const INDEX_UNDER_PREFIX: &str = "run.index_under_prefix";
const INDEX_SORTED_COMPACT: &str = "run.index_sorted_compact";
const CIDS_MATCH: &str = "run.cids_match";
const RECEIPTS_IDENTICAL: &str = "run.receipts_identical";
const BYTE_STABLE: &str = "mock.byte_stable";
const ERRORS_CANONICAL: &str = "errors.canonical";
const SSE_VALID: &str = "stream.sse_valid";
const STOPS_ON_SIGTERM: &str = "container.stops_on_sigterm";
const CANARY_NOT_LEAKED: &str = "real.canary_secret_not_leaked";

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The processor does what the check asks.
    Pass,
    /// It does not, or the check could not be made.
    Fail,
    /// The check does not apply to this processor (the evidence says why).
    NotApplicable,
}

/// One named check and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check's stable name (one of [`CHECKS`]).
    pub name: &'static str,
    /// How it ended.
    pub status: Status,
    /// What was seen.
    pub evidence: String,
}

/// What [`conform`] found.
#[derive(Debug, Clone, Serialize)]
pub struct ConformReport {
    /// The processor checked.
    #[serde(rename = "ref")]
    pub processor_ref: String,
    /// The image it ran from (`sha256:…`), once resolved.
    pub image_digest: Option<String>,
    /// Whether no check failed.
    pub ok: bool,
    /// Every check, in the order of [`CHECKS`].
    pub checks: Vec<Check>,
    /// `ERR_ACCEPTANCE` naming the failed checks, when any failed.
    #[serde(serialize_with = "error_json", skip_serializing_if = "Option::is_none")]
    pub error: Option<CanonError>,
}

/// A canonical error as `{"code","message"}`.
fn error_json<S: Serializer>(error: &Option<CanonError>, serializer: S) -> Result<S::Ok, S::Error> {
    let value = error
        .as_ref()
        .map(|error| serde_json::json!({"code": error.code(), "message": error.message()}));
    value.serialize(serializer)
}
