//! A local JWKS endpoint for the identity tests: publishes some of the test keys in
//! `tests/keys/`, can rotate them, go down (HTTP 503) and count its fetches; and signing
//! helpers for tokens made with those keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The HS256 secret the identity tests' servers use.
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

fn key_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

/// The public JWK of test key `name` (`rsa1`, `rsa2`, `ec1`, `ed1`).
pub fn jwk(name: &str) -> Value {
    let text = std::fs::read_to_string(key_dir().join(format!("{name}.jwk.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The algorithm a test key signs with.
pub fn alg_of(name: &str) -> Algorithm {
    match &name[..2] {
        "rs" => Algorithm::RS256,
        "ec" => Algorithm::ES256,
        "ed" => Algorithm::EdDSA,
        other => panic!("no test key family {other}"),
    }
}

/// Sign `claims` with test key `name`, its name as the `kid`.
pub fn sign(name: &str, claims: &Value) -> String {
    sign_as(name, Some(name), alg_of(name), claims)
}

/// Sign with test key `name`, an explicit `kid` (or none) and algorithm.
pub fn sign_as(name: &str, kid: Option<&str>, alg: Algorithm, claims: &Value) -> String {
    let pem = std::fs::read(key_dir().join(format!("{name}.pem"))).unwrap();
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            EncodingKey::from_rsa_pem(&pem).unwrap()
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        other => panic!("not a test key algorithm: {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// An HS256 token with [`SECRET`].
pub fn hs256(claims: &Value) -> String {
    hs256_with(SECRET, claims)
}

pub fn hs256_with(secret: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

/// Seconds since the epoch, `offset` from now.
pub fn at(offset: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now + offset
}

/// Claims of a user `sub`, valid for an hour, with extra claims merged in.
pub fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({"sub": sub, "exp": at(3600)});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

#[derive(Default)]
struct JwksState {
    keys: Mutex<Vec<Value>>,
    down: AtomicBool,
    fetches: AtomicUsize,
}

/// The JWKS endpoint, served on a free loopback port until dropped.
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<JwksState>,
    _shutdown: oneshot::Sender<()>,
}

impl JwksServer {
    /// Publish the test keys named in `keys`.
    pub async fn start(keys: &[&str]) -> JwksServer {
        let state = Arc::new(JwksState::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_keys))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        let server = JwksServer {
            addr,
            state,
            _shutdown: tx,
        };
        server.publish(keys);
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// Replace the published keys (a rotation).
    pub fn publish(&self, keys: &[&str]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|k| jwk(k)).collect();
    }

    /// Answer 503 from now on (or again serve keys).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, SeqCst);
    }

    /// Requests received so far.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(SeqCst)
    }
}

async fn serve_keys(State(state): State<Arc<JwksState>>) -> Response {
    state.fetches.fetch_add(1, SeqCst);
    if state.down.load(SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let keys = state.keys.lock().unwrap().clone();
    Json(json!({ "keys": keys })).into_response()
}
