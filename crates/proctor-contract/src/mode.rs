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

/// Refuses `real` mode when the `CI` variable (passed in by the caller) is set.
///
/// Called before any registry, network or container work.
pub fn ci_guard(mode: Mode, ci_variable: Option<&str>) -> Result<(), CanonError> {
    if mode == Mode::Real
        && let Some(value) = ci_variable.filter(|value| ci_is_set(value))
    {
        return Err(CanonError::new(
            ErrorCode::CiSafety,
            format!("CI={value}; run mock mode in CI or unset CI outside it"),
        ));
    }
    Ok(())
}

/// Whether a present `CI` value means "in CI": anything but empty, `0` or `false`
/// (any case), ignoring surrounding whitespace.
fn ci_is_set(value: &str) -> bool {
    let value = value.trim();
    !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
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
    fn ci_guard_counts_every_non_false_value_as_ci() {
        for value in ["true", "TRUE", "1", "yes", "on", "github", " true "] {
            let err = ci_guard(Mode::Real, Some(value)).unwrap_err();
            assert_eq!(err.code(), ErrorCode::CiSafety, "CI={value:?}");
            assert!(err.message().contains("Refusing to run mode=real in CI"));
        }
    }

    #[test]
    fn ci_guard_treats_absent_empty_zero_and_false_as_outside_ci() {
        for value in [
            None,
            Some(""),
            Some("  "),
            Some("0"),
            Some("false"),
            Some("FALSE"),
            Some("False"),
        ] {
            assert!(ci_guard(Mode::Real, value).is_ok(), "CI={value:?}");
        }
    }

    #[test]
    fn ci_guard_allows_mock_in_ci_and_real_outside() {
        assert!(ci_guard(Mode::Mock, Some("true")).is_ok());
        assert!(ci_guard(Mode::Real, None).is_ok());
        assert!(ci_guard(Mode::Real, Some("false")).is_ok());
    }
}
