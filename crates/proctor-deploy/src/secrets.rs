//! The secrets plan: which Modal secrets the registry's processors need in the target, and
//! which of them are missing — by name only, never by value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use proctor_contract::ProcessorRef;
use proctor_registry::ProcessorSpec;
use serde::Serialize;

use crate::{ModalCli, ModalTarget};

/// The secrets known to exist in the target, or why that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretInventory {
    /// The names of every secret in the target environment.
    Known(BTreeSet<String>),
    /// The existing secrets could not be listed; the reason says why.
    Unknown(String),
}

impl SecretInventory {
    /// Lists the target's secrets with `modal secret list --json` when the `modal` client is
    /// configured in `env` (see [`ModalCli::discover`]); otherwise, or when listing fails,
    /// [`SecretInventory::Unknown`] with the reason.
    pub async fn from_modal(
        env: &BTreeMap<String, String>,
        target: &ModalTarget,
    ) -> SecretInventory {
        let cli = match ModalCli::discover(env) {
            Ok(cli) => cli,
            Err(error) => return SecretInventory::Unknown(error.message()),
        };
        match cli.secret_names(target).await {
            Ok(names) => SecretInventory::Known(names),
            Err(error) => SecretInventory::Unknown(error.message()),
        }
    }
}

/// Why a processor needs a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretPurpose {
    /// Declared in `secrets.required`; the Modal secret `NAME` must hold the key `NAME`.
    Required,
    /// The private-registry secret (`REGISTRY_USERNAME` / `REGISTRY_PASSWORD`) the image is
    /// pulled with.
    RegistryPull,
}

/// Whether a needed secret exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretPresence {
    /// It exists.
    Present,
    /// It does not exist.
    Missing,
    /// The target's secrets could not be listed.
    Unknown,
}

impl fmt::Display for SecretPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretPresence::Present => "present",
            SecretPresence::Missing => "missing",
            SecretPresence::Unknown => "unknown",
        })
    }
}

/// One secret one processor needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretPlanRow {
    /// The processor.
    #[serde(rename = "ref")]
    pub processor_ref: ProcessorRef,
    /// The Modal secret's name.
    pub secret: String,
    /// Why it is needed.
    pub purpose: SecretPurpose,
    /// Whether it exists.
    pub presence: SecretPresence,
}

/// The secrets every processor needs in the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretsPlan {
    /// One row per processor and secret, in the order of the specs, registry secret last.
    pub rows: Vec<SecretPlanRow>,
    /// Why presence is unknown, when it is.
    pub unknown_because: Option<String>,
}

impl SecretsPlan {
    /// The distinct names of missing secrets, sorted.
    pub fn missing(&self) -> Vec<&str> {
        let names: BTreeSet<&str> = self
            .rows
            .iter()
            .filter(|row| row.presence == SecretPresence::Missing)
            .map(|row| row.secret.as_str())
            .collect();
        names.into_iter().collect()
    }
}

/// Plans the secrets of `specs` on `target` against what exists (`inventory`).
pub fn secrets_plan(
    specs: &[ProcessorSpec],
    target: &ModalTarget,
    inventory: &SecretInventory,
) -> SecretsPlan {
    let presence = |name: &str| match inventory {
        SecretInventory::Known(names) if names.contains(name) => SecretPresence::Present,
        SecretInventory::Known(_) => SecretPresence::Missing,
        SecretInventory::Unknown(_) => SecretPresence::Unknown,
    };
    let mut rows = Vec::new();
    for spec in specs {
        let needed = spec
            .secrets
            .required
            .iter()
            .map(|name| (name.as_str(), SecretPurpose::Required))
            .chain(
                target
                    .registry_secret
                    .as_deref()
                    .map(|name| (name, SecretPurpose::RegistryPull)),
            );
        for (name, purpose) in needed {
            rows.push(SecretPlanRow {
                processor_ref: spec.processor_ref.clone(),
                secret: name.to_owned(),
                purpose,
                presence: presence(name),
            });
        }
    }
    let unknown_because = match inventory {
        SecretInventory::Known(_) => None,
        SecretInventory::Unknown(why) => Some(why.clone()),
    };
    SecretsPlan {
        rows,
        unknown_because,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::litellm_spec;

    #[test]
    fn missing_secrets_are_named() {
        let mut other = litellm_spec();
        other.processor_ref = "text/stats@1".parse().unwrap();
        other.secrets.required = vec![];
        let target = ModalTarget {
            registry_secret: Some("ghcr-pull".into()),
            ..ModalTarget::default()
        };
        let inventory =
            SecretInventory::Known(["ghcr-pull".to_owned(), "unrelated".to_owned()].into());
        let plan = secrets_plan(&[litellm_spec(), other], &target, &inventory);
        let summary: Vec<(String, &str, SecretPurpose, SecretPresence)> = plan
            .rows
            .iter()
            .map(|row| {
                (
                    row.processor_ref.to_string(),
                    row.secret.as_str(),
                    row.purpose,
                    row.presence,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "llm/litellm@1".to_owned(),
                    "OPENAI_API_KEY",
                    SecretPurpose::Required,
                    SecretPresence::Missing
                ),
                (
                    "llm/litellm@1".to_owned(),
                    "ghcr-pull",
                    SecretPurpose::RegistryPull,
                    SecretPresence::Present
                ),
                (
                    "text/stats@1".to_owned(),
                    "ghcr-pull",
                    SecretPurpose::RegistryPull,
                    SecretPresence::Present
                ),
            ]
        );
        assert_eq!(plan.missing(), ["OPENAI_API_KEY"]);
        assert_eq!(plan.unknown_because, None);
    }

    #[test]
    fn an_unknown_inventory_is_reported_as_unknown() {
        let inventory = SecretInventory::Unknown("modal is not configured".into());
        let plan = secrets_plan(&[litellm_spec()], &ModalTarget::default(), &inventory);
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].presence, SecretPresence::Unknown);
        assert!(plan.missing().is_empty());
        assert_eq!(
            plan.unknown_because.as_deref(),
            Some("modal is not configured")
        );
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["rows"][0]["presence"], "unknown");
        assert_eq!(json["rows"][0]["purpose"], "required");
    }
}
