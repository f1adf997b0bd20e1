//! Logging on stderr, every string field redacted: one JSON object per line, or short
//! status lines for people ([`LogFormat`]), filtered by a targets filter
//! ([`LogSettings::filter`], e.g. `info,proctor_engine=debug`).
//!
//! The redactor knows the secret-looking variables of the environment from the start
//! ([`redactor_from_env`]); a run's own secret and pass-through values are added while the
//! process runs, through [`KnownSecrets::register_secret_values`], and every line written
//! afterwards masks them whatever their variables are called. The same [`KnownSecrets`]
//! gives the redactor for what leaves the process other than as a log line (a printed
//! envelope, a ledger payload), so logs and evidence mask the same values.
//!
//! **Invariant:** nothing here writes to stdout, so a `--json` caller's stdout carries only
//! its envelope.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

use std::fmt;
use std::io::Write;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use proctor_contract::Redactor;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The process-wide secrets, read by the subscriber [`init`] installs.
static KNOWN_SECRETS: LazyLock<KnownSecrets> = LazyLock::new(KnownSecrets::default);

/// The secret values a process knows, shared by everything that redacts: the log
/// subscriber and whoever prints or records text. Clones share one set; values are only
/// ever added.
#[derive(Debug, Clone, Default)]
pub struct KnownSecrets {
    redactor: Arc<RwLock<Arc<Redactor>>>,
}

impl KnownSecrets {
    /// Adds secret values — a run's secrets and pass-through variables, whatever their
    /// names. Every log line written afterwards, and every [`KnownSecrets::redactor`] taken
    /// afterwards, masks them.
    pub fn register_secret_values(&self, values: impl IntoIterator<Item = String>) {
        let mut current = self
            .redactor
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::make_mut(&mut *current).extend(values);
    }

    /// A redactor masking every value registered so far, for text that leaves the process
    /// other than as a log line (a printed envelope, ledger payloads).
    pub fn redactor(&self) -> Redactor {
        Redactor::clone(&self.snapshot())
    }

    /// Adds every value `redactor` masks.
    fn merge(&self, redactor: &Redactor) {
        let mut current = self
            .redactor
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::make_mut(&mut *current).merge(redactor);
    }

