//! The `herenow` binary meeting Redis as people run it: `rediss://` with a password and a
//! private CA (`REDIS_CA_FILE`) serves and says so in `/server/readyz`; settings that can
//! never work (a wrong or missing password, a certificate from an unknown CA, a URL or CA
//! file that cannot be read) stop the start with status 1 and one line naming the
//! setting; a Redis that is merely down does not. Real `redis-server` processes over
//! TLS, certificates made with `openssl` for each test process.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::redis::{RedisServer, Setup};

static TLS: OnceLock<RedisServer> = OnceLock::new();

/// One TLS-only, password-protected server for the whole file.
fn tls_server() -> &'static RedisServer {
    TLS.get_or_init(|| RedisServer::start_with(Setup::tls_with_password()))
}

/// The binary on a free port with only these settings: nothing from the caller's
/// environment (a developer's `REDIS_URL`) reaches it.
fn herenow(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herenow"));
    cmd.env_clear()
        .env("RUST_LOG", "warn")
        .env("HERENOW_DOTENV", "0")
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Run until it exits (at most 15 s): its status code and stderr.
fn run_to_exit(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd.spawn().expect("spawn herenow");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for herenow") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("herenow kept running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

/// Exits with 1 and exactly `line` on stderr.
fn refuses(env: &[(&str, String)], line: &str) {
    let (code, stderr) = run_to_exit(herenow(env));
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert_eq!(stderr, format!("error: {line}\n"));
}

/// A running `herenow`, killed on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Running {
    fn start(env: &[(&str, String)]) -> Running {
        let mut child = herenow(env)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn herenow");
        let addr = common::listening_address(&mut child)
            .parse()
            .expect("a socket address");
        Running { child, addr }
    }

    async fn readyz(&self) -> String {
        let (status, body) = common::http_get(self.addr, "/server/readyz").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `/server/readyz` once `pred` holds for its body (bounded).
    async fn until_ready(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + common::WAIT;
        loop {
            let body = self.readyz().await;
            if pred(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "readyz never said so: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ca_file(server: &RedisServer) -> String {
    server.setup.ca_file().unwrap().display().to_string()
}

/// The server's URL with another password.
fn with_password(server: &RedisServer, password: &str) -> String {
    format!("rediss://default:{password}@127.0.0.1:{}", server.port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_password_and_a_ca_file_serves_and_readyz_says_connected() {
    let server = tls_server();
    assert!(server.url().starts_with("rediss://default:"));
    let herenow = Running::start(&[
        ("REDIS_URL", server.url()),
        ("REDIS_CA_FILE", ca_file(server)),
    ]);
    let body = herenow
        .until_ready(|b| b.contains(r#""connected":true"#))
        .await;
    assert!(body.contains(r#""kind":"redis""#), "{body}");
    assert!(body.contains("single node, TLS"), "{body}");
    assert!(!body.contains("s3cret"), "no password in readyz: {body}");
}

#[test]
fn a_wrong_password_at_start_exits_1_with_one_line() {
    let server = tls_server();
    refuses(
        &[
            ("REDIS_URL", with_password(server, "not-the-password")),
            ("REDIS_CA_FILE", ca_file(server)),
        ],
        "REDIS_URL: redis rejected the password (WRONGPASS); check the user name and password in REDIS_URL",
    );
}

#[test]
fn no_password_at_start_exits_1_with_one_line() {
    let server = tls_server();
    refuses(
        &[
            ("REDIS_URL", format!("rediss://127.0.0.1:{}", server.port)),
            ("REDIS_CA_FILE", ca_file(server)),
        ],
        "REDIS_URL: redis requires a password (NOAUTH); put it in REDIS_URL, as in rediss://default:PASSWORD@host:port",
    );
}

#[test]
fn a_certificate_from_an_unknown_ca_at_start_exits_1_with_one_line() {
    let server = tls_server();
    let target = format!("127.0.0.1:{}", server.port);
    // No REDIS_CA_FILE: the built-in public roots do not know the test CA.
    refuses(
        &[("REDIS_URL", server.url())],
        &format!(
            "REDIS_URL: the TLS certificate of {target} was rejected (UnknownIssuer); if it \
             comes from a private CA, set REDIS_CA_FILE to that CA's certificate (PEM)"
        ),
    );
    // A CA file of another CA.
    let other = server.setup.tls.as_ref().unwrap().other_ca.clone();
    refuses(
        &[
            ("REDIS_URL", server.url()),
            ("REDIS_CA_FILE", other.display().to_string()),
        ],
        &format!(
            "REDIS_URL: the TLS certificate of {target} was rejected (UnknownIssuer); \
             REDIS_CA_FILE ({}) does not hold the CA that signed it; give that CA's certificate",
            other.display()
        ),
    );
}

#[test]
fn settings_that_cannot_be_read_exit_1_with_one_line() {
    refuses(
        &[("REDIS_URL", "http://127.0.0.1:6379".into())],
        "REDIS_URL: unknown scheme `http://`; write redis://host:port, or rediss://host:port for TLS",
    );
    refuses(
        &[("REDIS_URL", "redis://user:pw@[::1".into())],
        "REDIS_URL: `redis://***@[::1` is not a Redis URL; write redis://[user:password@]host:port[/db], or rediss://... for TLS",
    );
    refuses(
        &[
            ("REDIS_URL", "rediss://127.0.0.1:1".into()),
            ("REDIS_CA_FILE", "/no/such/ca.pem".into()),
        ],
        "REDIS_CA_FILE: cannot read /no/such/ca.pem: No such file or directory (os error 2); give the path of the CA certificate (PEM) that signed the Redis server's certificate",
    );
    refuses(
        &[
            ("REDIS_URL", "redis://127.0.0.1:1".into()),
            ("REDIS_CA_FILE", "/no/such/ca.pem".into()),
        ],
        "REDIS_CA_FILE is set but REDIS_URL does not use TLS; write rediss:// to connect with TLS, or unset REDIS_CA_FILE",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_down_at_start_is_an_outage_not_an_error() {
    let mut server = RedisServer::start_with(Setup::tls_with_password());
    let url = server.url();
    let ca = ca_file(&server);
    server.kill();
    let herenow = Running::start(&[("REDIS_URL", url), ("REDIS_CA_FILE", ca)]);
    let body = herenow
        .until_ready(|b| b.contains("Connection refused"))
        .await;
    assert!(body.contains(r#""connected":false"#), "{body}");
    // It comes up when Redis does.
    server.restart();
    herenow
        .until_ready(|b| b.contains(r#""connected":true"#))
        .await;
}
