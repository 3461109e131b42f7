//! Hostile input, tried by machine: thousands of generated cases against a real server
//! (AUTH=optional with an HS256 secret and a local JWKS, per-address limits off) while a
//! normal client in another room keeps working.
//!
//! - frames: arbitrary bytes, text and JSON, and well-formed messages with nasty fields;
//! - tokens: random, truncated, oversized, bit-flipped, `alg: none`, other algorithms than
//!   the key's, huge and made-up `kid`s, arbitrary headers and claims (validly signed);
//! - upgrade requests: arbitrary methods, paths, query strings and headers, and raw bytes.
//!
//! Each gets its defined answer: every frame the server sends decodes as a server message,
//! every error code and close code is one the protocol documents, a hostile token never
//! joins anyone, and the server answers every HTTP request (or closes a garbage one).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::jwks::{claims, hs256, sign_as, JwksServer, SECRET};
use common::{test_config_with, TestClient, TestServer, WAIT};
use herenow::protocol::ErrorCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// Close codes the server may send.
const CLOSES: [u16; 7] = [1001, 1008, 1009, 1012, 1013, 4401, 4403];
/// Cases per family (proptest's shrinking adds some on a failure).
const FRAME_CASES: u32 = 1500;
const TOKEN_CASES: u32 = 1200;
const UPGRADE_CASES: u32 = 800;
/// How often the calm client is checked.
const CHECK_EVERY: usize = 100;

struct World {
    rt: Runtime,
    server: TestServer,
    jwks: JwksServer,
    started: std::time::Instant,
    calm: tokio::sync::Mutex<TestClient>,
    checks: std::sync::atomic::AtomicUsize,
}

fn world() -> Arc<World> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, jwks, calm) = rt.block_on(async {
        let jwks = JwksServer::start(&["rsa1", "ec1", "ed1"]).await;
        let server = TestServer::start(test_config_with(&[
            "--auth", "optional",
            "--auth-secret", SECRET,
            "--auth-jwks-url", &jwks.url(),
            "--auth-jwks-refresh-ms", "200",
            "--max-sockets-per-ip", "0",
            "--handshakes-per-ip-per-sec", "0",
            "--rate-per-sec", "1000",
            "--rate-burst", "1000",
            "--stale-ms", "30000",
            "--heartbeat-ms", "5000",
            "--ping-ms", "15000",
        ]))
        .await;
        let mut calm = TestClient::connect(&server.ws_url("calm")).await;
        calm.id = "calm".into();
        calm.send(json!({"type": "hello", "id": "calm", "proto": 2, "token": hs256(&claims("calm", json!({})))}))
            .await;
        calm.wait("joined", |c| c.presence.is_some()).await;
        (server, jwks, calm)
    });
    Arc::new(World {
        rt,
        server,
        jwks,
        started: std::time::Instant::now(),
        calm: tokio::sync::Mutex::new(calm),
        checks: Default::default(),
    })
}

impl World {
    /// Every [`CHECK_EVERY`] cases: the calm client's state change comes back to it.
    async fn maybe_check_calm(&self) {
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(CHECK_EVERY) {
            self.check_calm(n).await;
        }
    }