    /// The current redactor, without copying it.
    fn snapshot(&self) -> Arc<Redactor> {
        Arc::clone(&self.redactor.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The process-wide [`KnownSecrets`]: the ones the subscriber installed by [`init`] reads.
/// A run registers its secret and pass-through values here, and redacts what it prints or
/// records with [`KnownSecrets::redactor`].
pub fn known_secrets() -> KnownSecrets {
    KNOWN_SECRETS.clone()
}

/// Adds the values `redactor` masks to [`known_secrets`], and installs the global
/// subscriber: events at `max_level` or more severe are written to stderr as JSON lines,
/// with every string redacted by what [`known_secrets`] knows at the time. Returns
/// [`known_secrets`].
///
/// A second call only adds `redactor`'s values (the first subscriber stays).
pub fn init(redactor: Redactor, max_level: Level) -> KnownSecrets {
    let settings = LogSettings {
        format: LogFormat::Json,
        filter: Targets::new().with_default(max_level),
        write_line: None,
    };
    init_with(redactor, settings)
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: `ts`, `level`, `target`, then the event's fields.
    Json,
    /// A short status line per event (`Compiling text-stats for linux/amd64`), warnings and
    /// errors prefixed as such.
    Human,
}

/// What [`init_with`] installs.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The line format.
    pub format: LogFormat,
    /// Which events are written; see [`parse_filter`].
    pub filter: Targets,
    /// Writes one finished line (without its newline); `None` writes to stderr. A caller
    /// that draws on stderr passes a writer that keeps its drawing intact.
    pub write_line: Option<fn(&str)>,
}

/// A targets filter from its text: comma-separated `LEVEL` or `TARGET=LEVEL` directives,
/// as in `RUST_LOG` (`warn`, `info,proctor_engine=debug`). A target matches every target
/// it is a prefix of (`proctor` covers `proctor_engine`).
pub fn parse_filter(text: &str) -> Result<Targets, String> {
    text.parse::<Targets>()
        .map_err(|error| format!("`{text}` is not a log filter: {error}"))
}

/// Like [`init`], with the line format, filter and writer of `settings`.
pub fn init_with(redactor: Redactor, settings: LogSettings) -> KnownSecrets {
    let secrets = known_secrets();
    secrets.merge(&redactor);
    let layer = Lines {
        secrets: secrets.clone(),
        format: settings.format,
        sink: match settings.write_line {
            Some(write_line) => Sink::Line(write_line),
            None => Sink::Stderr,
        },
    }
    .with_filter(settings.filter);
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
    secrets
}

/// A redactor that knows the values of secret-looking environment variables (names ending
/// in `_KEY`, `_TOKEN`, `_TOKEN_ID`, `_SECRET`, `_PASSWORD`, or containing `SECRET`), plus
/// those of `extra_names`. Token ids count because Modal's proxy-auth token id
/// (`MODAL_PROXY_TOKEN_ID`) is half a credential.
pub fn redactor_from_env(extra_names: &[String]) -> Redactor {
    redactor_for_vars(std::env::vars(), extra_names)
}

fn redactor_for_vars(
    vars: impl Iterator<Item = (String, String)>,
    extra_names: &[String],
) -> Redactor {
    let looks_secret = |name: &str| {
        let upper = name.to_ascii_uppercase();
        ["_KEY", "_TOKEN", "_TOKEN_ID", "_SECRET", "_PASSWORD"]
            .iter()
            .any(|end| upper.ends_with(end))
            || upper.contains("SECRET")
            || extra_names.iter().any(|extra| extra == name)
    };
    Redactor::new(
        vars.filter(|(name, _)| looks_secret(name))
            .map(|(_, value)| value),
    )
}

enum Sink {
    Stderr,
    Line(fn(&str)),
    #[cfg(test)]
    Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>),
}

impl Sink {
    /// Writes `line` and a newline.
    fn write(&self, line: &str) {
        match self {
            Sink::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Sink::Line(write_line) => write_line(line),
            #[cfg(test)]
            Sink::Buffer(buffer) => {
                let mut buffer = buffer.lock().unwrap();
                buffer.extend_from_slice(line.as_bytes());
                buffer.push(b'\n');
            }
        }
    }
}

/// The layer writing every event it is given as one line.
struct Lines {
    secrets: KnownSecrets,
    format: LogFormat,
    sink: Sink,
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let mut fields = Map::new();
        let timestamp = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        fields.insert("ts".to_owned(), Value::String(timestamp));
        fields.insert(
            "level".to_owned(),
            Value::String(metadata.level().as_str().to_lowercase()),
        );
        fields.insert(
            "target".to_owned(),
            Value::String(metadata.target().to_owned()),
        );
        let redactor = self.secrets.snapshot();
        event.record(&mut FieldVisitor {
            fields: &mut fields,
            redactor: &redactor,
        });
        let line = match self.format {
            LogFormat::Json => Value::Object(fields).to_string(),
            LogFormat::Human => human_line(*metadata.level(), &fields),
        };
        self.sink.write(&line);
    }
}

