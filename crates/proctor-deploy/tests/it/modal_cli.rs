//! The real `modal` command, never reaching Modal: without credentials it is "not
//! configured"; with credentials but Modal unreachable (its server URL points at a closed
//! port on 127.0.0.1) deploy fails and secrets are unknown — never a fake success. Needs the
//! `modal` command on PATH (scripts/setup.sh).

use std::collections::BTreeMap;

use proctor_contract::ErrorCode;
use proctor_deploy::{ModalCli, ModalTarget, SecretInventory, generate_app};

use crate::support::{DIGEST, closed_port, spec};

const TOKEN_ID: &str = "ak-fake0token0id0for0tests";
const TOKEN_SECRET: &str = "as-fake0token0secret0for0tests";

/// An environment with `PATH` (to find `modal` and `python3`) and an empty home.
fn base_env(home: &std::path::Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".to_owned(), home.display().to_string()),
    ])
}

#[tokio::test]
async fn without_credentials_modal_is_not_configured() {
    let home = tempfile::tempdir().unwrap();
    let err = ModalCli::discover(&base_env(home.path())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::DeployTarget);
    assert_eq!(
        err.message(),
        "no deploy target configured: modal is not configured: no Modal credentials (set \
         MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, or run `modal token set`)"
    );
    let inventory =
        SecretInventory::from_modal(&base_env(home.path()), &ModalTarget::default()).await;
    assert_eq!(inventory, SecretInventory::Unknown(err.message()));
}

#[tokio::test]
async fn an_unreachable_modal_fails_the_deploy_and_leaves_secrets_unknown() {
    let home = tempfile::tempdir().unwrap();
    let mut env = base_env(home.path());
    env.insert("MODAL_TOKEN_ID".into(), TOKEN_ID.into());
    env.insert("MODAL_TOKEN_SECRET".into(), TOKEN_SECRET.into());
    env.insert(
        "MODAL_SERVER_URL".into(),
        format!("http://127.0.0.1:{}", closed_port()),
    );
    let cli = ModalCli::discover(&env).expect("the modal command is on PATH (scripts/setup.sh)");
    let target = ModalTarget {
        environment: Some("staging".into()),
        ..ModalTarget::default()
    };
    let app = generate_app(
        &spec("llm/litellm@1", Some(DIGEST)),
        &target,
        &BTreeMap::new(),
    )
    .unwrap();
    let file = app.write(home.path()).unwrap();

    let (deployed, inventory) = tokio::join!(
        cli.deploy(&app, &file, &target),
        SecretInventory::from_modal(&env, &target)
    );

    let err = deployed.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Deploy);
    let message = err.message();
    assert!(
        message.starts_with("deploy failed: `modal deploy` of proctor-llm-litellm-v1 failed: "),
        "{message}"
    );
    assert!(
        message.contains("Could not connect to the Modal server"),
        "{message}"
    );
    let SecretInventory::Unknown(why) = inventory else {
        panic!("{inventory:?}")
    };
    assert!(
        why.starts_with("deploy failed: `modal secret list` failed: "),
        "{why}"
    );
    for text in [&message, &why] {
        assert!(
            !text.contains("token0id") && !text.contains("token0secret"),
            "{text}"
        );
    }
}
