//! Compiles a processor's statically linked binary for one platform with `cargo build
//! --target`, cross-linking with Debian's `<triple>-gcc` when the platform is not the host's.
//!
//! This is the one place proctor compiles a processor: `proctor build` uses it for both
//! platforms, and `proctor run --build` (through `build_docker_archive`) for the host's.
//! Cargo's JSON messages (read from stdout) name the binary and count the crates built; its
//! human output is captured, never printed: each line goes to the `debug` log and to the
//! compile's progress task as output (the caller decides whether to show it), and the last
//! lines explain an `ERR_BUILD`.
//!
//! Cargo runs in a process group of its own, so a compile can be stopped as a whole: once
//! the job's cancellation flag is set, the group (cargo, rustc, build scripts) gets SIGTERM,
//! then SIGKILL after [`STOP_GRACE`], cargo is reaped and the compile fails with
//! `ERR_INTERRUPTED`. The terminal's Ctrl-C no longer reaches the compiler directly; the
//! caller's cancellation does.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};

use proctor_contract::{CanonError, ErrorCode, Progress, ProgressTask, ProgressUnit};
use serde::Deserialize;

use crate::platform::{Platform, is_host};

/// Rust flags that link the C runtime statically, so the binary runs `FROM scratch`.
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";
/// How many trailing lines of cargo's output an `ERR_BUILD` carries.
const TAIL_LINES: usize = 20;
/// How often a running compile looks at its cancellation flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// How long a cancelled compile's process group has to end after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What to compile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompileJob<'a> {
    /// The Cargo workspace root.
    pub(crate) workspace_root: &'a Path,
    /// The binary package, e.g. `processor-text-stats`.
    pub(crate) cargo_package: &'a str,
    /// The platform to compile for.
    pub(crate) platform: Platform,
    /// Set (by another thread) to stop the compile; `None` when nothing cancels it.
    pub(crate) cancel: Option<&'a AtomicBool>,
    /// Where the compile reports the crates it has built and cargo's own output.
    pub(crate) progress: &'a Progress,
}

/// A compiled binary: where cargo left it, and its content as read (and checked) once.
#[derive(Debug, Clone)]
pub(crate) struct CompiledBinary {
    /// The path under cargo's target directory.
    pub(crate) path: PathBuf,
    /// The executable's bytes.
    pub(crate) bytes: Vec<u8>,
}

/// Builds the job's binary with `cargo build --release --target <triple>` and `+crt-static`,
/// and reads it, after checking that it is a statically linked ELF executable for the job's
/// platform. Blocks until cargo is done, or until its process group is stopped and cargo
/// reaped once `job.cancel` is set (`ERR_INTERRUPTED`).
pub(crate) fn compile(job: CompileJob<'_>) -> Result<CompiledBinary, CanonError> {
    check_toolchain(job.platform)?;
    let mut command = cargo_command(job);
    let mut child = command
        .spawn()
        .map_err(|err| build_error(job, format!("cannot start cargo: {err}")))?;
    let output = (child.stdout.take(), child.stderr.take());
    let group = CompilerGroup::new(child);
    let (finished, done) = mpsc::channel::<()>();
    let task = job.progress.start(
        format!("compiling {} for {}", job.cargo_package, job.platform),
        ProgressUnit::Items,
        None,
    );
    let outcome = std::thread::scope(|scope| {
        if let Some(cancel) = job.cancel {
            let group = &group;
            scope.spawn(move || group.stop_on(cancel, done));
        }
        let outcome = run_cargo(job, output, &group, &task);
        drop(finished);
        outcome
    });
    drop(task);
    if job
        .cancel
        .is_some_and(|cancel| cancel.load(Ordering::SeqCst))
    {
        return Err(CanonError::new(
            ErrorCode::Interrupted,
            format!(
                "the build of {} for {} was cancelled; its compiler is stopped",
                job.cargo_package, job.platform
            ),
        ));
    }
    let (status, executables, tail) = outcome?;
    if !status.success() {
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        return Err(build_error(
            job,
            format!(
                "cargo build exited with {status}; last output:\n{}",
                lines.join("\n")
            ),
        ));
    }
    let [binary] = executables.as_slice() else {
        return Err(build_error(
            job,
            format!(
                "expected exactly one binary from the package, cargo built {}",
                executables.len()
            ),
        ));
    };
    let bytes = std::fs::read(binary)
        .map_err(|err| build_error(job, format!("reading {}: {err}", binary.display())))?;
    check_static_elf(&bytes, job.platform)
        .map_err(|why| build_error(job, format!("{}: {why}", binary.display())))?;
    Ok(CompiledBinary {
        path: binary.clone(),
        bytes,
    })
}