/// An event as a status line: a sentence for the events people follow (a compile, a
/// build, a pull, a container, an execution), else its message or name with its fields.
fn human_line(level: Level, fields: &Map<String, Value>) -> String {
    let field = |name: &str| match fields.get(name) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => "?".to_owned(),
    };
    let took = fields
        .get("duration_ms")
        .and_then(Value::as_u64)
        .map(|ms| format!(" in {}", human_duration(ms)))
        .unwrap_or_default();
    let event = fields.get("event").and_then(Value::as_str).unwrap_or("");
    let text = match event {
        "execution.start" => format!(
            "Running {} ({} mode, {} adapter)",
            field("ref"),
            field("mode"),
            field("adapter")
        ),
        "execution.settle" => format!("Finished {}{took}", field("ref")),
        // A `message` field is recorded as `msg`.
        "execution.fail" => format!("{}: {}", field("code"), field("msg")),
        "image.compile" => format!("Compiling {} for {}", field("package"), field("platform")),
        "image.built" => format!("Built image {}{took}", field("tag")),
        "image.pull" => format!("Pulling {}", field("reference")),
        "container.started" => format!("Started container {}", field("container")),
        "container.reused" => format!("Reusing container {}", field("container")),
        _ => {
            let mut text = match fields.get("msg") {
                Some(Value::String(message)) => message.clone(),
                _ => event.to_owned(),
            };
            let details: Vec<String> = fields
                .iter()
                .filter(|(name, _)| {
                    !["ts", "level", "target", "event", "msg"].contains(&name.as_str())
                })
                .map(|(name, value)| match value {
                    Value::String(text) => format!("{name}={text}"),
                    other => format!("{name}={other}"),
                })
                .collect();
            if !details.is_empty() {
                text = format!("{text} ({})", details.join(", "));
            }
            text
        }
    };
    match level {
        Level::ERROR => format!("error: {text}"),
        Level::WARN => format!("warning: {text}"),
        Level::INFO => text,
        Level::DEBUG => format!("debug: {text}"),
        Level::TRACE => format!("trace: {text}"),
    }
}

/// `840ms`, `12.3s`, `2m05s`.
fn human_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
    }
}

struct FieldVisitor<'a> {
    fields: &'a mut Map<String, Value>,
    redactor: &'a Redactor,
}

