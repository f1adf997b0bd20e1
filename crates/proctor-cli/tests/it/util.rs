//! The test harness: each test gets its own temp dir as the working directory and a clean
//! environment; a failed expectation prints the command, its directory, the directory's
//! files, stdout and stderr.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Host variables a run may need to find its tools (the build adapter runs cargo); `CI`
/// and everything else is left out unless a test sets it.
const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "HOME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "DOCKER_HOST",
];

/// `program` with the clean environment every `proctor` command of the tests gets: a
/// script that runs `proctor` and the builds it starts.
pub(crate) fn clean_command(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env_clear().stdin(Stdio::null());
    for name in PASSED_THROUGH {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    command
}

/// Runs `command` to its end: its stdout and stderr, once it succeeded.
pub(crate) fn successful_output(mut command: Command) -> (String, String) {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{command:?}: {}\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// `cargo ARGS`, offline, at the workspace root: its stdout, once it succeeded.
pub(crate) fn workspace_cargo(args: &[&str]) -> String {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cargo
        .args(args)
        .arg("--offline")
        .current_dir(workspace_root());
    successful_output(cargo).0
}

/// The Cargo workspace root, which compiles the processors.
pub(crate) fn workspace_root() -> PathBuf {
    workspace_registry()
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap()
}

/// The workspace's own registry root.
pub(crate) fn workspace_registry() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../processors")
}

/// The arguments of a `proctor run` of `processor_ref` from `registry`, built from source and
/// run by the local adapter in `mock` mode on `inputs`, its outputs under `write_prefix` in
/// the test directory's `artifacts`; callers add the rest.
pub(crate) fn mock_build_run_args<'a>(
    processor_ref: &'a str,
    registry: &'a str,
    write_prefix: &'a str,
    inputs: &'a str,
) -> Vec<&'a str> {
    vec![
        "run",
        "--ref",
        processor_ref,
        "--adapter",
        "local",
        "--mode",
        "mock",
        "--build",
        "--write-prefix",
        write_prefix,
        "--inputs-json",
        inputs,
        "--registry-root",
        registry,
        "--artifacts-root",
        "artifacts",
    ]
}

/// The registry of the fixture processors, `fixtures/processors`.
pub(crate) fn fixtures_registry() -> String {
    workspace_registry()
        .join("../fixtures/processors")
        .display()
        .to_string()
}

/// A valid `registry.yaml` for `text/stats@1` with one required secret, one pass-through
/// variable and [`PINNED`] for both platforms. Tests mutate it with `str::replace`.
pub(crate) const FIXTURE_YAML: &str = r#"ref: text/stats@1
description: Word and line counts of a text.
build: {context: ".", dockerfile: Dockerfile, port: 8000, cargo_package: processor-text-stats}
image:
  index: null
  platforms:
    amd64: 127.0.0.1:5000/text-stats@sha256:3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6
    arm64: 127.0.0.1:5000/text-stats@sha256:3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6
runtime: {cpu: 0.5, memory_gb: 0.25, timeout_s: 30, gpu: null}
secrets: {required: [FIXTURE_API_KEY]}
env: [FIXTURE_BASE_URL]
inputs:
  type: object
  additionalProperties: false
  required: [schema, params]
  properties:
    schema: {const: v1}
    params:
      type: object
      properties:
        n: {type: integer, minimum: 0}
outputs:
  - {path: stats.json, mime: application/json}
  - {path: text/normalized.txt, mime: text/plain}
examples:
  smoke: {description: Empty params., inputs: {schema: v1, params: {}}}
"#;

/// The pinned reference [`FIXTURE_YAML`] uses.
pub(crate) const PINNED: &str = "127.0.0.1:5000/text-stats@sha256:3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

/// [`FIXTURE_YAML`] with `pin` (YAML text) for both platforms.
pub(crate) fn fixture_pinned_to(pin: &str) -> String {
    let yaml = FIXTURE_YAML.replace(&format!("amd64: {PINNED}"), &format!("amd64: {pin}"));
    let yaml = yaml.replace(&format!("arm64: {PINNED}"), &format!("arm64: {pin}"));
    assert_ne!(yaml, FIXTURE_YAML, "the fixture must hold PINNED");
    yaml
}

