//! The one naming convention for processors on Modal: app, function and web endpoint
//! label, derived from the processor ref and the deploy target.

use proctor_contract::ProcessorRef;

use crate::ModalTarget;
use crate::target::dns_slug;

/// The function every generated app defines; it starts the processor's HTTP server.
pub const FUNCTION_NAME: &str = "serve";

/// Prefix of every app name.
const APP_PREFIX: &str = "proctor-";
/// Longest DNS label (RFC 1035), which the whole endpoint host label must fit.
const DNS_LABEL_MAX: usize = 63;
/// Longest Modal app name.
const APP_NAME_MAX: usize = 64;
/// Hex digits of the hash that keeps a shortened or rewritten label unique.
const HASH_LEN: usize = 8;

/// The Modal names of one processor version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModalNames {
    /// The Modal app, `proctor-<label>` (≤ 64 characters of `[a-z0-9-]`).
    pub app: String,
    /// The function serving the web endpoint, always [`FUNCTION_NAME`].
    pub function: String,
    /// The web endpoint label: the host is `<workspace>[-<env>]--<label>.modal.run`.
    pub label: String,
}

impl ModalNames {
    /// Derives the names of `processor_ref` on `target`.
    ///
    /// The label is `<ns>-<name>-v<version>` (`llm/litellm@1` gives `llm-litellm-v1`, app
    /// `proctor-llm-litellm-v1`, function `serve`). It is rewritten as
    /// `<readable prefix>-<8 hex of BLAKE3(ref)>` when
    /// - a part of the ref holds a character other than `[a-z0-9]` (`-`, `_`, `.`), so
    ///   that `a-b/c@1` and `a/b-c@1` cannot share a label, or
    /// - `<workspace>[-<env>]--<label>` would exceed the 63 characters of a DNS label, or
    ///   the app name its 64 characters.
    ///
    /// The environment matters only through the host prefix (see
    /// [`ModalTarget::host_prefix`]); without a workspace the label is kept within 56
    /// characters. Deploy, the adapter and drift must derive names from the same target.
    pub fn derive(processor_ref: &ProcessorRef, target: &ModalTarget) -> ModalNames {
        let readable = dns_slug(&format!(
            "{}-{}-v{}",
            processor_ref.namespace(),
            processor_ref.name(),
            processor_ref.version()
        ));
        let plain = |part: &str| {
            part.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        };
        let unambiguous = plain(processor_ref.namespace())
            && plain(processor_ref.name())
            && plain(processor_ref.version());
        let prefix_len = target.host_prefix().map_or(0, |prefix| prefix.len());
        let budget = (APP_NAME_MAX - APP_PREFIX.len()).min(DNS_LABEL_MAX - 2 - prefix_len);
        let label = if unambiguous && readable.len() <= budget {
            readable
        } else {
            let hash = blake3::hash(processor_ref.to_string().as_bytes()).to_hex();
            let keep = budget - HASH_LEN - 1;
            let head = readable[..readable.len().min(keep)].trim_end_matches('-');
            format!("{head}-{}", &hash[..HASH_LEN])
        };
        ModalNames {
            app: format!("{APP_PREFIX}{label}"),
            function: FUNCTION_NAME.to_owned(),
            label,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(processor_ref: &str, workspace: Option<&str>, env: Option<&str>) -> ModalNames {
        let target = ModalTarget {
            workspace: workspace.map(str::to_owned),
            environment: env.map(str::to_owned),
            suffix_env: true,
            ..ModalTarget::default()
        };
        ModalNames::derive(&processor_ref.parse().unwrap(), &target)
    }

    fn valid_label(label: &str) -> bool {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && !label.contains("--")
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn plain_refs_give_readable_names() {
        let expected = ModalNames {
            app: "proctor-llm-litellm-v1".into(),
            function: "serve".into(),
            label: "llm-litellm-v1".into(),
        };
        assert_eq!(names("llm/litellm@1", Some("acme"), Some("main")), expected);
        assert_eq!(names("llm/litellm@1", None, None), expected);
        assert_eq!(
            names("text/stats@1", Some("acme"), None).label,
            "text-stats-v1"
        );
    }

    #[test]
    fn ambiguous_parts_get_a_hash_suffix() {
        let one = names("a-b/c@1", Some("acme"), None);
        let two = names("a/b-c@1", Some("acme"), None);
        assert_ne!(one.label, two.label);
        assert!(one.label.starts_with("a-b-c-v1-") && one.label.len() == "a-b-c-v1-".len() + 8);
        let dotted = names("text/stats@1.2_rc", None, None);
        assert!(
            dotted.label.starts_with("text-stats-v1-2-rc-"),
            "{dotted:?}"
        );
        assert!(valid_label(&dotted.label));
        assert_eq!(
            dotted,
            names("text/stats@1.2_rc", None, None),
            "deterministic"
        );
    }

    #[test]
    fn long_names_are_shortened_to_fit_the_host_and_the_app() {
        let long_ref = format!("{}/{}@{}", "n".repeat(64), "m".repeat(64), "v".repeat(32));
        for (workspace, env) in [
            (None, None),
            (Some("acme"), None),
            (Some(&*"w".repeat(30)), Some("staging-env")),
        ] {
            let got = names(&long_ref, workspace, env);
            let target = ModalTarget {
                workspace: workspace.map(str::to_owned),
                environment: env.map(str::to_owned),
                suffix_env: true,
                ..ModalTarget::default()
            };
            let host = match target.host_prefix() {
                Some(prefix) => format!("{prefix}--{}", got.label),
                None => got.label.clone(),
            };
            assert!(host.len() <= 63, "{host}");
            assert!(got.app.len() <= 64 && got.app == format!("proctor-{}", got.label));
            assert!(valid_label(&got.label), "{got:?}");
            assert!(got.label.starts_with("nnnn"), "{got:?}");
        }
        // A label that fits with a short workspace may need shortening with a long one.
        let medium = format!("ns/{}@1", "x".repeat(40));
        assert_eq!(
            names(&medium, Some("a"), None).label,
            format!("ns-{}-v1", "x".repeat(40))
        );
        let shortened = names(&medium, Some(&"w".repeat(30)), None).label;
        assert_eq!(shortened.len(), 63 - 2 - 30);
        assert_eq!(shortened, names(&medium, Some(&"w".repeat(30)), None).label);
    }
}
