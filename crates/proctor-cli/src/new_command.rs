//! `proctor new NS/NAME@VERSION --lang rust|python`: writes a new processor's directory
//! ([`proctor_conform::scaffold::new_processor`]) and says what it wrote.

use proctor_conform::scaffold::new_processor;

use crate::args::{NewConfig, OutputFormat};
use crate::output::{emit, print_error};

/// Runs `proctor new`; returns the exit code.
pub(crate) fn execute(config: &NewConfig) -> anyhow::Result<i32> {
    let made = match new_processor(&config.request) {
        Ok(made) => made,
        Err(error) => {
            print_error(&error, config.format)?;
            return Ok(error.code().exit_code());
        }
    };
    let dir = made.dir.display().to_string();
    emit(&match config.format {
        OutputFormat::Json => format!(
            "{}\n",
            serde_json::json!({
                "ref": made.processor_ref.to_string(),
                "dir": dir,
                "files": made.files,
                "workspace_member": made.workspace_member,
            })
        ),
        OutputFormat::Human => {
            let member = made
                .workspace_member
                .map(|member| format!("; workspace member {member} added to Cargo.toml"))
                .unwrap_or_default();
            format!(
                "created {} in {dir}: {}{member}\nnext: proctor conform {} --build\n",
                made.processor_ref,
                made.files.join(", "),
                made.processor_ref
            )
        }
    })?;
    Ok(0)
}
