//! The test harness: each test gets its own temp dir as the working directory and a clean
//! environment; a failed expectation prints the command, its directory, the directory's
//! files, stdout and stderr.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// The workspace's own registry root.
pub(crate) fn workspace_registry() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../processors")
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
        }
    }
}

/// A `proctor` command about to run.
pub(crate) struct Proctor {
    command: Command,
    dir: PathBuf,
}

impl Proctor {
    /// Sets an environment variable.
    pub(crate) fn env(mut self, name: &str, value: &str) -> Proctor {
        self.command.env(name, value);
        self
    }

    /// Runs it to completion.
    pub(crate) fn run(mut self) -> Run {
        let output = self.command.output().unwrap();
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
}

impl Duplex for std::net::TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Duplex for std::os::unix::net::UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// Relays every TCP connection to a loopback address to what `connect` opens, until
/// dropped: a registry on `[::1]`, the engine's socket on a TCP port.
pub(crate) struct Relay {
    address: std::net::SocketAddr,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// Listens on `bind` (`127.0.0.1:0`, `[::1]:0`) and relays to `connect`'s stream.
    pub(crate) fn start<S: Duplex>(
        bind: &str,
        connect: impl Fn() -> std::io::Result<S> + Send + 'static,
    ) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(bind).unwrap();
        let address = listener.local_addr().unwrap();
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stopped);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let (Ok(client), Ok(server)) = (client, connect()) {
                    copy_both_ways(client, server);
                }
            }
        });
        Relay { address, stopped }
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.address.port()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accepting thread so that it sees the flag.
        let _ = std::net::TcpStream::connect(self.address);
    }
}

/// Copies bytes both ways between `a` and `b` until each side closes.
fn copy_both_ways<A: Duplex, B: Duplex>(a: A, b: B) {
    let (Ok(mut a_reader), Ok(mut b_reader)) = (a.duplicate(), b.duplicate()) else {
        return;
    };
    let (mut a_writer, mut b_writer) = (a, b);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_reader, &mut b_writer);
        b_writer.close_write();
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b_reader, &mut a_writer);
        a_writer.close_write();
    });
}