/// What a finished cargo said: its status, the executables it announced and its last lines.
type CargoRun = (ExitStatus, Vec<PathBuf>, VecDeque<String>);

/// Reads cargo's output (stdout, stderr) to its end and reaps cargo; `task` counts the
/// crates built, names the last one, and hears each line of cargo's human output.
fn run_cargo(
    job: CompileJob<'_>,
    (stdout, stderr): (Option<ChildStdout>, Option<ChildStderr>),
    group: &CompilerGroup,
    task: &ProgressTask,
) -> Result<CargoRun, CanonError> {
    std::thread::scope(|scope| {
        let diagnostics = stderr.map(|stderr| {
            scope.spawn(move || {
                let mut tail = VecDeque::with_capacity(TAIL_LINES);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    tracing::debug!(event = "image.compile.output", line = %line);
                    task.output(line.as_str());
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                tail
            })
        });
        let mut executables = Vec::new();
        let mut crates_built = 0;
        if let Some(stdout) = stdout {
            for line in BufReader::new(stdout).lines() {
                let line = line.map_err(|err| {
                    // Its stderr reader, in this scope, ends once cargo does.
                    group.signal(Signal::KILL);
                    build_error(job, format!("reading cargo output: {err}"))
                })?;
                let Some(artifact) = artifact_of(&line) else {
                    continue;
                };
                crates_built += 1;
                task.advance(1);
                task.message(format!(
                    "{crates_built} crates built, last {}",
                    artifact.name
                ));
                if let Some(path) = artifact.executable {
                    executables.push(path);
                }
            }
        }
        let status = group
            .reap()
            .map_err(|err| build_error(job, format!("waiting for cargo: {err}")))?;
        let tail = diagnostics
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        Ok((status, executables, tail))
    })
}

/// Cargo as the leader of its own process group, until it is reaped; dropped unreaped
/// (an early error), the group is killed and cargo reaped.
struct CompilerGroup {
    /// Cargo (`None` once reaped). Held while signalling, so that a reaped, possibly
    /// reused, process ID is never signalled.
    child: Mutex<Option<Child>>,
}

