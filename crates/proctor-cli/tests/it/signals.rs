//! `proctor run` stopped by SIGINT or SIGTERM at each phase of a local run — engine connect,
//! build, pull, start, health, run — and a run whose engine goes away. Each test really
//! reaches its phase before signalling: an engine behind a relay that holds the phase's
//! request unanswered (connect, pull, start), a compile from a cold target directory (build),
//! a processor that never becomes healthy (health), one whose `/run` hangs (run). At every
//! phase the run removes its container, releases its lease and reservation, records the
//! interruption, prints the error envelope and exits 128 + the signal's number.
//!
//! The commit phase (checking and storing the staged evidence after the envelope) is not
//! tested here: nothing outside the process can hold it open long enough to be signalled.
//!
//! Needs the Docker engine of `scripts/setup.sh` at `/var/run/docker.sock`.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use proctor_contract::ErrorCode;

use crate::engine::ContainerSweep;
use crate::ledger::{events_of, kinds_of, ledger_json};
use crate::util::{FIXTURE_YAML, Relay, Run, Started, TestDir, fixtures_registry};

/// The engine's socket, as `scripts/setup.sh` starts it.
const ENGINE_SOCKET: &str = "/var/run/docker.sock";
/// The longest wait for a run to reach the phase a test signals it in (a cold image build
/// comes first in some).
const PHASE_WAIT: Duration = Duration::from_secs(900);

/// A stop signal and the exit code it gives.
#[derive(Debug, Clone, Copy)]
struct StopSignal {
    name: &'static str,
    exit: i32,
}

const SIGINT: StopSignal = StopSignal {
    name: "INT",
    exit: 130,
};
const SIGTERM: StopSignal = StopSignal {
    name: "TERM",
    exit: 143,
};
const SIGHUP: StopSignal = StopSignal {
    name: "HUP",
    exit: 129,
};

/// `testing/faulty@1`'s registry root.
/// `proctor run` arguments for `testing/faulty@1` from source with `fault`, its container
/// labelled by `options`, then `extra`.
fn faulty_run<'a>(
    fixtures: &'a str,
    options: &'a str,
    fault: &str,
    extra: &[&'a str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--ref",
        "testing/faulty@1",
        "--adapter",
        "local",
        "--build",
        "--timeout",
        "600",
        "--write-prefix",
        "/artifacts/o/{execution_id}",
        "--adapter-opts-json",
        options,
        "--registry-root",
        fixtures,
        "--artifacts-root",
        "artifacts",
        "--json",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend([
        "--inputs-json".to_owned(),
        format!(r#"{{"schema":"v1","fault":"{fault}"}}"#),
    ]);
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args
}

/// Waits (bounded by [`PHASE_WAIT`]) until `reached` holds while `started` runs.
#[track_caller]
fn wait_for(started: Started, phase: &str, reached: impl Fn() -> bool) -> Started {
    let mut started = started;
    let mut waited = Duration::ZERO;
    while !reached() {
        if started.has_ended() {
            panic!(
                "the run ended before {phase}\n{}",
                started.finish().report()
            );
        }
        assert!(waited < PHASE_WAIT, "the run never reached {phase}");
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
    started
}

/// Sends `signal` to the process `pid` alone.
fn send(signal: StopSignal, pid: u32) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{}", signal.name), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{} {pid}", signal.name);
}

/// Signals the run, waits for it, and asserts what every stopped run leaves: exit
/// 128 + signal, an `ERR_INTERRUPTED` envelope whose message contains `detail`, no
/// container, and a ledger that records the interruption with the lease and the
/// reservation released.
fn stop_and_check(
    started: Started,
    signal: StopSignal,
    dir: &TestDir,
    sweep: &ContainerSweep,
    detail: &str,
) -> Run {
    send(signal, started.id());
    let run = started.finish();
    run.exits(signal.exit);
    let envelope = run.json();
    run.check(
        envelope["status"] == "error"
            && envelope["error"]["code"] == ErrorCode::Interrupted.as_str()
            && envelope["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains(detail)),
        &format!("the envelope must say the run was interrupted: {detail:?}"),
    );
    run.check(
        proctor_contract::Envelope::validate(&envelope).is_ok(),
        "the error envelope must validate",
    );
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the signal",
    );
    let id = envelope["execution_id"].as_str().unwrap().to_owned();
    let show = ledger_json(dir, &["show", "default"]);
    assert_eq!(
        kinds_of(&show, &id),
        [
            "execution.start",
            "budget.reserve",
            "lease.acquire",
            "lease.release",
            "budget.settle",
            "execution.settle.failure"
        ],
        "{show:#}"
    );
    let events = events_of(&show, &id);
    assert_eq!(events[3]["payload"]["reason"], "released");
    assert_eq!(
        events[4]["payload"]["plan_reserved_micro_usd"], 0,
        "{show:#}"
    );
    assert_eq!(events[5]["payload"]["error"]["code"], "ERR_INTERRUPTED");
    ledger_json(dir, &["verify"]);
    run
}