impl FieldVisitor<'_> {
    fn insert(&mut self, field: &Field, value: Value) {
        let name = if field.name() == "message" {
            "msg"
        } else {
            field.name()
        };
        self.fields.insert(name.to_owned(), value);
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let redacted = self.redactor.redact(value).into_owned();
        self.insert(field, Value::String(redacted));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        let redacted = self.redactor.redact(&text).into_owned();
        self.insert(field, Value::String(redacted));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let redacted = self.redactor.redact(&value.to_string()).into_owned();
        self.insert(field, Value::String(redacted));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn capture_text(
        secrets: &KnownSecrets,
        format: LogFormat,
        filter: &str,
        emit: impl FnOnce(),
    ) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let layer = Lines {
            secrets: secrets.clone(),
            format,
            sink: Sink::Buffer(buffer.clone()),
        }
        .with_filter(parse_filter(filter).unwrap());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn capture(secrets: &KnownSecrets, emit: impl FnOnce()) -> Vec<Value> {
        capture_text(secrets, LogFormat::Json, "info", emit)
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn human_lines_are_sentences_for_known_events_and_redacted() {
        let secrets = KnownSecrets::default();
        secrets.merge(&Redactor::new(["hunter2-value".to_owned()]));
        let text = capture_text(&secrets, LogFormat::Human, "info", || {
            tracing::info!(
                event = "image.compile",
                package = "text-stats",
                platform = "linux/amd64"
            );
            tracing::info!(
                event = "image.built",
                tag = "proctor/x:1",
                duration_ms = 12_300u64
            );
            tracing::warn!(
                event = "odd.thing",
                token = "hunter2-value",
                "something odd"
            );
            tracing::error!(
                event = "execution.fail",
                code = "ERR_TIMEOUT",
                message = "execution timed out"
            );
            tracing::debug!("filtered out");
        });
        assert_eq!(
            text,
            "Compiling text-stats for linux/amd64\n\
             Built image proctor/x:1 in 12.3s\n\
             warning: something odd (token=[REDACTED])\n\
             error: ERR_TIMEOUT: execution timed out\n"
        );
    }

    #[test]
    fn the_filter_selects_levels_per_target_prefix() {
        let text = capture_text(
            &KnownSecrets::default(),
            LogFormat::Human,
            "error,proctor=debug",
            || {
                tracing::debug!(target: "proctor_engine::run", "kept");
                tracing::info!(target: "hyper::client", "dropped");
                tracing::error!(target: "hyper::client", "kept too");
            },
        );
        assert_eq!(text, "debug: kept\nerror: kept too\n");
        assert!(parse_filter("info,=").is_err() || parse_filter("nonsense=level").is_err());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(840), "840ms");
        assert_eq!(human_duration(12_345), "12.3s");
        assert_eq!(human_duration(125_000), "2m05s");
    }

    #[test]
    fn writes_one_json_object_per_event() {
        let lines = capture(&KnownSecrets::default(), || {
            tracing::info!(
                event = "execution.start",
                execution_id = "e1",
                attempt = 1u64,
                "started"
            );
            tracing::debug!("filtered out");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["event"], "execution.start");
        assert_eq!(lines[0]["execution_id"], "e1");
        assert_eq!(lines[0]["attempt"], 1);
        assert_eq!(lines[0]["msg"], "started");
        assert_eq!(lines[0]["level"], "info");
    }

    #[test]
    fn redacts_every_string_field() {
        let secrets = KnownSecrets::default();
        secrets.merge(&Redactor::new(["s3cr3t-value".to_owned()]));
        let lines = capture(&secrets, || {
            tracing::warn!(
                header = "Authorization: Bearer abcdef",
                url = %"https://u:p@host/x",
                "leaked s3cr3t-value"
            );
        });
        let text = lines[0].to_string();
        assert!(!text.contains("abcdef") && !text.contains("u:p@") && !text.contains("s3cr3t"));
        assert_eq!(lines[0]["msg"], "leaked [REDACTED]");
    }

    #[test]
    fn values_registered_while_running_are_masked_from_then_on() {
        let secrets = KnownSecrets::default();
        let lines = capture(&secrets, || {
            tracing::info!(value = "plain-value-1", "before plain-value-1");
            secrets.register_secret_values(["plain-value-1".to_owned()]);
            tracing::info!(value = "plain-value-1", "after plain-value-1");
            tracing::info!(url = %"https://u:plain-value-1@host/", count = 3u64);
        });
        assert_eq!(lines[0]["msg"], "before plain-value-1");
        assert_eq!(lines[1]["msg"], "after [REDACTED]");
        assert_eq!(lines[1]["value"], "[REDACTED]");
        assert_eq!(lines[2]["url"], "https://[REDACTED]@host/");
        assert_eq!(lines[2]["count"], 3);
    }

    #[test]
    fn clones_share_the_values_and_the_redactor_knows_them() {
        let secrets = KnownSecrets::default();
        let before = secrets.redactor();
        secrets
            .clone()
            .register_secret_values(["pass-through-value".to_owned()]);
        assert_eq!(
            secrets.redactor().redact("a pass-through-value"),
            "a [REDACTED]"
        );
        assert_eq!(
            before.redact("a pass-through-value"),
            "a pass-through-value"
        );
        assert!(!format!("{secrets:?}").contains("pass-through-value"));
    }

    #[test]
    fn the_process_wide_secrets_are_one_set() {
        known_secrets().register_secret_values(["process-wide-value".to_owned()]);
        assert_eq!(
            known_secrets().redactor().redact("process-wide-value"),
            "[REDACTED]"
        );
    }

    #[test]
    fn env_redactor_masks_secret_looking_variables() {
        let vars = [
            ("OPENAI_API_KEY", "alpha-value-1"),
            ("MODAL_TOKEN", "beta-value-2"),
            ("MY_SECRET_THING", "gamma-value-3"),
            ("CUSTOM", "delta-value-4"),
            ("MODAL_PROXY_TOKEN_ID", "wk-epsilon-5"),
            ("HOME", "/root/home-dir"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let redactor = redactor_for_vars(vars.into_iter(), &["CUSTOM".to_owned()]);
        assert_eq!(
            redactor.redact(
                "alpha-value-1 beta-value-2 gamma-value-3 delta-value-4 wk-epsilon-5 /root/home-dir"
            ),
            "[REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED] /root/home-dir"
        );
    }
}
