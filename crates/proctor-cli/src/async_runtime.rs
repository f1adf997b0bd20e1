//! The async runtime for commands that talk to stores, endpoints and the `modal` client:
//! one small runtime per command, started only when the command needs it.

use std::future::Future;

use anyhow::Context;

/// Runs `future` to completion on a fresh current-thread runtime.
pub(crate) fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}