    async fn check_calm(&self, n: usize) {
        let mut calm = self.calm.lock().await;
        let me = calm.presence.as_ref().unwrap().self_id.clone().unwrap();
        calm.send(json!({"type": "state", "state": {"n": n}})).await;
        let want = format!(r#"{{"n":{n}}}"#);
        calm.wait("its own state back", |c| {
            c.user(&me).is_some_and(|u| u.state.get() == want)
        })
        .await;
        assert!(
            calm.closed.is_none() && calm.errors.is_empty(),
            "{:?}",
            calm.errors
        );
    }
}

/// Check what a socket received: decodable (TestClient panics otherwise), documented
/// close codes only.
fn check_answers(c: &TestClient) -> Result<(), TestCaseError> {
    if let Some(code) = c.closed {
        prop_assert!(CLOSES.contains(&code) || code == 1006, "close {code}");
    }
    for e in &c.errors {
        prop_assert!(ErrorCode::ALL.contains(e));
    }
    Ok(())
}

/// Send a marker every socket answers (`unknown_type`), and fold until it is answered or
/// the socket is closed: everything before it has had its answer then.
async fn settle_with_marker(c: &mut TestClient) {
    if c.closed.is_some() {
        return;
    }
    let before = c
        .errors
        .iter()
        .filter(|e| **e == ErrorCode::UnknownType)
        .count();
    c.send_text(r#"{"type":"marker"}"#.into()).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answered = c
            .errors
            .iter()
            .filter(|e| **e == ErrorCode::UnknownType)
            .count()
            > before;
        if answered || c.closed.is_some() {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no answer to the marker: errors {:?}",
            c.errors
        );
        if !c.recv_one(left).await && c.closed.is_some() {
            return;
        }
    }
}

// ---- frames ---------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("hello"),
            Just("ping"),
            Just("state"),
            Just("event"),
            Just("sync"),
            Just("auth"),
            Just("typing")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("id".to_string()),
                    Just("proto".to_string()),
                    Just("token".to_string()),
                    Just("user".to_string()),
                    Just("state".to_string()),
                    Just("event".to_string()),
                    Just("data".to_string()),
                    Just("name".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum Frame {
    Binary(Vec<u8>),
    Text(String),
    Json(Value),
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Binary),
        ".{0,300}".prop_map(Frame::Text),
        // Near the frame limit and over it.
        (4000usize..4200).prop_map(|n| Frame::Text("x".repeat(n))),
        json_value().prop_map(Frame::Json),
        // Well-formed messages with hostile fields.
        (json_value(), json_value())
            .prop_map(|(a, b)| Frame::Json(json!({"type": "hello", "id": a, "proto": b}))),
        ("[A-Za-z0-9_-]{1,130}", json_value(), json_value()).prop_map(|(id, user, state)| {
            Frame::Json(
                json!({"type": "hello", "id": id, "proto": 2, "user": user, "state": state}),
            )
        }),
        json_value().prop_map(|s| Frame::Json(json!({"type": "state", "state": s}))),
        (".{0,40}", json_value())
            .prop_map(|(e, d)| Frame::Json(json!({"type": "event", "event": e, "data": d}))),
        json_value().prop_map(|t| Frame::Json(json!({"type": "auth", "token": t}))),
    ]
}

#[test]
fn hostile_frames_get_their_answers_and_disturb_nobody() {
    let w = world();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: FRAME_CASES,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let strategy = (prop::collection::vec(frame(), 1..6), any::<bool>());
    runner
        .run(&strategy, |(frames, join_first)| {
            w.rt.block_on(async {
                let mut c = TestClient::connect(&w.server.ws_url("rough")).await;
                if join_first {
                    c.hello("rough-tab", 2).await;
                }
                for f in &frames {
                    if c.closed.is_some() {
                        break;
                    }
                    match f {
                        Frame::Binary(b) => c.send_binary(b.clone()).await,
                        Frame::Text(t) => c.try_send_text(t.clone()).await,
                        Frame::Json(v) => c.try_send_text(v.to_string()).await,
                    }
                }
                settle_with_marker(&mut c).await;
                check_answers(&c)?;
                w.maybe_check_calm().await;
                Ok(())
            })
        })
        .unwrap();
    w.rt.block_on(w.check_calm(usize::MAX / 2));
}

