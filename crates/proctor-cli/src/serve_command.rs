//! `proctor serve`: the validated configuration becomes one call of
//! [`proctor_server::serve`], which runs until a stop signal cancels its token. Stdout
//! carries one line once the server listens (its URL, and the token when this start created
//! it); `--rotate-token` prints the new token instead and serves nothing.

use proctor_engine::CancellationToken;
use proctor_server::{Listening, TOKEN_FILE_NAME};
use serde_json::json;

use crate::args::{OutputFormat, ServeConfig};
use crate::output::{emit, json_report, print_error};

/// Serves until `cancel` (a stop signal) and shuts down gracefully; returns the exit code:
/// 0 after a clean shutdown.
pub(crate) async fn execute(
    config: &ServeConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<i32> {
    if config.rotate_token {
        return rotate(config);
    }
    let mut server = config.server.clone();
    server.engine.env = crate::deploy_commands::host_env();
    let mut announced = None;
    let served = proctor_server::serve(server, cancel.clone(), |listening| {
        announced = Some(emit(&listening_line(listening, config.format)));
    })
    .await;
    match served {
        Ok(report) => {
            announced.transpose()?;
            tracing::info!(
                event = "serve.stopped",
                cancelled_executions = ?report.cancelled_executions,
                cancelled_plans = ?report.cancelled_plans,
                dropped_queued = ?report.dropped_queued,
                "shut down cleanly"
            );
            Ok(0)
        }
        // Failed after the listening line: stdout has had its one line.
        Err(error) if announced.is_some() => {
            tracing::error!(event = "serve.failed", error = %error);
            Ok(error.code().exit_code())
        }
        // Failed before it listened: the error is the one line of stdout.
        Err(error) => {
            print_error(&error, config.format)?;
            Ok(error.code().exit_code())
        }
    }
}

/// `--rotate-token`: a fresh token in the token file, printed once.
fn rotate(config: &ServeConfig) -> anyhow::Result<i32> {
    let state_dir = &config.server.state_dir;
    let token = match proctor_server::rotate_token(state_dir) {
        Ok(token) => token,
        Err(error) => {
            print_error(&error, config.format)?;
            return Ok(error.code().exit_code());
        }
    };
    let token_file = state_dir.join(TOKEN_FILE_NAME);
    emit(&match config.format {
        OutputFormat::Json => json_report(&json!({"token_file": token_file, "token": token})),
        OutputFormat::Human => format!(
            "token (kept in {}; the old one no longer works): {token}\n",
            token_file.display()
        ),
    })?;
    Ok(0)
}

/// The line printed once the server listens.
fn listening_line(listening: &Listening, format: OutputFormat) -> String {
    let url = format!("http://{}", listening.addr);
    match format {
        OutputFormat::Json => format!(
            "{}\n",
            json!({
                "status": "listening",
                "url": url,
                "token_file": listening.token_file,
                "token": listening.new_token,
            })
        ),
        OutputFormat::Human => {
            let mut text = format!("proctor serve: listening on {url}\n");
            if let Some(token) = &listening.new_token {
                text.push_str(&format!(
                    "token (shown once; kept in {}): {token}\n",
                    listening.token_file.display()
                ));
            }
            text
        }
    }
}
