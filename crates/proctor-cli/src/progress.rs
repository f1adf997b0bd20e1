//! Progress on stderr: the one place that draws. Libraries report long work through a
//! [`Progress`] ([`proctor_contract::ProgressEvent`]s); [`reporter`] turns those events into
//! bars and spinners of one process-wide [`MultiProgress`] — bytes bars for pulls and
//! pushes, counted bars for steps and items, spinners while a total is unknown — drawn on
//! stderr only when stderr is a terminal and the command's output is for people. On a pipe
//! or under `--json` nothing is drawn. [`print_above`] writes a line on stderr without
//! breaking the bars.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use proctor_contract::{Progress, ProgressEvent, ProgressUnit, TaskId};

use crate::args::{LogFormat, OutputFormat, Verbosity};

/// How often a bar or spinner is redrawn while nothing is reported.
const TICK: Duration = Duration::from_millis(120);

/// What a command's progress reporter shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProgressOptions {
    /// Draw bars and spinners, and the notes tasks keep (a plan's settled transitions).
    pub(crate) draw: bool,
    /// Pass cargo's own output during a processor compile on to stderr, line by line.
    pub(crate) cargo_output: bool,
}

impl ProgressOptions {
    /// Bars for a command whose output is `format`: drawn only for people (not `--json`),
    /// only when stderr is a terminal, and not under `-q`; cargo's own output at `-v`.
    pub(crate) fn for_output(format: OutputFormat) -> ProgressOptions {
        let stderr = stderr_settings();
        ProgressOptions {
            draw: format == OutputFormat::Human
                && std::io::stderr().is_terminal()
                && stderr.verbosity > Verbosity::Quiet,
            cargo_output: stderr.verbosity >= Verbosity::Verbose,
        }
    }
}

/// How stderr is set up for this process (`-v`/`-q`, `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StderrSettings {
    pub(crate) verbosity: Verbosity,
    pub(crate) log_format: LogFormat,
}

static STDERR_SETTINGS: OnceLock<StderrSettings> = OnceLock::new();

/// Records how stderr is set up; `main` calls it once, before any command runs.
pub(crate) fn configure(settings: StderrSettings) {
    let _ = STDERR_SETTINGS.set(settings);
}

fn stderr_settings() -> StderrSettings {
    STDERR_SETTINGS.get().copied().unwrap_or(StderrSettings {
        verbosity: Verbosity::Normal,
        log_format: LogFormat::Json,
    })
}

/// Writes one of a task's lines (cargo's output, a note) where log lines go: above the
/// bars, or as a JSON log line when stderr carries JSON.
fn print_task_line(line: &str) {
    match stderr_settings().log_format {
        LogFormat::Human => print_above(line),
        LogFormat::Json => tracing::info!(event = "progress.line", line),
    }
}

/// The process's bars, drawn on stderr when it is a terminal.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| {
        MultiProgress::with_draw_target(if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        })
    })
}

/// Writes `line` (with or without its newline) on stderr above the bars, which are drawn
/// again below it; log lines go through it too. Best effort: a closed stderr loses the line
/// and nothing else.
pub(crate) fn print_above(line: &str) {
    let line = line.strip_suffix('\n').unwrap_or(line);
    bars().suspend(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

/// The reporter a command hands to the libraries it calls; reports nowhere when `options`
/// shows nothing.
pub(crate) fn reporter(options: ProgressOptions) -> Progress {
    if !options.draw && !options.cargo_output {
        return Progress::none();
    }
    let drawing = Drawing::new(options, bars().clone(), Box::new(print_task_line));
    Progress::new(move |event| drawing.show(event))
}

/// Events turned into bars of one [`MultiProgress`], and lines printed above them.
struct Drawing {
    options: ProgressOptions,
    bars: MultiProgress,
    /// The bar of each task that has not finished.
    tasks: Mutex<HashMap<TaskId, Task>>,
    print: Box<dyn Fn(&str) + Send + Sync>,
}

/// A task's bar and what it counts.
struct Task {
    bar: ProgressBar,
    unit: ProgressUnit,
}

impl Drawing {
    fn new(
        options: ProgressOptions,
        bars: MultiProgress,
        print: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Arc<Drawing> {
        Arc::new(Drawing {
            options,
            bars,
            tasks: Mutex::default(),
            print,
        })
    }

    fn show(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Output { line, .. } if self.options.cargo_output => (self.print)(&line),
            ProgressEvent::Note { line, .. } if self.options.draw => (self.print)(&line),
            ProgressEvent::Output { .. } | ProgressEvent::Note { .. } => {}
            event if self.options.draw => self.draw(event),
            _ => {}
        }
    }

    fn draw(&self, event: ProgressEvent) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            ProgressEvent::Started {
                task,
                label,
                unit,
                total,
            } => {
                // Hidden until added, and styled first: never drawn on its own or in the
                // default style.
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
                    .with_prefix(label);
                restyle(&bar, unit, total);
                let bar = self.bars.add(bar);
                bar.enable_steady_tick(TICK);
                tasks.insert(task, Task { bar, unit });
            }
            ProgressEvent::Total { task, total } => {
                if let Some(Task { bar, unit }) = tasks.get(&task) {
                    restyle(bar, *unit, Some(total));
                }
            }
            ProgressEvent::Advanced { task, by } => {
                if let Some(Task { bar, .. }) = tasks.get(&task) {
                    bar.inc(by);
                }
            }
            ProgressEvent::Message { task, text } => {
                if let Some(Task { bar, .. }) = tasks.get(&task) {
                    bar.set_message(text);
                }
            }
            ProgressEvent::Finished { task } => {
                if let Some(Task { bar, .. }) = tasks.remove(&task) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
            }
            ProgressEvent::Note { .. } | ProgressEvent::Output { .. } => {}
        }
    }
}