// ---- tokens ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Hostile {
    Random(String),
    Segments(Vec<String>),
    Truncated(usize),
    Flipped(usize),
    AlgNone(String),
    OtherAlgorithm(u8),
    HugeKid(usize),
    MadeUpKid(String),
    Header(Value),
    SignedClaims(Value),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        ".{0,200}".prop_map(Hostile::Random),
        prop::collection::vec("[A-Za-z0-9_=+/-]{0,300}", 0..6).prop_map(Hostile::Segments),
        (0usize..400).prop_map(Hostile::Truncated),
        (0usize..400).prop_map(Hostile::Flipped),
        prop_oneof![
            Just("none"),
            Just("None"),
            Just("NONE"),
            Just("nOnE"),
            Just("")
        ]
        .prop_map(|s| Hostile::AlgNone(s.to_string())),
        (0u8..6).prop_map(Hostile::OtherAlgorithm),
        (1usize..4000).prop_map(Hostile::HugeKid),
        "[ -~]{1,64}".prop_map(Hostile::MadeUpKid),
        json_value().prop_map(Hostile::Header),
        json_value().prop_map(Hostile::SignedClaims),
    ]
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// The token text, and whether it could be valid (only validly signed random claims can).
fn make_token(h: &Hostile) -> (String, bool) {
    let good = claims("hostile-test", json!({"name": "H"}));
    let valid = hs256(&good);
    match h {
        Hostile::Random(s) => (s.clone(), false),
        Hostile::Segments(parts) => (parts.join("."), false),
        Hostile::Truncated(n) => (valid[..(*n).min(valid.len() - 1)].to_string(), false),
        Hostile::Flipped(i) => {
            let mut bytes = valid.into_bytes();
            let i = i % bytes.len();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            // A flip in the header or claims may still decode: it is then a bad signature.
            (String::from_utf8(bytes).unwrap(), false)
        }
        Hostile::AlgNone(alg) => (
            format!(
                "{}.{}.",
                b64(&json!({"alg": alg, "typ": "JWT"})),
                b64(&good)
            ),
            false,
        ),
        Hostile::OtherAlgorithm(which) => {
            let secret = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
            let token = match which {
                0 => jsonwebtoken::encode(&Header::new(Algorithm::HS384), &good, &secret).unwrap(),
                1 => jsonwebtoken::encode(&Header::new(Algorithm::HS512), &good, &secret).unwrap(),
                2 => sign_as("rsa1", Some("ec1"), Algorithm::RS256, &good),
                3 => sign_as("ec1", Some("rsa1"), Algorithm::ES256, &good),
                4 => {
                    let n = common::jwks::jwk("rsa1")["n"].as_str().unwrap().to_owned();
                    jsonwebtoken::encode(
                        &Header::new(Algorithm::HS256),
                        &good,
                        &EncodingKey::from_secret(n.as_bytes()).unwrap(),
                    )
                    .unwrap()
                }
                _ => sign_as("rsa1", Some("rsa1"), Algorithm::PS256, &good),
            };
            (token, false)
        }
        Hostile::HugeKid(n) => (
            sign_as("rsa1", Some(&"k".repeat(*n)), Algorithm::RS256, &good),
            false,
        ),
        Hostile::MadeUpKid(kid) => (sign_as("ed1", Some(kid), Algorithm::EdDSA, &good), false),
        Hostile::Header(h) => (format!("{}.{}.c2ln", b64(h), b64(&good)), false),
        Hostile::SignedClaims(c) => (hs256(c), true),
    }
}

#[test]
fn hostile_tokens_never_join_and_get_their_answers() {
    let w = world();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: TOKEN_CASES,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let strategy = (hostile(), 0u8..3);
    runner
        .run(&strategy, |(h, how)| {
            let (token, may_be_valid) = make_token(&h);
            // An empty token is no token: anonymous, which AUTH=optional lets in.
            let may_be_valid = may_be_valid || token.is_empty();
            w.rt.block_on(async {
                let room = w.server.ws_url("rough");
                match how {
                    // In hello.
                    0 => {
                        let mut c = TestClient::connect(&room).await;
                        c.try_send_text(json!({"type": "hello", "id": "t", "proto": 2, "token": token}).to_string())
                            .await;
                        settle_with_marker(&mut c).await;
                        check_answers(&c)?;
                        if !may_be_valid {
                            prop_assert!(c.presence.is_none(), "{h:?} joined");
                            prop_assert!(matches!(c.closed, Some(4401 | 4403 | 1009)), "{h:?}: close {:?}, errors {:?}", c.closed, c.errors);
                        }
                    }
                    // On the URL.
                    1 => {
                        let url = format!("{room}?token={}", urlencode(&token));
                        match TestClient::connect_with(&url, &[]).await {
                            Ok(mut c) => {
                                c.hello("t", 2).await;
                                settle_with_marker(&mut c).await;
                                check_answers(&c)?;
                                if !may_be_valid {
                                    prop_assert!(c.presence.is_none(), "{h:?} joined from the URL");
                                }
                            }
                            // A URL too long for the HTTP layer is refused before the upgrade.
                            Err(status) => prop_assert!(matches!(status, 400 | 414 | 431), "{status}"),
                        }
                    }
                    // As a refresh of a verified socket: refused, and the socket stays.
                    _ => {
                        let mut c = TestClient::connect(&room).await;
                        c.send(json!({"type": "hello", "id": "t", "proto": 2, "token": hs256(&claims("refresher", json!({})))}))
                            .await;
                        c.wait("joined", |c| c.presence.is_some()).await;
                        c.try_send_text(json!({"type": "auth", "token": token}).to_string()).await;
                        settle_with_marker(&mut c).await;
                        check_answers(&c)?;
                        if !may_be_valid {
                            prop_assert!(
                                c.closed.is_none() || c.closed == Some(1009),
                                "{h:?}: a bad refresh closed the socket ({:?})",
                                c.closed
                            );
                        }
                    }
                }
                w.maybe_check_calm().await;
                Ok(())
            })
        })
        .unwrap();
    w.rt.block_on(w.check_calm(usize::MAX / 3));
    // Hundreds of made-up and huge kids cost the JWKS endpoint at most one fetch per
    // AUTH_JWKS_REFRESH_MS (200 ms here), plus the one at start.
    let intervals = w.started.elapsed().as_millis() as usize / 200 + 2;
    assert!(
        w.jwks.fetches() <= intervals,
        "{} JWKS fetches in {:?}",
        w.jwks.fetches(),
        w.started.elapsed()
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- upgrade requests -----------------------------------------------------------------

#[derive(Clone, Debug)]
enum Request {
    Http {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        handshake: bool,
    },
    Raw(Vec<u8>),
}

fn request() -> impl Strategy<Value = Request> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("OPTIONS".to_string()),
        Just("HEAD".to_string()),
        "[A-Z]{1,8}",
    ];
    let path = (
        prop_oneof![
            Just("/server/ws/"),
            Just("/server/ws"),
            Just("/server/rooms/"),
            Just("/server/metrics"),
            Just("/server/dev/token"),
            Just("/server/"),
            Just("/"),
            Just("/server/ws/lobby/../.."),
        ],
        "[a-zA-Z0-9%./_~-]{0,80}",
        prop::option::of("[a-zA-Z0-9%=&._~+-]{0,200}"),
    )
        .prop_map(|(p, rest, q)| match q {
            Some(q) => format!("{p}{rest}?{q}"),
            None => format!("{p}{rest}"),
        });
    let header = (
        prop_oneof![
            Just("Origin"),
            Just("Host"),
            Just("X-Forwarded-For"),
            Just("X-Forwarded-Host"),
            Just("Sec-WebSocket-Version"),
            Just("Sec-WebSocket-Key"),
            Just("Connection"),
            Just("Upgrade"),
            Just("Authorization"),
            Just("Content-Length"),
        ]
        .prop_map(str::to_string)
        .boxed()
        .prop_union("[A-Za-z-]{1,20}".boxed()),
        "[ -~]{0,120}",
    )
        .prop_map(|(k, v)| (k, v));
    prop_oneof![
        4 => (method, path, prop::collection::vec(header, 0..8), any::<bool>()).prop_map(|(m, p, h, hs)| Request::Http {
            method: m,
            path: p,
            headers: h,
            handshake: hs,
        }),
        1 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Request::Raw),
    ]
}

