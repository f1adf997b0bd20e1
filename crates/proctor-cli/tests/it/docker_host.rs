//! The engine is found the way the docker CLI finds it: `DOCKER_HOST` is honoured for
//! `unix://` and `tcp://`, and anything else is refused, never silently replaced by the
//! local socket. Needs the Docker engine of `scripts/setup.sh`, reached over TCP through a
//! relay of the test's own on loopback.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;

use proctor_contract::ErrorCode;

use crate::util::{Relay, TestDir, workspace_registry};

/// The engine's socket, as `scripts/setup.sh` starts it.
const ENGINE_SOCKET: &str = "/var/run/docker.sock";

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(error) if error.kind() == ErrorKind::ConnectionRefused => port,
        _ => panic!("port {port} was taken again"),
    }
}

/// `proctor run` of `text/stats@1` from source, in mock mode.
fn stats_run(registry: &str) -> [&str; 14] {
    [
        "run",
        "--ref",
        "text/stats@1",
        "--adapter",
        "local",
        "--build",
        "--write-prefix",
        "/artifacts/o/{execution_id}",
        "--inputs-json",
        r#"{"schema":"v1","text":"a b b"}"#,
        "--registry-root",
        registry,
        "--json",
        "--artifacts-root=artifacts",
    ]
}

#[test]
fn a_tcp_docker_host_is_the_engine_runs_talk_to() {
    let dir = TestDir::new();
    let registry = workspace_registry().display().to_string();
    let relay = Relay::start("127.0.0.1:0", || UnixStream::connect(ENGINE_SOCKET));
    let run = dir
        .proctor(&stats_run(&registry))
        .env("DOCKER_HOST", &format!("tcp://127.0.0.1:{}", relay.port()))
        .run();
    run.exits(0);

    let closed = format!("tcp://127.0.0.1:{}", closed_port());
    let refused = dir
        .proctor(&stats_run(&registry))
        .env("DOCKER_HOST", &closed)
        .run();
    refused.fails_with(
        ErrorCode::AdapterInvocation,
        &format!("DOCKER_HOST `{closed}`"),
    );
}

#[test]
fn an_unsupported_docker_host_is_refused_never_ignored() {
    let dir = TestDir::new();
    let registry = workspace_registry().display().to_string();
    let scheme = dir
        .proctor(&stats_run(&registry))
        .env("DOCKER_HOST", "ftp://127.0.0.1:2375")
        .run();
    scheme.fails_with(ErrorCode::AdapterInvocation, "is not supported");
    let tls = dir
        .proctor(&stats_run(&registry))
        .env("DOCKER_HOST", "tcp://127.0.0.1:2376")
        .env("DOCKER_TLS_VERIFY", "1")
        .run();
    tls.fails_with(ErrorCode::AdapterInvocation, "DOCKER_TLS_VERIFY");
}