/// A relay on a socket in `dir` to the engine, holding requests that contain `hold`.
fn engine_relay(dir: &TestDir, hold: Option<&str>) -> Relay {
    Relay::unix(&dir.path().join("engine.sock"), hold, || {
        UnixStream::connect(ENGINE_SOCKET)
    })
}

fn stopping_while_connecting_to_the_engine(signal: StopSignal) {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    // The engine accepts the connection and never answers its first request.
    let relay = engine_relay(&dir, Some("HTTP/1.1"));
    let (fixtures, options) = (fixtures_registry(), sweep.adapter_options());
    let args = faulty_run(&fixtures, &options, "none", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = dir
        .proctor(&args)
        .env("DOCKER_HOST", &relay.docker_host())
        .start();
    let started = wait_for(started, "the engine connect", || relay.held());
    stop_and_check(
        started,
        signal,
        &dir,
        &sweep,
        "interrupted before testing/faulty@1 was started",
    );
}

#[test]
fn ctrl_c_while_connecting_to_the_engine_cleans_up() {
    stopping_while_connecting_to_the_engine(SIGINT);
}

#[test]
fn sigterm_while_connecting_to_the_engine_cleans_up() {
    stopping_while_connecting_to_the_engine(SIGTERM);
}

/// `(pid, process group)` of the process `pid`, from `/proc/<pid>/stat`, with its state.
fn stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`; the command may hold spaces and parentheses.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, parent, group))
}

/// Every live (not zombie) process: `(pid, parent, process group, command name)`.
fn processes() -> Vec<(u32, u32, u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (state, parent, group) = stat(pid)?;
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (state != 'Z' && state != 'X').then(|| (pid, parent, group, name.trim().to_owned()))
        })
        .collect()
}

/// Signals a `--build` run while cargo compiles from a cold target directory (started by
/// proctor in a process group of its own, which a signal to proctor alone does not reach):
/// the compiler's whole group is stopped, and proctor ends without waiting for the compile.
fn stopping_during_the_build(signal: StopSignal) {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    let (fixtures, options) = (fixtures_registry(), sweep.adapter_options());
    let args = faulty_run(&fixtures, &options, "none", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cold_target = dir.path().join("target").display().to_string();
    let started = dir
        .proctor(&args)
        .env("CARGO_TARGET_DIR", &cold_target)
        .start();
    let proctor = started.id();
    let compiler = std::cell::Cell::new(None);
    let started = wait_for(started, "the compile", || {
        let cargo = processes()
            .into_iter()
            .find(|(_, parent, _, name)| *parent == proctor && name == "cargo")
            .map(|(pid, _, group, _)| (pid, group));
        compiler.set(cargo);
        // A rustc below cargo means the compile is well under way.
        cargo.is_some_and(|(cargo, _)| {
            processes()
                .iter()
                .any(|(_, parent, _, name)| *parent == cargo && name == "rustc")
        })
    });
    let (cargo, group) = compiler.get().unwrap();
    assert_eq!(cargo, group, "cargo must lead a process group of its own");
    let run = stop_and_check(
        started,
        signal,
        &dir,
        &sweep,
        "testing/faulty@1 was cancelled; no container was created",
    );
    // Proctor reaped cargo before exiting; the rest of the group was signalled with it.
    let mut waited = Duration::ZERO;
    while processes().iter().any(|(_, _, member, _)| *member == group) {
        assert!(
            waited < PHASE_WAIT,
            "the compiler's process group outlived proctor"
        );
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
    run.check(
        !Path::new(&cold_target)
            .join("x86_64-unknown-linux-gnu/release/processor-testing-faulty")
            .exists()
            && !Path::new(&cold_target)
                .join("aarch64-unknown-linux-gnu/release/processor-testing-faulty")
                .exists(),
        "the compile must not have finished",
    );
}

#[test]
fn ctrl_c_during_the_build_stops_the_compiler() {
    stopping_during_the_build(SIGINT);
}

#[test]
fn sigterm_during_the_build_stops_the_compiler() {
    stopping_during_the_build(SIGTERM);
}

/// Signals a run of a pinned image the engine does not have while the engine holds its
/// pull unanswered.
fn stopping_during_the_pull(signal: StopSignal) {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    let relay = engine_relay(&dir, Some("/images/create"));
    let registry = dir.fixture_registry(FIXTURE_YAML).display().to_string();
    let options = sweep.adapter_options();
    let started = dir
        .proctor(&[
            "run",
            "--ref",
            "text/stats@1",
            "--adapter",
            "local",
            "--write-prefix",
            "/artifacts/o/{execution_id}",
            "--inputs-json",
            r#"{"schema":"v1","params":{}}"#,
            "--adapter-opts-json",
            &options,
            "--registry-root",
            &registry,
            "--artifacts-root",
            "artifacts",
            "--json",
        ])
        .env("DOCKER_HOST", &relay.docker_host())
        .start();
    let started = wait_for(started, "the pull", || relay.held());
    stop_and_check(
        started,
        signal,
        &dir,
        &sweep,
        "text/stats@1 was cancelled; no container was created",
    );
}

#[test]
fn ctrl_c_during_the_pull_cleans_up() {
    stopping_during_the_pull(SIGINT);
}

#[test]
fn sigterm_during_the_pull_cleans_up() {
    stopping_during_the_pull(SIGTERM);
}

/// Signals a run while the engine holds its container's start unanswered: the container
/// exists, created, and is removed.
fn stopping_during_the_start(signal: StopSignal) {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    let relay = engine_relay(&dir, Some("/start"));
    let (fixtures, options) = (fixtures_registry(), sweep.adapter_options());
    let args = faulty_run(&fixtures, &options, "none", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = dir
        .proctor(&args)
        .env("DOCKER_HOST", &relay.docker_host())
        .start();
    let started = wait_for(started, "the container start", || relay.held());
    assert_eq!(sweep.containers().len(), 1, "the container must exist");
    stop_and_check(
        started,
        signal,
        &dir,
        &sweep,
        "testing/faulty@1 was cancelled; its container is removed",
    );
}

#[test]
fn ctrl_c_during_the_start_removes_the_container() {
    stopping_during_the_start(SIGINT);
}

#[test]
fn sigterm_during_the_start_removes_the_container() {
    stopping_during_the_start(SIGTERM);
}

/// Whether the run's one container has logged `text`.
fn container_logged(sweep: &ContainerSweep, text: &str) -> bool {
    sweep.containers().iter().any(|id| {
        std::process::Command::new("docker")
            .args(["logs", id])
            .output()
            .is_ok_and(|logs| String::from_utf8_lossy(&logs.stderr).contains(text))
    })
}

/// Signals a real-mode run whose processor serves but never answers `/healthz` healthy.
fn stopping_while_waiting_for_health(signal: StopSignal) {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    let (fixtures, options) = (fixtures_registry(), sweep.adapter_options());
    let args = faulty_run(&fixtures, &options, "none", &["--mode", "real"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = dir
        .proctor(&args)
        .env("FAULTY_STARTUP", "unhealthy")
        .start();
    let started = wait_for(started, "the health wait", || {
        container_logged(&sweep, "processor-testing-faulty: listening on")
    });
    stop_and_check(
        started,
        signal,
        &dir,
        &sweep,
        "testing/faulty@1 was cancelled; its container is removed",
    );
}

#[test]
fn ctrl_c_while_waiting_for_health_removes_the_container() {
    stopping_while_waiting_for_health(SIGINT);
}

#[test]
fn sigterm_while_waiting_for_health_removes_the_container() {
    stopping_while_waiting_for_health(SIGTERM);
}

/// Signals a run while its container hangs in `/run`.
fn stopping_a_hanging_run(signal: StopSignal) {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    let (fixtures, options) = (fixtures_registry(), sweep.adapter_options());
    let args = faulty_run(&fixtures, &options, "hang", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = dir.proctor(&args).start();
    let started = wait_for(started, "the run", || {
        container_logged(&sweep, "processor-testing-faulty: run ")
    });
    stop_and_check(
        started,
        signal,
        &dir,
        &sweep,
        "testing/faulty@1 was cancelled; its container is removed",
    );
}

#[test]
fn ctrl_c_during_a_run_still_releases_and_settles() {
    stopping_a_hanging_run(SIGINT);
}

#[test]
fn sigterm_during_a_run_still_releases_and_settles() {
    stopping_a_hanging_run(SIGTERM);
}

#[test]
fn sighup_during_a_run_still_releases_and_settles() {
    stopping_a_hanging_run(SIGHUP);
}

/// The engine goes away while the container hangs in `/run`: the run ends at once (well
/// before its 600 s timeout) with `ERR_ADAPTER_INVOCATION`, and since the container could
/// not be removed, the message says so and names it, claiming no removal.
#[test]
fn a_lost_engine_ends_the_run_and_names_the_container_left() {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    let relay = engine_relay(&dir, None);
    let (fixtures, options) = (fixtures_registry(), sweep.adapter_options());
    let args = faulty_run(&fixtures, &options, "hang", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = dir
        .proctor(&args)
        .env("DOCKER_HOST", &relay.docker_host())
        .start();
    let started = wait_for(started, "the run", || {
        container_logged(&sweep, "processor-testing-faulty: run ")
    });
    relay.cut();
    let run = started.finish();
    let message = run.fails_with(ErrorCode::AdapterInvocation, "lost the Docker engine");
    let left = sweep.containers();
    run.check(
        left.len() == 1,
        "the container is still there, as the engine never removed it",
    );
    let name = message
        .split("its container ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    run.check(
        name.starts_with("proctor-"),
        "the message must name the container",
    );
    run.check(
        message.contains(&format!("its container {name} could not be removed"))
            && message.contains(&format!("docker rm -f {name}"))
            && !message.contains("is removed"),
        "the message must name the container left and claim no removal",
    );
    let id = run.json()["execution_id"].as_str().unwrap().to_owned();
    let show = ledger_json(&dir, &["show", "default"]);
    let kinds = kinds_of(&show, &id);
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("execution.settle.failure"),
        "{show:#}"
    );
    assert!(kinds.contains(&"lease.release".to_owned()), "{show:#}");
}
