//! The real `herenow` binary as a platform runs it: under a low open-files limit
//! (`prlimit`, as on a Vercel instance's 1,024), checked by `herenow healthcheck` (a
//! container's HEALTHCHECK), and configured from `.env.local` / `.env` files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::redis::{require_redis, RedisServer};
use common::{TestClient, WAIT};
use serde_json::{json, Value};
use tokio::time::sleep;
use tokio_tungstenite::tungstenite;

/// One `herenow` process, killed on drop.
struct Herenow {
    child: Child,
    addr: String,
}

impl Herenow {
    /// Start `command` (the binary, maybe behind `prlimit`) and read its address.
    fn spawn(mut command: Command) -> Herenow {
        let mut child = command
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn herenow");
        let addr = common::listening_address(&mut child);
        Herenow { child, addr }
    }

    fn ws_url(&self, room: &str) -> String {
        format!("ws://{}/server/ws/{room}", self.addr)
    }

    async fn readyz(&self) -> Value {
        let (status, body) = common::http_get(self.addr.parse().unwrap(), "/server/readyz").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Herenow {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The binary with an environment free of the caller's settings (a developer's PORT or
/// REDIS_URL must not change what a test sees) and env files off.
fn herenow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herenow"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HERENOW_DOTENV", "0");
    c
}

/// Try an upgrade; `Err(status)` when the server answers HTTP instead.
async fn try_connect(url: &str) -> Result<TestClient, u16> {
    match TestClient::try_connect(url).await {
        Ok(c) => Ok(c),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

// ---- the open-files limit ------------------------------------------------------------

/// Started under `prlimit --nofile=100:128`, the server raises its soft limit to the hard
/// one and takes 128 - 64 = 64 sockets: the next upgrade gets 503, the open sockets keep
/// working, and one is accepted again once a few have closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_past_the_open_files_limit_get_503_and_the_open_ones_keep_working() {
    const SOFT: u64 = 100;
    const HARD: u64 = 128;
    let expected = herenow::capacity::sockets_for(HARD);
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={SOFT}:{HARD}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_herenow"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HERENOW_DOTENV", "0");
    let server = Herenow::spawn(cmd);
    let ready = server.readyz().await;
    assert_eq!(ready["sockets"]["max"], json!(expected), "{ready}");

    // Fill every place; each socket is a member of the room.
    let url = server.ws_url("full");
    let mut open = Vec::new();
    for i in 0..expected {
        let mut c = try_connect(&url)
            .await
            .unwrap_or_else(|s| panic!("socket {i} refused with {s} before the limit"));
        c.hello(&format!("m{i}"), 2).await;
        open.push(c);
    }
    let last = open.last_mut().unwrap();
    last.wait("everyone", |c| c.view.users.len() == expected)
        .await;

    // Past the limit: HTTP 503, several times over, and the server stays up.
    for _ in 0..5 {
        assert_eq!(try_connect(&url).await.err(), Some(503));
    }
    let ready = server.readyz().await;
    assert_eq!(ready["sockets"]["open"], json!(expected), "{ready}");
    assert!(
        ready["sockets"]["refused"].as_u64().unwrap() >= 5,
        "{ready}"
    );

    // The open sockets still work: pings are answered, and a leave reaches everyone.
    for c in [0, expected / 2, expected - 1] {
        open[c].send(json!({"type": "ping"})).await;
        open[c].wait("pong", |c| c.pongs > 0).await;
    }
    for c in open.drain(..3) {
        c.close(1000).await;
    }
    let first = &mut open[0];
    first
        .wait("three left", |c| c.view.users.len() == expected - 3)
        .await;

    // Places are given back: new sockets are accepted again, up to the limit.
    let deadline = Instant::now() + WAIT;
    let mut again = loop {
        match try_connect(&url).await {
            Ok(c) => break c,
            Err(503) if Instant::now() < deadline => sleep(Duration::from_millis(50)).await,
            Err(s) => panic!("no socket accepted after three closed: {s}"),
        }
    };
    again.hello("late", 2).await;
    again
        .wait("the room", |c| c.view.users.len() == expected - 2)
        .await;
}

// ---- herenow healthcheck ---------------------------------------------------------------

fn healthcheck(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = herenow();
    c.arg("healthcheck").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run herenow healthcheck")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_on_a_running_server_and_fails_with_a_reason_otherwise() {
    let mut server = Herenow::spawn(herenow());
    let port = server.addr.rsplit(':').next().unwrap().to_string();

    // As a container runs it: the same PORT as the server, HOST left at 0.0.0.0.
    let out = healthcheck(&[("PORT", &port)], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": 200"));