/// A test's private directory.
pub(crate) struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh, empty directory.
    pub(crate) fn new() -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("proctor-cli-it-")
                .tempdir()
                .unwrap(),
        }
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `relative`, creating parents.
    pub(crate) fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes a registry at `./processors` holding `text/stats@1` as `yaml`.
    pub(crate) fn fixture_registry(&self, yaml: &str) -> PathBuf {
        self.write("processors/text/stats/1/registry.yaml", yaml);
        self.path().join("processors")
    }

    /// Every file below the directory, relative, sorted.
    pub(crate) fn files(&self) -> Vec<String> {
        files_below(self.path())
    }

    /// `proctor` with `args`, run in this directory with a clean environment.
    pub(crate) fn proctor(&self, args: &[&str]) -> Proctor {
        let mut command = Command::new(env!("CARGO_BIN_EXE_proctor"));
        command
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .stdin(Stdio::null());
        for name in PASSED_THROUGH {
            if let Ok(value) = std::env::var(name) {
                command.env(name, value);
            }
        }
        Proctor {
            command,
            dir: self.path().to_path_buf(),
            stdin: None,
        }
    }
}

/// A `proctor` command about to run.
pub(crate) struct Proctor {
    command: Command,
    dir: PathBuf,
    /// What its stdin reads, when not empty.
    stdin: Option<Vec<u8>>,
}

impl Proctor {
    /// Sets an environment variable.
    pub(crate) fn env(mut self, name: &str, value: &str) -> Proctor {
        self.command.env(name, value);
        self
    }

    /// Runs it in `dir` (a subdirectory of the test's directory, say) instead.
    pub(crate) fn current_dir(mut self, dir: &Path) -> Proctor {
        self.command.current_dir(dir);
        self
    }

    /// Gives it `bytes` on stdin.
    pub(crate) fn stdin(mut self, bytes: &[u8]) -> Proctor {
        self.command.stdin(Stdio::piped());
        self.stdin = Some(bytes.to_vec());
        self
    }

    /// Runs it to completion.
    pub(crate) fn run(mut self) -> Run {
        let output = match self.stdin.take() {
            None => self.command.output().unwrap(),
            Some(bytes) => {
                use std::io::Write as _;
                self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
                let mut child = self.command.spawn().unwrap();
                let mut stdin = child.stdin.take().unwrap();
                // A command that stops reading early closes the pipe: not the test's failure.
                let _ = stdin.write_all(&bytes);
                drop(stdin);
                child.wait_with_output().unwrap()
            }
        };
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stdout_bytes: output.stdout,
            stderr: String::from_utf8(output.stderr).unwrap(),
            description: format!("{:?}\ncwd: {}", self.command, self.dir.display()),
            files: files_below(&self.dir),
        }
    }
}

impl Proctor {
    /// Starts it without waiting (to signal it while it runs); [`Started::finish`] waits.
    pub(crate) fn start(mut self) -> Started {
        self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        Started {
            child: self.command.spawn().unwrap(),
            description: format!("{:?}\ncwd: {}", self.command, self.dir.display()),
            dir: self.dir,
        }
    }
}

impl Proctor {
    /// Starts a long-running command (a server) without waiting: its stdout piped for the
    /// caller to read as it goes, its stderr appended to `log` so that it never fills a pipe.
    pub(crate) fn spawn_logging_to(mut self, log: &Path) -> std::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        self.command.stdout(Stdio::piped()).stderr(log);
        self.command.spawn().unwrap()
    }
}

/// A `proctor` command running in the background.
pub(crate) struct Started {
    child: std::process::Child,
    description: String,
    dir: PathBuf,
}

impl Started {
    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has ended (its output is still to be read by [`Started::finish`]).
    pub(crate) fn has_ended(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for it to end.
    pub(crate) fn finish(self) -> Run {
        let output = self.child.wait_with_output().unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stdout_bytes: output.stdout,
            stderr: String::from_utf8(output.stderr).unwrap(),
            description: self.description,
            files: files_below(&self.dir),
        }
    }
}

/// Every file below `root`, relative, sorted.
fn files_below(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files.sort();
    files
}

/// A finished `proctor` command.
pub(crate) struct Run {
    pub(crate) code: i32,
    /// Stdout as text (invalid UTF-8 replaced); [`Run::stdout_bytes`] has it as written.
    pub(crate) stdout: String,
    pub(crate) stdout_bytes: Vec<u8>,
    pub(crate) stderr: String,
    description: String,
    files: Vec<String>,
}

