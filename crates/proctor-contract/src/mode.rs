//! Execution modes and the CI guard.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{CanonError, ErrorCode};

/// How a processor runs: `mock` is hermetic and deterministic, `real` may use secrets and
/// the network. Always chosen explicitly; never inferred from the environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deterministic, byte-stable outputs; no secrets, no network.
    #[default]
    Mock,
    /// Calls real providers with real secrets.
    Real,
}

impl Mode {
    /// The wire name: `mock` or `real`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Mock => "mock",
            Mode::Real => "real",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(value: &str) -> Result<Mode, String> {
        match value {
            "mock" => Ok(Mode::Mock),
            "real" => Ok(Mode::Real),
            other => Err(format!("mode must be `mock` or `real`, not `{other}`")),
        }
    }
}

/// Refuses `real` mode when the `CI` variable (passed in by the caller) is `true`.
///
/// Called before any registry, network or container work.
pub fn ci_guard(mode: Mode, ci_variable: Option<&str>) -> Result<(), CanonError> {
    let in_ci = ci_variable.is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
    if in_ci && mode == Mode::Real {
        return Err(CanonError::new(
            ErrorCode::CiSafety,
            "CI=true; run mock mode in CI or unset CI outside it",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_two_modes() {
        assert_eq!("mock".parse::<Mode>(), Ok(Mode::Mock));
        assert_eq!("real".parse::<Mode>(), Ok(Mode::Real));
        assert!("REAL".parse::<Mode>().is_err());
        assert!("".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::Mock);
    }

    #[test]
    fn ci_guard_refuses_real_in_ci() {
        let err = ci_guard(Mode::Real, Some("true")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::CiSafety);
        assert!(err.message().contains("Refusing to run mode=real in CI"));
        assert!(ci_guard(Mode::Real, Some("TRUE")).is_err());
    }

    #[test]
    fn ci_guard_allows_mock_in_ci_and_real_outside() {
        assert!(ci_guard(Mode::Mock, Some("true")).is_ok());
        assert!(ci_guard(Mode::Real, None).is_ok());
        assert!(ci_guard(Mode::Real, Some("false")).is_ok());
    }
}
