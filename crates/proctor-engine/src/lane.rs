//! Lanes: the rules a run, a push or a pin follows in a pull-request or a main-branch
//! workflow. `--lane` (or `PROCTOR_LANE`) selects a lane and nothing else: it never selects a
//! mode.
//!
//! - `pr`: images are built from source (`--build` required), `mock` only — so no secret is
//!   read — and outputs stay on the filesystem artifacts root; nothing is pushed or pinned.
//! - `main`: only pinned digests run (`--build` refused; an unpinned image is
//!   `ERR_IMAGE_UNPINNED`, raised by the run's image check).
//!
//! A violated rule is `ERR_LANE`, raised right after the CI guard, before any registry,
//! network or container work.

use std::fmt;
use std::str::FromStr;

use proctor_contract::{CanonError, ErrorCode, Mode};

/// A lane, as `--lane` and `PROCTOR_LANE` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Pull requests: build from source, mock only, no secrets, nothing published.
    Pr,
    /// The main branch: pinned images only.
    Main,
}

impl Lane {
    /// Every lane, in the order help texts list them.
    pub const ALL: [Lane; 2] = [Lane::Pr, Lane::Main];

    /// `pr` or `main`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Pr => "pr",
            Lane::Main => "main",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lane {
    type Err = String;

    fn from_str(name: &str) -> Result<Lane, String> {
        Lane::ALL
            .into_iter()
            .find(|lane| lane.as_str() == name)
            .ok_or_else(|| format!("unknown lane `{name}`; expected pr or main"))
    }
}

/// Checks a run against its lane's rules; no lane, no rule.
pub fn check_run(lane: Option<Lane>, mode: Mode, build: bool) -> Result<(), CanonError> {
    let refuse = |detail: &str| Err(CanonError::new(ErrorCode::Lane, detail));
    match lane {
        None => Ok(()),
        Some(Lane::Pr) if !build => refuse(
            "the pr lane builds images from source; pass --build (pinned images run in the main lane)",
        ),
        Some(Lane::Pr) if mode == Mode::Real => refuse(
            "the pr lane runs mode=mock only (no secrets are read in pull requests); drop --mode real",
        ),
        Some(Lane::Main) if build => refuse(
            "the main lane runs pinned digests only; drop --build (proctor lane main builds, pushes and pins first)",
        ),
        Some(_) => Ok(()),
    }
}

/// Refuses publishing (`push`, `pin`) in the pr lane, which leaves registries and pins alone.
pub fn check_publish(lane: Option<Lane>, command: &str) -> Result<(), CanonError> {
    match lane {
        Some(Lane::Pr) => Err(CanonError::new(
            ErrorCode::Lane,
            format!(
                "`proctor {command}` publishes images or pins, which the pr lane never does; run it in the main lane"
            ),
        )),
        Some(Lane::Main) | None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_lane_every_run_passes() {
        for mode in [Mode::Mock, Mode::Real] {
            for build in [false, true] {
                assert_eq!(check_run(None, mode, build), Ok(()));
            }
        }
        assert_eq!(check_publish(None, "push"), Ok(()));
    }

    #[test]
    fn the_pr_lane_builds_from_source_in_mock_mode() {
        assert_eq!(check_run(Some(Lane::Pr), Mode::Mock, true), Ok(()));
        let no_build = check_run(Some(Lane::Pr), Mode::Mock, false).unwrap_err();
        assert_eq!(no_build.code(), ErrorCode::Lane);
        assert!(no_build.message().starts_with("lane rule violated: "));
        assert!(no_build.message().contains("pass --build"), "{no_build}");
        let real = check_run(Some(Lane::Pr), Mode::Real, true).unwrap_err();
        assert!(real.message().contains("mode=mock only"), "{real}");
        let push = check_publish(Some(Lane::Pr), "push").unwrap_err();
        assert_eq!(push.code(), ErrorCode::Lane);
        assert!(push.message().contains("`proctor push`"), "{push}");
    }

    #[test]
    fn the_main_lane_runs_pinned_images_in_either_mode() {
        assert_eq!(check_run(Some(Lane::Main), Mode::Mock, false), Ok(()));
        assert_eq!(check_run(Some(Lane::Main), Mode::Real, false), Ok(()));
        assert_eq!(check_publish(Some(Lane::Main), "pin"), Ok(()));
        let build = check_run(Some(Lane::Main), Mode::Mock, true).unwrap_err();
        assert_eq!(build.code(), ErrorCode::Lane);
        assert!(build.message().contains("drop --build"), "{build}");
    }

    #[test]
    fn lanes_are_named_pr_and_main() {
        assert_eq!("pr".parse(), Ok(Lane::Pr));
        assert_eq!(Lane::Main.to_string(), "main");
        assert!("real".parse::<Lane>().is_err());
        assert!("mock".parse::<Lane>().is_err());
    }
}