impl Run {
    /// Everything about the run, for failure messages.
    pub(crate) fn report(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "command: {}", self.description);
        let _ = writeln!(text, "exit code: {}", self.code);
        let _ = writeln!(text, "files: {:#?}", self.files);
        let _ = writeln!(text, "--- stdout ---\n{}", self.stdout);
        let _ = writeln!(text, "--- stderr ---\n{}", self.stderr);
        text
    }

    /// Asserts `condition`, printing the run when it fails.
    #[track_caller]
    pub(crate) fn check(&self, condition: bool, what: &str) -> &Run {
        assert!(condition, "{what}\n{}", self.report());
        self
    }

    /// Asserts the exit code.
    #[track_caller]
    pub(crate) fn exits(&self, code: i32) -> &Run {
        self.check(self.code == code, &format!("expected exit code {code}"))
    }

    /// Stdout as exactly one JSON line.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        self.check(
            lines.len() == 1 && self.stdout.ends_with('\n'),
            "stdout must be exactly one line",
        );
        serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.report()))
    }

    /// Stderr as JSON log lines (each line must be a JSON object).
    #[track_caller]
    pub(crate) fn logs(&self) -> Vec<Value> {
        self.stderr
            .lines()
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(value @ Value::Object(_)) => value,
                _ => panic!(
                    "stderr line is not a JSON object: {line:?}\n{}",
                    self.report()
                ),
            })
            .collect()
    }

    /// The log lines whose `event` is `name`.
    #[track_caller]
    pub(crate) fn events(&self, name: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|line| line["event"] == name)
            .collect()
    }

    /// Asserts a canonical error: exit code, and under `--json` an error envelope with the
    /// code, its fragment and `detail` in the message. Returns the message.
    #[track_caller]
    pub(crate) fn fails_with(&self, code: proctor_contract::ErrorCode, detail: &str) -> String {
        self.exits(code.exit_code());
        let envelope = self.json();
        self.check(envelope["status"] == "error", "status must be error");
        self.check(
            envelope["error"]["code"] == code.as_str(),
            &format!("code must be {code}"),
        );
        let message = envelope["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.check(
            message.starts_with(code.fragment()),
            "message must start with the fragment",
        );
        self.check(
            message.contains(detail),
            &format!("message must contain {detail:?}"),
        );
        self.check(
            proctor_contract::Envelope::validate(&envelope).is_ok(),
            "the error envelope must validate",
        );
        message
    }
}

/// A stream a [`Relay`] can copy both ways: TCP or a unix socket.
pub(crate) trait Duplex: std::io::Read + std::io::Write + Send + Sized + 'static {
    /// A second handle on the same connection.
    fn duplicate(&self) -> std::io::Result<Self>;
    /// Ends the writing half, so the peer sees the end of the stream.
    fn close_write(&self);
    /// Ends both halves, whatever other handles on the connection do.
    fn close(&self);
}

impl Duplex for std::net::TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }

    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Duplex for std::os::unix::net::UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }

    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// Where a [`Relay`] listens.
enum Listening {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

/// What the accepting thread and the copying threads of a [`Relay`] share.
#[derive(Default)]
struct RelayState {
    /// No connection is accepted any more.
    stopped: AtomicBool,
    /// Requests containing this text are never forwarded: their connection is held open,
    /// unanswered.
    hold: Option<String>,
    /// A request has been held.
    held: AtomicBool,
    /// Both streams of every relayed connection, to close them all at once.
    open: Mutex<Vec<Box<dyn Fn() + Send>>>,
}

/// Relays every connection to a loopback address or a unix socket to what `connect` opens:
/// a registry on `[::1]`, the engine's socket on a TCP port or on another socket. Requests
/// holding a chosen text can be held unanswered, and the whole relay cut, as an engine
/// that hangs or goes away. Stops accepting when dropped.
pub(crate) struct Relay {
    listening: Listening,
    state: Arc<RelayState>,
}

impl Relay {
    /// Listens on `bind` (`127.0.0.1:0`, `[::1]:0`) and relays to `connect`'s stream.
    pub(crate) fn start<S: Duplex>(
        bind: &str,
        connect: impl Fn() -> std::io::Result<S> + Send + 'static,
    ) -> Relay {
        let listener = std::net::TcpListener::bind(bind).unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(RelayState::default());
        accept_and_relay(
            move || listener.accept().map(|(client, _)| client),
            Arc::clone(&state),
            connect,
        );
        Relay {
            listening: Listening::Tcp(address),
            state,
        }
    }