impl CompilerGroup {
    fn new(child: Child) -> CompilerGroup {
        CompilerGroup {
            child: Mutex::new(Some(child)),
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for cargo to exit and reaps it. Called once its output has ended, i.e. as it
    /// exits: signalling waits meanwhile.
    fn reap(&self) -> std::io::Result<ExitStatus> {
        let mut child = self.child();
        let status = child.as_mut().map(Child::wait).transpose()?;
        *child = None;
        status.ok_or_else(|| std::io::Error::other("cargo was reaped already"))
    }

    /// Sends `signal` to the whole group, unless cargo has been reaped.
    fn signal(&self, signal: Signal) {
        let child = self.child();
        let group = child
            .as_ref()
            .and_then(|child| i32::try_from(child.id()).ok())
            .and_then(Pid::from_raw);
        if let Some(group) = group {
            // The group may have ended on its own meanwhile; there is nothing left to stop.
            let _ = kill_process_group(group, signal);
        }
    }

    /// Stops the group once `cancel` is set: SIGTERM, then SIGKILL if it has not ended
    /// after [`STOP_GRACE`]. Returns when `done`'s sender is dropped (the compile ended) or
    /// the group has been stopped.
    fn stop_on(&self, cancel: &AtomicBool, done: mpsc::Receiver<()>) {
        loop {
            match done.recv_timeout(CANCEL_POLL) {
                Err(RecvTimeoutError::Timeout) if cancel.load(Ordering::SeqCst) => break,
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        tracing::info!(event = "image.compile.stop", signal = "SIGTERM");
        self.signal(Signal::TERM);
        if let Err(RecvTimeoutError::Timeout) = done.recv_timeout(STOP_GRACE) {
            tracing::warn!(event = "image.compile.stop", signal = "SIGKILL");
            self.signal(Signal::KILL);
        }
    }
}

impl Drop for CompilerGroup {
    fn drop(&mut self) {
        if self.child().is_some() {
            self.signal(Signal::KILL);
            let _ = self.reap();
        }
    }
}

fn cargo_command(job: CompileJob<'_>) -> Command {
    let target = job.platform.rust_target();
    let target_env = target.to_uppercase().replace('-', "_");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(job.workspace_root)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(["-p", job.cargo_package, "--target", target])
        // Global flags would override the per-target ones and drop `+crt-static`.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env(
            format!("CARGO_TARGET_{target_env}_RUSTFLAGS"),
            STATIC_RUSTFLAGS,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, stopped as a whole on cancellation.
        .process_group(0);
    if !is_host(job.platform) {
        let gcc = format!("{}-gcc", job.platform.gnu_triple());
        let ar = format!("{}-ar", job.platform.gnu_triple());
        let cc_env = target.replace('-', "_");
        command
            .env(format!("CARGO_TARGET_{target_env}_LINKER"), &gcc)
            .env(format!("CC_{cc_env}"), &gcc)
            .env(format!("AR_{cc_env}"), &ar);
    }
    command
}

/// Refuses early, with the fix, when the Rust target or the cross linker is missing.
fn check_toolchain(platform: Platform) -> Result<(), CanonError> {
    let missing = |what: String| {
        CanonError::new(
            ErrorCode::Build,
            format!("{platform}: {what} is missing; run scripts/setup.sh"),
        )
    };
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args([
            "--print",
            "target-libdir",
            "--target",
            platform.rust_target(),
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if !libdir.is_some_and(|dir| dir.is_dir()) {
        return Err(missing(format!(
            "the Rust target {}",
            platform.rust_target()
        )));
    }
    if !is_host(platform) {
        let gcc = format!("{}-gcc", platform.gnu_triple());
        if !on_path(&gcc) {
            return Err(missing(format!("the cross linker {gcc}")));
        }
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn build_error(job: CompileJob<'_>, detail: String) -> CanonError {
    CanonError::new(
        ErrorCode::Build,
        format!("{} for {}: {detail}", job.cargo_package, job.platform),
    )
}

/// One line of `cargo build --message-format=json`, reduced to what names an artifact.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
    kind: Vec<String>,
}

/// A crate cargo has built, from a `compiler-artifact` message.
struct Artifact {
    /// The target's name, e.g. `tokio`.
    name: String,
    /// The executable, for a `bin` target.
    executable: Option<PathBuf>,
}

/// The artifact a `compiler-artifact` message announces, if the line is one.
fn artifact_of(line: &str) -> Option<Artifact> {
    let message: CargoMessage = serde_json::from_str(line).ok()?;
    let target = message
        .target
        .filter(|_| message.reason == "compiler-artifact")?;
    let is_bin = target.kind.iter().any(|k| k == "bin");
    Some(Artifact {
        name: target.name,
        executable: message.executable.filter(|_| is_bin),
    })
}

/// Checks that `bytes` is a 64-bit little-endian ELF executable for `platform` with no
/// program interpreter (`PT_INTERP`), i.e. statically linked.
fn check_static_elf(bytes: &[u8], platform: Platform) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    let machine = u16_at(18).ok_or("truncated ELF header")?;
    if machine != platform.elf_machine() {
        return Err(format!(
            "ELF machine {machine} is not {}",
            platform.as_str()
        ));
    }
    let table = u64_at(32).and_then(|offset| usize::try_from(offset).ok());
    let (Some(table), Some(entry_size), Some(entries)) = (table, u16_at(54), u16_at(56)) else {
        return Err("truncated ELF header".to_owned());
    };
    for index in 0..usize::from(entries) {
        let kind = u32_at(table + index * usize::from(entry_size))
            .ok_or("truncated ELF program headers")?;
        if kind == PT_INTERP {
            return Err(
                "dynamically linked (has a program interpreter); expected static".to_owned(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with one program header of `kind`.
    fn elf(machine: u16, kind: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 64 + 56];
        bytes[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&1u16.to_le_bytes());
        bytes[64..68].copy_from_slice(&kind.to_le_bytes());
        bytes
    }

    #[test]
    fn accepts_static_elf_of_the_right_machine() {
        assert_eq!(check_static_elf(&elf(183, 1), Platform::Arm64), Ok(()));
        assert_eq!(check_static_elf(&elf(62, 1), Platform::Amd64), Ok(()));
    }

    #[test]
    fn refuses_dynamic_foreign_or_broken_binaries() {
        assert!(
            check_static_elf(&elf(62, 3), Platform::Amd64)
                .unwrap_err()
                .contains("dynamically")
        );
        assert!(
            check_static_elf(&elf(62, 1), Platform::Arm64)
                .unwrap_err()
                .contains("arm64")
        );
        assert!(check_static_elf(b"#!/bin/sh\n", Platform::Amd64).is_err());
        assert!(check_static_elf(&elf(62, 1)[..40], Platform::Amd64).is_err());
    }

    #[test]
    fn counts_every_artifact_and_takes_executables_of_bins_only() {
        let bin = r#"{"reason":"compiler-artifact","target":{"name":"p","kind":["bin"]},"executable":"/t/p"}"#;
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"tokio","kind":["lib"]},"executable":null}"#;
        let done = r#"{"reason":"build-finished","success":true}"#;
        let bin = artifact_of(bin).unwrap();
        assert_eq!(
            (bin.name.as_str(), bin.executable),
            ("p", Some(PathBuf::from("/t/p")))
        );
        let lib = artifact_of(lib).unwrap();
        assert_eq!((lib.name.as_str(), lib.executable), ("tokio", None));
        assert!(artifact_of(done).is_none());
        assert!(artifact_of("not json").is_none());
    }

    #[test]
    fn cross_builds_set_linker_and_c_compiler() {
        let Some(foreign) = Platform::ALL.into_iter().find(|p| !is_host(*p)) else {
            return;
        };
        let job = CompileJob {
            workspace_root: Path::new("/w"),
            cargo_package: "p",
            platform: foreign,
            cancel: None,
            progress: &Progress::none(),
        };
        let command = cargo_command(job);
        let value = |key: String| {
            command
                .get_envs()
                .find(|(k, _)| **k == *key)
                .and_then(|(_, v)| v)
                .map(|v| v.to_string_lossy().into_owned())
        };
        let target_env = foreign.rust_target().to_uppercase().replace('-', "_");
        let cc_env = foreign.rust_target().replace('-', "_");
        let gcc = format!("{}-gcc", foreign.gnu_triple());
        let ar = format!("{}-ar", foreign.gnu_triple());
        assert_eq!(
            value(format!("CARGO_TARGET_{target_env}_RUSTFLAGS")).as_deref(),
            Some(STATIC_RUSTFLAGS)
        );
        assert_eq!(
            value(format!("CARGO_TARGET_{target_env}_LINKER")),
            Some(gcc.clone())
        );
        assert_eq!(value(format!("CC_{cc_env}")), Some(gcc));
        assert_eq!(value(format!("AR_{cc_env}")), Some(ar));
        assert!(
            command
                .get_envs()
                .any(|(k, v)| k == "RUSTFLAGS" && v.is_none())
        );
    }

    #[test]
    fn native_builds_use_the_default_linker() {
        let host = Platform::ALL.into_iter().find(|p| is_host(*p)).unwrap();
        let job = CompileJob {
            workspace_root: Path::new("/w"),
            cargo_package: "p",
            platform: host,
            cancel: None,
            progress: &Progress::none(),
        };
        let command = cargo_command(job);
        assert!(
            !command
                .get_envs()
                .any(|(k, _)| k.to_string_lossy().ends_with("_LINKER"))
        );
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w == ["--target", host.rust_target()])
        );
    }

    #[test]
    fn a_cancelled_compiler_group_is_stopped_whole_and_reaped() {
        use std::os::unix::process::ExitStatusExt as _;
        // A leader with a child of its own, as cargo has rustc.
        let mut leader = Command::new("sh")
            .args(["-c", "sleep 600 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut output = BufReader::new(leader.stdout.take().unwrap());
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        let sleeper: u32 = line.trim().parse().unwrap();
        let group = CompilerGroup::new(leader);
        let cancel = AtomicBool::new(true);
        let (finished, done) = mpsc::channel::<()>();
        let status = std::thread::scope(|scope| {
            scope.spawn(|| group.stop_on(&cancel, done));
            // The output ends once the whole group, which holds it, has ended.
            std::io::copy(&mut output, &mut std::io::sink()).unwrap();
            let status = group.reap().unwrap();
            drop(finished);
            status
        });
        assert_eq!(status.signal(), Some(Signal::TERM.as_raw()), "{status}");
        assert!(
            gone_or_dead(sleeper),
            "the leader's child outlived the stop"
        );
    }

    #[test]
    fn an_uncancelled_compiler_group_is_left_alone() {
        let leader = Command::new("sh")
            .args(["-c", "exit 3"])
            .process_group(0)
            .spawn()
            .unwrap();
        let group = CompilerGroup::new(leader);
        let cancel = AtomicBool::new(false);
        let (finished, done) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            scope.spawn(|| group.stop_on(&cancel, done));
            let status = group.reap().unwrap();
            drop(finished);
            assert_eq!(status.code(), Some(3));
        });
    }

    /// Whether process `pid` is gone or only a zombie waiting to be reaped by its new parent.
    fn gone_or_dead(pid: u32) -> bool {
        // The stat line is `pid (comm) state …`; the state follows the last `)`.
        let state = |stat: String| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => matches!(state(stat).as_deref(), Some("Z" | "X")),
        }
    }
}
