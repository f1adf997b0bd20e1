//! Progress bars for build and push, drawn on stderr only when it is a terminal (and the
//! caller asked for them); hidden otherwise, so logs and `--json` output stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting `total` steps (e.g. compile, layer, config, manifest per platform).
pub(crate) fn steps_bar(total: u64, show: bool) -> ProgressBar {
    bar(
        total,
        show,
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
    )
}

/// A spinner with a message, for work of unknown length (a compile).
pub(crate) fn spinner(show: bool) -> ProgressBar {
    let bar = bar(0, show, "{spinner} [{elapsed_precise}] {msg}");
    bar.unset_length();
    bar
}

/// A bar counting `total` bytes.
pub(crate) fn bytes_bar(total: u64, show: bool) -> ProgressBar {
    bar(
        total,
        show,
        "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
    )
}

fn bar(total: u64, show: bool, template: &str) -> ProgressBar {
    let target = if show && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
