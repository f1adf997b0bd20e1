//! The engine is found the way the docker CLI finds it: `DOCKER_HOST` is honoured for
//! `unix://` and `tcp://`, with TLS and client certificates when `DOCKER_TLS_VERIFY` is set,
//! and anything else is refused, never silently replaced by the local socket. Needs the
//! Docker engine of `scripts/setup.sh`, reached over TCP through a relay of the test's own
//! on loopback: a plain one, and one that terminates TLS with certificates made by the test.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proctor_contract::ErrorCode;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::engine::ContainerSweep;
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
    let tls_over_unix = dir
        .proctor(&stats_run(&registry))
        .env("DOCKER_HOST", &format!("unix://{ENGINE_SOCKET}"))
        .env("DOCKER_TLS_VERIFY", "1")
        .run();
    tls_over_unix.fails_with(
        ErrorCode::AdapterInvocation,
        "DOCKER_TLS_VERIFY is set, but DOCKER_HOST is not tcp://HOST:PORT",
    );
}

/// A certificate authority made for one test.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf certificate for `names`, for `purpose`, and its key.
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (Certificate, KeyPair) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![purpose];
        params
            .distinguished_name
            .push(DnType::CommonName, "proctor test");
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate, key)
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` (a client certificate of this CA, trusting
    /// `trusted` for the server) into `dir`, as `DOCKER_CERT_PATH` holds them.
    fn client_cert_path(&self, trusted: &TestCa, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = self.issue(&["proctor-client"], ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::write(dir.join("ca.pem"), trusted.issuer.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        dir.to_owned()
    }
}

/// A TLS-terminating relay to the engine's socket on 127.0.0.1, as a dockerd with
/// `--tlsverify` answers: its server certificate for `127.0.0.1` and `localhost` is issued by
/// `ca`, and it requires a client certificate issued by `ca`. Stops when dropped.
struct TlsRelay {
    port: u16,
    /// Connections whose TLS handshake completed and were relayed to the engine.
    relayed: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl TlsRelay {
    fn start(ca: &TestCa) -> TlsRelay {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca.issuer.der().clone()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let (cert, key) = ca.issue(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let relayed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&relayed);
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    // A refused handshake just ends the connection, as dockerd does.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut engine = tokio::net::UnixStream::connect(ENGINE_SOCKET)
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                });
            }
        });
        TlsRelay {
            port,
            relayed,
            _runtime: runtime,
        }
    }
}

#[test]
fn a_tls_docker_host_is_reached_with_client_certificates() {
    let dir = TestDir::new();
    let registry = workspace_registry().display().to_string();
    let sweep = ContainerSweep::new();
    let options = sweep.adapter_options();
    let ca = TestCa::new("proctor test engine CA");
    let relay = TlsRelay::start(&ca);
    let host = format!("tcp://127.0.0.1:{}", relay.port);
    let tls_run = |cert_path: &Path| {
        let mut args = stats_run(&registry).to_vec();
        args.extend(["--adapter-opts-json", &options]);
        dir.proctor(&args)
            .env("DOCKER_HOST", &host)
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &cert_path.display().to_string())
            .run()
    };

    let good = ca.client_cert_path(&ca, &dir.path().join("certs"));
    let run = tls_run(&good);
    run.exits(0);
    run.check(
        run.json()["status"] == "success",
        "the run succeeds over TLS",
    );
    run.check(
        relay.relayed.load(Ordering::SeqCst) > 0,
        "the engine was reached through the TLS relay",
    );
    assert!(sweep.containers().is_empty(), "no container is left");

    // The client trusts another CA: the engine's certificate is refused, nothing runs.
    let relayed = relay.relayed.load(Ordering::SeqCst);
    let other = TestCa::new("another CA");
    let wrong_ca = ca.client_cert_path(&other, &dir.path().join("wrong-ca"));
    let refused = tls_run(&wrong_ca);
    let message = refused.fails_with(
        ErrorCode::AdapterInvocation,
        &format!("cannot reach the Docker engine at DOCKER_HOST `{host}`"),
    );
    refused.check(
        message.contains("certificate"),
        "the message names the certificate",
    );
    assert_eq!(relay.relayed.load(Ordering::SeqCst), relayed);
    assert!(sweep.containers().is_empty(), "no container is left");

    // A missing client key is named before anything is sent.
    std::fs::remove_file(good.join("key.pem")).unwrap();
    let missing = tls_run(&good);
    missing.fails_with(
        ErrorCode::AdapterInvocation,
        &format!("{} cannot be used", good.join("key.pem").display()),
    );
    assert_eq!(relay.relayed.load(Ordering::SeqCst), relayed);
}