/// A request the server cannot complete from what we send: raw bytes, or a body.
fn promises_more(req: &Request) -> bool {
    match req {
        Request::Raw(_) => true,
        Request::Http { headers, .. } => headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        }),
    }
}

/// Send the request; the status answered, or `None` when the server closed the
/// connection without one (garbage).
async fn send_request(addr: SocketAddr, req: &Request) -> Option<u16> {
    let bytes = match req {
        Request::Raw(b) => b.clone(),
        Request::Http {
            method,
            path,
            headers,
            handshake,
        } => {
            let mut s = format!("{method} {path} HTTP/1.1\r\n");
            if *handshake {
                s.push_str("Host: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
            }
            for (k, v) in headers {
                s.push_str(&format!("{k}: {v}\r\n"));
            }
            s.push_str("\r\n");
            s.into_bytes()
        }
    };
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(&bytes).await;
    // Garbage, or a promised body that will not come: say so by closing our side. (Not
    // for the others: hyper drops a request whose client half-closed before the answer.)
    if promises_more(req) {
        let _ = stream.shutdown().await;
    }
    let mut buf = Vec::new();
    // A request the server waits on (a body it was promised) ends at our shutdown.
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while buf.len() < 16 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 5 s to {req:?}");
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok())
}

#[test]
fn arbitrary_upgrade_requests_get_an_answer() {
    let w = world();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: UPGRADE_CASES,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&request(), |req| {
            w.rt.block_on(async {
                let status = send_request(w.server.addr, &req).await;
                match (&req, status) {
                    (_, Some(status)) => prop_assert!(
                        matches!(
                            status,
                            101 | 200
                                | 400
                                | 401
                                | 403
                                | 404
                                | 405
                                | 413
                                | 414
                                | 426
                                | 429
                                | 431
                                | 501
                                | 505
                        ),
                        "{status} for {req:?}"
                    ),
                    // Garbage bytes, or a request promising a body that never came, may
                    // just be closed; a well-formed request always gets a status.
                    (req, None) => prop_assert!(promises_more(req), "no status for {req:?}"),
                }
                w.maybe_check_calm().await;
                Ok(())
            })
        })
        .unwrap();
    w.rt.block_on(w.check_calm(usize::MAX / 4));
}