/// Gives `bar` the length `total` and the look that goes with it.
fn restyle(bar: &ProgressBar, unit: ProgressUnit, total: Option<u64>) {
    match total {
        Some(total) => bar.set_length(total),
        None => bar.unset_length(),
    }
    if let Ok(style) = ProgressStyle::with_template(template(unit, total.is_some())) {
        bar.set_style(style);
    }
}

/// How a task looks: a bar once its total is known (bytes for a bytes task, a count for
/// the others), a spinner with what it has done so far until then; the message is cut to
/// the terminal's width.
fn template(unit: ProgressUnit, known_total: bool) -> &'static str {
    match (unit, known_total) {
        (ProgressUnit::Bytes, true) => {
            "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {wide_msg}"
        }
        (ProgressUnit::Bytes, false) => "{spinner} {prefix} {bytes} {wide_msg}",
        (ProgressUnit::Steps | ProgressUnit::Items, true) => {
            "{spinner} {prefix} [{bar:30}] {pos}/{len} {wide_msg}"
        }
        (ProgressUnit::Steps | ProgressUnit::Items, false) => {
            "{spinner} {prefix} [{elapsed}] {wide_msg}"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drawing on hidden bars, and the lines it printed.
    fn hidden(options: ProgressOptions) -> (Arc<Drawing>, Arc<Mutex<Vec<String>>>) {
        let printed = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&printed);
        let drawing = Drawing::new(
            options,
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            Box::new(move |line| sink.lock().unwrap().push(line.to_owned())),
        );
        (drawing, printed)
    }

    fn reporting(drawing: &Arc<Drawing>) -> Progress {
        let drawing = Arc::clone(drawing);
        Progress::new(move |event| drawing.show(event))
    }

    fn bar(drawing: &Drawing, task: TaskId) -> ProgressBar {
        drawing.tasks.lock().unwrap()[&task].bar.clone()
    }

    const DRAW: ProgressOptions = ProgressOptions {
        draw: true,
        cargo_output: false,
    };

    #[test]
    fn bytes_bars_count_bytes_and_steps_bars_count_positions() {
        for (unit, shows) in [
            (ProgressUnit::Bytes, "{bytes}/{total_bytes}"),
            (ProgressUnit::Steps, "{pos}/{len}"),
            (ProgressUnit::Items, "{pos}/{len}"),
        ] {
            assert!(template(unit, true).contains(shows), "{unit:?}");
            assert!(template(unit, true).contains("{bar:30}"), "{unit:?}");
            assert!(!template(unit, false).contains("{bar"), "{unit:?}");
        }
        assert!(template(ProgressUnit::Bytes, false).contains("{bytes}"));
        for unit in [
            ProgressUnit::Bytes,
            ProgressUnit::Steps,
            ProgressUnit::Items,
        ] {
            for known in [true, false] {
                assert!(ProgressStyle::with_template(template(unit, known)).is_ok());
            }
        }
    }

    #[test]
    fn a_task_is_a_bar_from_start_to_finish() {
        let (drawing, printed) = hidden(DRAW);
        let progress = reporting(&drawing);
        let pull = progress.start("pulling x", ProgressUnit::Bytes, None);
        let pull_bar = bar(&drawing, pull.id());
        assert_eq!(pull_bar.length(), None);
        pull.set_total(2048);
        pull.advance(1024);
        pull.message("layer a: Extracting");
        assert_eq!(pull_bar.length(), Some(2048));
        assert_eq!(pull_bar.position(), 1024);
        assert_eq!(pull_bar.message(), "layer a: Extracting");
        assert_eq!(pull_bar.prefix(), "pulling x");

        let plan = progress.start("applying plan p", ProgressUnit::Items, Some(2));
        plan.advance(1);
        plan.note("✓ stats succeeded (e-1)");
        assert_eq!(bar(&drawing, plan.id()).position(), 1);
        assert_eq!(drawing.tasks.lock().unwrap().len(), 2);
        drop(pull);
        drop(plan);
        assert!(drawing.tasks.lock().unwrap().is_empty());
        assert!(pull_bar.is_finished());
        assert_eq!(*printed.lock().unwrap(), ["✓ stats succeeded (e-1)"]);
    }

    #[test]
    fn cargo_output_is_printed_only_when_asked_for() {
        for cargo_output in [false, true] {
            let (drawing, printed) = hidden(ProgressOptions {
                draw: false,
                cargo_output,
            });
            let compile = reporting(&drawing).start("compiling p", ProgressUnit::Items, None);
            compile.output("   Compiling tokio v1.0.0");
            compile.note("kept only where bars are drawn");
            compile.advance(1);
            assert!(drawing.tasks.lock().unwrap().is_empty(), "no bar is drawn");
            let expected: &[&str] = if cargo_output {
                &["   Compiling tokio v1.0.0"]
            } else {
                &[]
            };
            assert_eq!(*printed.lock().unwrap(), expected);
        }
    }

    #[test]
    fn nothing_to_show_reports_nowhere() {
        let options = ProgressOptions {
            draw: false,
            cargo_output: false,
        };
        assert_eq!(format!("{:?}", reporter(options)), "Progress(none)");
    }
}