    /// Listens on the unix socket `path` and relays to `connect`'s stream; a request whose
    /// text contains `hold` (e.g. `/start HTTP`) is held unanswered, its connection open.
    pub(crate) fn unix<S: Duplex>(
        path: &Path,
        hold: Option<&str>,
        connect: impl Fn() -> std::io::Result<S> + Send + 'static,
    ) -> Relay {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        let state = Arc::new(RelayState {
            hold: hold.map(str::to_owned),
            ..RelayState::default()
        });
        accept_and_relay(
            move || listener.accept().map(|(client, _)| client),
            Arc::clone(&state),
            connect,
        );
        Relay {
            listening: Listening::Unix(path.to_owned()),
            state,
        }
    }

    /// The port it listens on (TCP).
    pub(crate) fn port(&self) -> u16 {
        match &self.listening {
            Listening::Tcp(address) => address.port(),
            Listening::Unix(path) => panic!("{} is a unix socket", path.display()),
        }
    }

    /// `DOCKER_HOST` for an engine behind this relay.
    pub(crate) fn docker_host(&self) -> String {
        match &self.listening {
            Listening::Tcp(address) => format!("tcp://{address}"),
            Listening::Unix(path) => format!("unix://{}", path.display()),
        }
    }

    /// Whether a request has been held.
    pub(crate) fn held(&self) -> bool {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Stops accepting (new connections are refused) and closes every relayed connection,
    /// as an engine that went away.
    pub(crate) fn cut(&self) {
        self.stop_accepting();
        for close in self.state.open.lock().unwrap().iter() {
            close();
        }
    }

    fn stop_accepting(&self) {
        if self.state.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the accepting thread so that it sees the flag and drops the listener.
        match &self.listening {
            Listening::Tcp(address) => drop(std::net::TcpStream::connect(address)),
            Listening::Unix(path) => drop(std::os::unix::net::UnixStream::connect(path)),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// Accepts connections until `state` says stop, relaying each to what `connect` opens.
fn accept_and_relay<C: Duplex, S: Duplex>(
    mut accept: impl FnMut() -> std::io::Result<C> + Send + 'static,
    state: Arc<RelayState>,
    connect: impl Fn() -> std::io::Result<S> + Send + 'static,
) {
    std::thread::spawn(move || {
        loop {
            let client = accept();
            if state.stopped.load(Ordering::SeqCst) {
                break;
            }
            if let (Ok(client), Ok(server)) = (client, connect()) {
                relay_connection(client, server, &state);
            }
        }
    });
}

/// Copies bytes both ways between `client` and `server` until each side closes, or holds
/// the connection once the client sends the state's `hold` text.
fn relay_connection<A: Duplex, B: Duplex>(client: A, server: B, state: &Arc<RelayState>) {
    let (Ok(mut client_reader), Ok(mut server_reader), Ok(client_closer), Ok(server_closer)) = (
        client.duplicate(),
        server.duplicate(),
        client.duplicate(),
        server.duplicate(),
    ) else {
        return;
    };
    state.open.lock().unwrap().push(Box::new(move || {
        client_closer.close();
        server_closer.close();
    }));
    let (mut client_writer, mut server_writer) = (client, server);
    let holding = Arc::new(AtomicBool::new(false));
    let (upstream_state, upstream_holding) = (Arc::clone(state), Arc::clone(&holding));
    std::thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match client_reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let chunk = &buffer[..read];
            let hold = upstream_state
                .hold
                .as_deref()
                .is_some_and(|hold| String::from_utf8_lossy(chunk).contains(hold));
            if hold {
                upstream_holding.store(true, Ordering::SeqCst);
                upstream_state.held.store(true, Ordering::SeqCst);
                return;
            }
            if server_writer.write_all(chunk).is_err() {
                break;
            }
        }
        server_writer.close_write();
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_reader, &mut client_writer);
        // A held request is never answered, not even by the end of the stream.
        if !holding.load(Ordering::SeqCst) {
            client_writer.close_write();
        }
    });
}
