//! The error canon: one code per failure kind, each with a stable message fragment and an
//! exit code. Tests and users match on the code and the fragment, never on the detail.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Exit code for command-line usage errors (bad flags, unknown values): `ERR_USAGE`'s.
pub const EXIT_USAGE: i32 = 2;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $fragment:literal, $exit:literal),)*) => {
        /// Every canonical error code proctor can report.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $code, "`: ", $fragment)]
                #[serde(rename = $code)]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The wire name, e.g. `ERR_CI_SAFETY`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The stable message fragment every message of this code contains.
            pub fn fragment(self) -> &'static str {
                match self { $(ErrorCode::$variant => $fragment,)* }
            }

            /// The process exit code the CLI uses for this error.
            pub fn exit_code(self) -> i32 {
                match self { $(ErrorCode::$variant => $exit,)* }
            }

            /// Parses a wire name back into a code.
            pub fn from_wire(name: &str) -> Option<ErrorCode> {
                match name { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    CiSafety => ("ERR_CI_SAFETY", "Refusing to run mode=real in CI", 10),
    ImageUnpinned => ("ERR_IMAGE_UNPINNED", "image not pinned", 11),
    MissingSecret => ("ERR_MISSING_SECRET", "missing required secret", 12),
    OutputDuplicate => ("ERR_OUTPUT_DUPLICATE", "duplicate output after canonicalization", 13),
    AdapterInvocation => ("ERR_ADAPTER_INVOCATION", "adapter invocation failed", 14),
    ModalInvocation => ("ERR_MODAL_INVOCATION", "modal invocation failed", 15),
    Inputs => ("ERR_INPUTS", "invalid inputs payload", 16),
    DecodedSlash => ("ERR_DECODED_SLASH", "encoded slash in world path", 17),
    DotSegments => ("ERR_DOT_SEGMENTS", "dot segments in world path", 18),
    BadFacet => ("ERR_BAD_FACET", "world path facet must be /artifacts/ or /streams/", 19),
    PercentDecode => ("ERR_PERCENT_DECODE", "invalid percent-encoding in world path", 20),
    SelectorKindMismatch => ("ERR_SELECTOR_KIND_MISMATCH", "selector kind mismatch", 21),
    BadPath => ("ERR_BAD_PATH", "invalid world path", 22),
    PathTooLong => ("ERR_PATH_TOO_LONG", "world path too long", 23),
    WritePrefix => ("ERR_WRITE_PREFIX", "invalid write_prefix", 24),
    ProcessorRef => ("ERR_PROCESSOR_REF", "invalid processor ref", 25),
    Registry => ("ERR_REGISTRY", "invalid processor registry", 26),
    UnknownProcessor => ("ERR_UNKNOWN_PROCESSOR", "processor not found in registry", 27),
    Envelope => ("ERR_ENVELOPE", "invalid envelope", 28),
    Timeout => ("ERR_TIMEOUT", "execution timed out", 29),
    ImageDrift => ("ERR_IMAGE_DRIFT", "image digest mismatch", 30),
    Build => ("ERR_BUILD", "image build failed", 31),
    Provider => ("ERR_PROVIDER", "provider failed", 32),
    OutputWrite => ("ERR_OUTPUT_WRITE", "output write failed", 33),
    Interrupted => ("ERR_INTERRUPTED", "run interrupted", 34),
    Evidence => ("ERR_EVIDENCE", "evidence does not match the run", 35),
    Abandoned => ("ERR_ABANDONED", "execution abandoned", 36),
    ProcessorBusy => ("ERR_PROCESSOR_BUSY", "processor busy", 37),
    ArtifactMismatch => ("ERR_ARTIFACT_MISMATCH", "input artifact does not match its content id", 38),
    BudgetExceeded => ("ERR_BUDGET_EXCEEDED", "budget exceeded", 40),
    LeaseConflict => ("ERR_LEASE_CONFLICT", "write path leased by another execution", 41),
    Ledger => ("ERR_LEDGER", "ledger error", 42),
    LedgerChain => ("ERR_LEDGER_CHAIN", "ledger chain broken", 43),
    Push => ("ERR_PUSH", "push failed", 50),
    RegistryUnreachable => ("ERR_REGISTRY_UNREACHABLE", "registry unreachable", 51),
    Pin => ("ERR_PIN", "pin refused", 52),
    Deploy => ("ERR_DEPLOY", "deploy failed", 60),
    DeployTarget => ("ERR_DEPLOY_TARGET", "no deploy target configured", 61),
    DeployValidation => ("ERR_DEPLOY_VALIDATION", "deployment failed validation", 62),
    Store => ("ERR_STORE", "artifact store error", 70),
    NotFound => ("ERR_NOT_FOUND", "artifact not found", 71),
    Lane => ("ERR_LANE", "lane rule violated", 80),
    Acceptance => ("ERR_ACCEPTANCE", "acceptance check failed", 81),
    Verify => ("ERR_VERIFY", "verification failed", 90),
    Plan => ("ERR_PLAN", "invalid plan", 100),
    Predicate => ("ERR_PREDICATE", "predicate not satisfied", 101),
    Proposal => ("ERR_PROPOSAL", "invalid plan proposal", 102),
    Doctor => ("ERR_DOCTOR", "doctor check failed", 110),
    Unauthorized => ("ERR_UNAUTHORIZED", "missing or wrong token", 120),
    Serve => ("ERR_SERVE", "server failed", 121),
    UnknownExecution => ("ERR_UNKNOWN_EXECUTION", "execution not found", 122),
    UnknownPlan => ("ERR_UNKNOWN_PLAN", "plan not found", 123),
    Conflict => ("ERR_CONFLICT", "request conflicts with the resource's state", 124),
    Internal => ("ERR_INTERNAL", "internal error", 1),
    Usage => ("ERR_USAGE", "invalid command line", 2),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A canonical error: a code plus a detail naming what was wrong (a path, a secret's name,
/// a JSON pointer). Details never carry secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {}", self.message())]
pub struct CanonError {
    code: ErrorCode,
    detail: String,
}

impl CanonError {
    /// An error of `code` with a detail; an empty detail gives the bare fragment.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> CanonError {
        CanonError {
            code,
            detail: detail.into(),
        }
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The detail alone, without the fragment.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The full message: the stable fragment, then the detail.
    pub fn message(&self) -> String {
        if self.detail.is_empty() {
            self.code.fragment().to_owned()
        } else {
            format!("{}: {}", self.code.fragment(), self.detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_exit_codes_are_distinct() {
        let mut exits = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
            assert!(code.as_str().starts_with("ERR_"));
            assert!(exits.insert(code.exit_code()), "exit code reused by {code}");
            assert_eq!(code.exit_code() == EXIT_USAGE, code == ErrorCode::Usage);
            assert_ne!(code.exit_code(), 0);
        }
    }

    #[test]
    fn message_carries_fragment_then_detail() {
        let err = CanonError::new(ErrorCode::MissingSecret, "OPENAI_API_KEY");
        assert_eq!(err.message(), "missing required secret: OPENAI_API_KEY");
        assert_eq!(
            err.to_string(),
            "ERR_MISSING_SECRET: missing required secret: OPENAI_API_KEY"
        );
        assert_eq!(
            CanonError::new(ErrorCode::Inputs, "").message(),
            "invalid inputs payload"
        );
    }

    #[test]
    fn serializes_as_wire_name() {
        assert_eq!(
            serde_json::to_string(&ErrorCode::CiSafety).unwrap(),
            "\"ERR_CI_SAFETY\""
        );
    }
}