    let readyz = format!("http://{}/server/readyz", server.addr);
    let out = healthcheck(&[], &["--url", &readyz]);
    assert!(out.status.success(), "{out:?}");

    let missing = format!("http://{}/server/nothing-here", server.addr);
    let out = healthcheck(&[], &["--url", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("answered HTTP 404"));

    let out = healthcheck(&[], &["--url", "https://example.invalid/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));

    server.stop();
    let out = healthcheck(&[("PORT", &port)], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_gives_up_on_a_silent_server_within_its_timeout() {
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/server/healthz", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = healthcheck(&[], &["--url", &url, "--timeout-ms", "300"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("within 300 ms"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- .env.local, then .env -------------------------------------------------------------

/// A fresh working directory with the given env files.
fn workdir(test: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herenow-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

/// Start the binary in `dir` with `env` (env files on unless `env` says otherwise) and
/// return what `/server/readyz` says, with the instance name from the store's health.
async fn ready_in(dir: &Path, env: &[(&str, &str)]) -> (Herenow, Value) {
    let mut c = herenow();
    c.env_remove("HERENOW_DOTENV").current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let server = Herenow::spawn(c);
    let ready = server.readyz().await;
    (server, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_local_then_env_fill_in_what_is_not_set_and_dotenv_0_turns_them_off() {
    let files = [
        (
            ".env.local",
            "# as `vercel env pull` writes it\nINSTANCE_ID=\"from-env-local\"\nVERCEL=\"1\"\n",
        ),
        (
            ".env",
            "INSTANCE_ID=from-env\nREDIS_PREFIX=from-env\nVERCEL=0\n",
        ),
    ];
    let dir = workdir("files", &files);

    // .env.local wins over .env; .env fills in the rest.
    let (_s, ready) = ready_in(&dir, &[]).await;
    assert_eq!(ready["instance"], json!("from-env-local"), "{ready}");
    assert_eq!(ready["warnings"].as_array().unwrap().len(), 1, "{ready}");

    // A variable already set is never overridden by a file.
    let (_s, ready) = ready_in(&dir, &[("INSTANCE_ID", "from-shell")]).await;
    assert_eq!(ready["instance"], json!("from-shell"), "{ready}");

    // Off: neither file is read (VERCEL from .env.local would have warned).
    for off in ["0", "false"] {
        let (_s, ready) = ready_in(&dir, &[("HERENOW_DOTENV", off)]).await;
        assert_ne!(ready["instance"], json!("from-env-local"), "{ready}");
        assert_eq!(ready["warnings"], json!([]), "{ready}");
    }
    let mut off = herenow();
    off.current_dir(&dir).arg("--dotenv").arg("false");
    let server = Herenow::spawn(off);
    assert_eq!(server.readyz().await["warnings"], json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_url_in_env_local_is_honoured() {
    require_redis();
    let redis = RedisServer::start();
    let dir = workdir(
        "redis",
        &[(".env.local", &format!("REDIS_URL=\"{}\"\n", redis.url()))],
    );
    let (_s, mut ready) = ready_in(&dir, &[]).await;
    let deadline = Instant::now() + WAIT;
    while ready["store"]["connected"] != json!(true) && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
        ready = _s.readyz().await;
    }
    assert_eq!(ready["store"]["kind"], json!("redis"), "{ready}");
    assert_eq!(ready["store"]["connected"], json!(true), "{ready}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_env_file_stops_the_start_with_its_name() {
    let dir = workdir("broken", &[(".env", "NOT A VALID LINE\n")]);
    let mut c = herenow();
    c.env_remove("HERENOW_DOTENV").current_dir(&dir);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(".env"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
