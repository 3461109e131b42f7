//! Test harness: a [`TestServer`] on port 0 (shut down on drop) and a [`TestClient`]
//! that folds what the server sends into a roster, waiting a bounded time for a state.
#![allow(dead_code)]

pub mod jwks;
pub mod redis;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herenow::config::Config;
use herenow::protocol::{Diff, ErrorCode, Presence, RoomEvent, ServerMsg};
use herenow::room::ClientView;
use herenow::store::PresenceStore;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The address a spawned `herenow` prints first (`herenow listening on http://ADDR`),
/// read from its piped stdout.
pub fn listening_address(child: &mut std::process::Child) -> String {
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("herenow prints its address");
    line.trim()
        .rsplit("http://")
        .next()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
}

/// How long any wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// Short timings so time-based behaviour takes milliseconds, not seconds.
pub fn test_config() -> Config {
    Config::parse_from_env_free([
        "herenow",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--grace-ms",
        "300",
        "--stale-ms",
        "1500",
        "--heartbeat-ms",
        "200",
        "--lease-ms",
        "1000",
        "--reap-ms",
        "200",
        "--ping-ms",
        "500",
        "--typing-timeout-ms",
        "400",
        "--hello-timeout-ms",
        "500",
        "--drain-ms",
        "1000",
    ])
}

/// [`test_config`]'s short timings with more flags (which win over them).
pub fn test_config_with(extra: &[&str]) -> Config {
    let defaults = [
        ("--host", "127.0.0.1"),
        ("--port", "0"),
        ("--grace-ms", "300"),
        ("--stale-ms", "1500"),
        ("--heartbeat-ms", "200"),
        ("--lease-ms", "1000"),
        ("--reap-ms", "200"),
        ("--ping-ms", "500"),
        ("--typing-timeout-ms", "400"),
        ("--hello-timeout-ms", "500"),
        ("--drain-ms", "1000"),
    ];
    let mut args: Vec<String> = vec!["herenow".into()];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::parse_from_env_free(args);
    config.check().expect("a valid test configuration");
    config
}

pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        Self::start_inner(config, None).await
    }

    pub async fn start_with_store(config: Config, store: Arc<dyn PresenceStore>) -> TestServer {
        Self::start_inner(config, Some(store)).await
    }

    async fn start_inner(config: Config, store: Option<Arc<dyn PresenceStore>>) -> TestServer {
        let listener = TcpListener::bind((config.host, config.port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(async move {
            match store {
                Some(store) => {
                    herenow::http::serve_with_store(listener, config, store, shutdown).await
                }
                None => herenow::serve(listener, config, shutdown).await,
            }
        });
        TestServer {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn ws_url(&self, room: &str) -> String {
        format!("ws://{}/server/ws/{room}", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Graceful shutdown (as on SIGTERM), waiting for the server to return.
    pub async fn stop(mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops in time")
                .unwrap()
                .unwrap();
        }
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A minimal HTTP GET (status, body): enough for the server's few JSON endpoints.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_with(addr, path, &[]).await
}

/// [`http_get`] with extra request headers.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("http answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    // Bodies here are small; chunked encoding shows as one chunk: strip its frame.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut lines = body.splitn(2, "\r\n");
        let _size = lines.next();
        lines
            .next()
            .unwrap_or("")
            .trim_end_matches("\r\n0\r\n\r\n")
            .to_string()
    } else {
        body
    };
    (status, body)
}

/// Send a WebSocket upgrade request for `path` with `headers` (a valid handshake unless
/// they override it) and return the response's status: 101 if it upgraded.
pub async fn upgrade_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    for (k, v) in [
        ("Host", "test"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ] {
        if !has(k) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < 12 {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf[got..]))
            .await
            .expect("an answer in time")
            .unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0)
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client that remembers everything it was sent.
pub struct TestClient {
    ws: Option<Ws>,
    pub id: String,
    /// Protocol 2 view, folded from snapshots and diffs.
    pub view: ClientView,
    /// Latest protocol-1 (or protocol-2) `presence`.
    pub presence: Option<Presence>,
    pub diffs: Vec<Diff>,
    pub snapshots: usize,
    pub events: Vec<RoomEvent>,
    pub errors: Vec<ErrorCode>,
    pub pongs: usize,
    /// Close code received from the server, if any.
    pub closed: Option<u16>,
    /// Diffs that did not apply (the client then sent `sync`).
    pub gaps: usize,
}

impl TestClient {
    pub async fn connect(url: &str) -> TestClient {
        TestClient::try_connect(url).await.expect("connect")
    }

    /// Connect, or the handshake's error (an HTTP answer instead of 101, say).
    pub async fn try_connect(
        url: &str,
    ) -> Result<TestClient, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")?;
        Ok(TestClient::connect_ws(ws))
    }

    /// Connect with extra request headers (Origin, X-Forwarded-For): the client, or the
    /// HTTP status the upgrade was refused with.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<TestClient, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect in time")
        {
            Ok((ws, _)) => Ok(TestClient::connect_ws(ws)),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(other) => panic!("connect: {other}"),
        }
    }

    fn connect_ws(ws: Ws) -> TestClient {
        TestClient {
            ws: Some(ws),
            id: String::new(),
            view: ClientView::default(),
            presence: None,
            diffs: Vec::new(),
            snapshots: 0,
            events: Vec::new(),
            errors: Vec::new(),
            pongs: 0,
            closed: None,
            gaps: 0,
        }
    }

    /// Wait until the server closes the socket; its close code.
    pub async fn wait_closed(&mut self) -> u16 {
        self.wait("the server's close", |c| c.closed.is_some())
            .await;
        self.closed.unwrap()
    }

    /// Connect, say hello, and wait for the first roster.
    pub async fn join(url: &str, id: &str, proto: u8) -> TestClient {
        let mut c = TestClient::connect(url).await;
        c.hello(id, proto).await;
        c.wait("first roster", |c| c.presence.is_some()).await;
        c
    }

    pub async fn hello(&mut self, id: &str, proto: u8) {
        self.id = id.to_string();
        let msg = if proto == 1 {
            json!({"type": "hello", "id": id})
        } else {
            json!({"type": "hello", "id": id, "proto": proto})
        };
        self.send(msg).await;
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_text(msg.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        let ws = self.ws.as_mut().expect("open");
        ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Send a text frame, ignoring a failure (the server may have closed the socket).
    pub async fn try_send_text(&mut self, text: String) {
        if let Some(ws) = self.ws.as_mut() {
            let _ = ws.send(Message::Text(text.into())).await;
        }
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        let ws = self.ws.as_mut().expect("open");
        let _ = ws.send(Message::Binary(bytes.into())).await;
    }

    /// Close with `code` (1000 = leave now) and wait for the server's answer.
    pub async fn close(mut self, code: u16) {
        if let Some(mut ws) = self.ws.take() {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            };
            let _ = ws.close(Some(frame)).await;
            let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
        }
    }

    /// Vanish without a close frame (a crashed laptop, a cut cable).
    pub fn vanish(mut self) {
        if let Some(ws) = self.ws.take() {
            std::mem::forget(ws); // the TCP connection stays open but silent
        }
    }

    /// Drop the connection without a close frame (the server sees an abnormal close).
    pub fn drop_connection(mut self) {
        self.ws.take();
    }

    fn fold(&mut self, msg: ServerMsg) -> Option<Value> {
        match msg {
            ServerMsg::Presence(p) => {
                self.snapshots += 1;
                if p.users.is_some() {
                    self.view.apply_snapshot(&p);
                }
                self.presence = Some(p);
            }
            ServerMsg::Diff(d) => {
                if !self.view.apply_diff(&d) {
                    self.gaps += 1;
                    return Some(json!({"type": "sync"}));
                }
                // Keep `presence` in step so protocol-agnostic checks can read it.
                if let Some(p) = self.presence.as_mut() {
                    p.version = d.version;
                    let mut users: Vec<_> = self.view.users.values().cloned().collect();
                    users.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
                    p.members = users.iter().map(|u| u.id.clone()).collect();
                    p.count = users.len();
                    p.users = Some(users);
                }
                self.diffs.push(d);
            }
            ServerMsg::Event(e) => self.events.push(e),
            ServerMsg::Pong => self.pongs += 1,
            ServerMsg::Error(e) => self.errors.push(e.code),
        }
        None
    }

    /// Receive one message (or the close) within `limit`; false on timeout or end.
    pub async fn recv_one(&mut self, limit: Duration) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        match tokio::time::timeout(limit, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let msg: ServerMsg = serde_json::from_str(&t)
                    .unwrap_or_else(|e| panic!("server sent undecodable {t}: {e}"));
                if let Some(reply) = self.fold(msg) {
                    self.send(reply).await;
                }
                true
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                self.closed = Some(frame.map_or(1005, |f| u16::from(f.code)));
                true
            }
            Ok(Some(Ok(_))) => true,
            Ok(Some(Err(_))) | Ok(None) => {
                self.closed.get_or_insert(1006);
                self.ws = None;
                false
            }
            Err(_) => false,
        }
    }

    /// Fold messages until `pred` holds; panics after [`WAIT`].
    pub async fn wait(&mut self, what: &str, pred: impl Fn(&TestClient) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !pred(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: timed out waiting for {what}; members {:?}, errors {:?}, closed {:?}",
                    self.id,
                    self.members(),
                    self.errors,
                    self.closed
                );
            }
            if !self.recv_one(left).await && self.ws.is_none() && !pred(self) {
                panic!(
                    "{}: connection ended while waiting for {what} (close {:?})",
                    self.id, self.closed
                );
            }
        }
    }

    /// Fold whatever arrives within `window` (to check that nothing unwanted does).
    pub async fn settle(&mut self, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || (!self.recv_one(left).await && self.ws.is_none()) {
                return;
            }
        }
    }

    pub fn members(&self) -> Vec<String> {
        self.presence
            .as_ref()
            .map(|p| p.members.iter().map(|m| m.to_string()).collect())
            .unwrap_or_default()
    }

    pub fn has(&self, ids: &[&str]) -> bool {
        let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        want.sort();
        let mut got = self.members();
        got.sort();
        got == want
    }

    pub fn version(&self) -> u64 {
        self.presence.as_ref().map_or(0, |p| p.version)
    }

    pub fn user(&self, id: &str) -> Option<&herenow::protocol::User> {
        self.view.users.get(id).map(|u| &**u)
    }
}
