//! The router and [`serve`]: everything lives under `/server` (Vercel forwards the
//! prefix as is), and every other GET serves the demo app when it is built.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};
use tracing::Instrument;

use crate::access::{parse_cidrs, Access, AddressLimits, Origins};
use crate::auth::{AuthMode, Authenticator};
use crate::capacity::Capacity;
use crate::config::Config;
use crate::hub::{Hub, HubSettings};
use crate::metrics::Metrics;
use crate::protocol::RoomId;
use crate::session::{self, SessionSettings};
use crate::store::{self, PresenceStore};
use crate::ws;

#[derive(Clone)]
struct App {
    hub: Arc<Hub>,
    session: Arc<SessionSettings>,
    max_frame_bytes: usize,
    ready: Arc<AtomicBool>,
    access: Arc<Access>,
    auth: Arc<Authenticator>,
    admin: Arc<Admin>,
    /// Metrics are served on METRICS_ADDR instead of /server/metrics.
    metrics_elsewhere: bool,
    dev_tokens: Option<Arc<DevTokens>>,
    capacity: Arc<Capacity>,
    warnings: Arc<[String]>,
}

/// Who may read the admin endpoints (`/server/rooms/:roomId`, `/server/metrics`).
struct Admin {
    token: Option<String>,
    /// No token and AUTH=required: nobody (the endpoints would leak who is where).
    closed: bool,
}

impl Admin {
    /// `None` when the request may go on, else the 401 to answer.
    fn check(&self, headers: &HeaderMap) -> Option<Response> {
        let unauthorized = |msg: &'static str| {
            let mut res = (StatusCode::UNAUTHORIZED, Json(json!({"error": msg}))).into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            Some(res)
        };
        match &self.token {
            Some(token) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim);
                match given {
                    Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => None,
                    _ => unauthorized("send Authorization: Bearer <ADMIN_TOKEN>"),
                }
            }
            None if self.closed => {
                unauthorized("AUTH=required and no ADMIN_TOKEN is set: admin endpoints are closed")
            }
            None => None,
        }
    }
}

/// Compare secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The development token route's signing settings (`DEV_TOKENS=true`).
struct DevTokens {
    secret: String,
    issuer: Option<String>,
    audience: Option<String>,
}

/// The server without a listener: the router to mount wherever requests arrive (our own
/// listener in [`serve`], the platform's runtime in the Vercel entry point), and
/// [`Server::drain`] to call on shutdown.
pub struct Server {
    app: App,
    static_dir: Option<PathBuf>,
    drain: Duration,
    metrics_addr: Option<SocketAddr>,
}

impl Server {
    /// Build the server for `config` with the store it names (`REDIS_URL`, or memory).
    /// Redis settings that can never work, and settings that do not parse, fail it (the
    /// error holds a [`store::redis::StartError`] for the former). Needs a running Tokio
    /// runtime (the store and the hub start their tasks).
    pub async fn from_config(config: &Config) -> std::io::Result<Server> {
        let store = store::open(config).await.map_err(std::io::Error::other)?;
        Server::with_store(config, store)
    }

    /// Build the server on a given store (tests share one memory backend between servers).
    pub fn with_store(config: &Config, store: Arc<dyn PresenceStore>) -> std::io::Result<Server> {
        let auth_off = config.auth == AuthMode::Off;
        let access = Access {
            origins: Origins::parse(config.allowed_origins.as_deref(), auth_off)
                .map_err(std::io::Error::other)?,
            trusted: parse_cidrs(&config.trusted_proxies).map_err(std::io::Error::other)?,
            limits: Arc::new(AddressLimits::new(
                config.sockets_per_ip(),
                config.handshakes_per_ip(),
                tokio::time::Instant::now(),
            )),
        };
        let warnings: Arc<[String]> = config.warnings().into();
        for warning in warnings.iter() {
            tracing::warn!("{warning}");
        }
        let dev_tokens = match (&config.auth_secret, config.dev_tokens) {
            (Some(secret), true) => {
                tracing::warn!("DEV_TOKENS=true: GET /server/dev/token signs a token for anyone who asks; never enable it in production");
                Some(Arc::new(DevTokens {
                    secret: secret.clone(),
                    issuer: config.auth_issuer.clone(),
                    audience: config.auth_audience.clone(),
                }))
            }
            _ => None,
        };
        let hub = build_hub(config, store);
        let capacity = Capacity::from_open_files_limit();
        tracing::info!(instance = %hub.store().instance(), store = hub.store().health().kind, auth = ?config.auth, max_sockets = capacity.limit(), "starting");
        Ok(Server {
            app: App {
                hub,
                session: Arc::new(SessionSettings::from_config(config)),
                max_frame_bytes: config.max_frame_bytes,
                ready: Arc::new(AtomicBool::new(true)),
                access: Arc::new(access),
                auth: Arc::new(Authenticator::new(config.auth_settings())),
                admin: Arc::new(Admin {
                    token: config.admin_token.clone(),
                    closed: config.auth == AuthMode::Required,
                }),
                metrics_elsewhere: config.metrics_addr.is_some(),
                dev_tokens,
                capacity,
                warnings,
            },
            static_dir: config.static_dir.clone(),
            drain: config.drain(),
            metrics_addr: config.metrics_addr,
        })
    }

    /// Every route: `/server/...` and the demo app (or its placeholder) for the rest.
    /// Serve it with connection info (`into_make_service_with_connect_info::<SocketAddr>`)
    /// so per-address limits know the peer; without it, only `TRUSTED_PROXIES` headers do.
    pub fn router(&self) -> Router {
        router(self.app.clone(), self.static_dir.clone())
    }

    /// Stop taking sockets, close every open one with 1012 (clients reconnect, elsewhere
    /// if need be, and the grace window hides it), and wait up to `DRAIN_MS` for them to
    /// go.
    pub async fn drain(&self) {
        tracing::info!("shutting down: closing sockets with 1012");
        self.app.ready.store(false, Relaxed);
        self.app.hub.drain().await;
        let deadline = tokio::time::Instant::now() + self.drain;
        let metrics = self.app.hub.metrics();
        while metrics.sockets.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Metrics on their own listener (`METRICS_ADDR`), until `stop` turns true.
    async fn serve_metrics(
        &self,
        addr: SocketAddr,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "metrics on their own listener");
        let metrics_router = Router::new()
            .route("/metrics", get(metrics_only))
            .route("/server/metrics", get(metrics_only))
            .with_state(self.app.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, metrics_router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(err) = served {
                tracing::warn!(%err, "metrics listener failed");
            }
        });
        Ok(())
    }
}

/// The one place the hub is built, on `store`.
fn build_hub(config: &Config, store: Arc<dyn PresenceStore>) -> Arc<Hub> {
    let metrics = Arc::new(Metrics::default());
    Hub::new(store, HubSettings::from_config(config), metrics)
}

/// Serve on an already-bound `listener` (tests bind port 0) until `shutdown` resolves,
/// then close every socket with 1012 and return within the drain time. Settings that can
/// never work fail the start (see [`Server::from_config`]).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(listener, Server::from_config(&config).await?, shutdown).await
}

/// [`serve`] with a given store (tests share one memory backend between servers).
pub async fn serve_with_store(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn PresenceStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(listener, Server::with_store(&config, store)?, shutdown).await
}

async fn run(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server.serve(listener, shutdown).await
}

impl Server {
    /// Serve on `listener` until `shutdown` resolves, then drain.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let server = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(addr) = server.metrics_addr {
            server.serve_metrics(addr, stop_rx).await?;
        }
        tracing::info!(addr = %listener.local_addr()?, "serving");
        let router = server.router();
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            server.drain().await;
        })
        .await
    }
}

fn router(app: App, static_dir: Option<PathBuf>) -> Router {
    let mut api = Router::new();
    if app.dev_tokens.is_some() {
        api = api.route("/server/dev/token", get(dev_token));
    }
    let api = api
        .route("/server/ws", get(ws_lobby))
        .route("/server/ws/", get(ws_lobby))
        .route("/server/ws/{*room}", get(ws_room))
        .route("/server/healthz", get(|| async { "ok" }))
        .route("/server/readyz", get(readyz))
        .route("/server/metrics", get(metrics))
        .route("/server/rooms/{*room}", get(room_snapshot))
        .route("/server", get(not_found))
        .route("/server/{*rest}", get(not_found))
        .with_state(app);
    match static_dir {
        Some(dir) if !dir.join("index.html").is_file() => {
            tracing::warn!(dir = %dir.display(), "STATIC_DIR has no index.html (is the demo built?); serving the placeholder page");
            api.fallback(get(placeholder))
        }
        Some(dir) => {
            let index = ServeFile::new(dir.join("index.html"));
            api.fallback_service(ServeDir::new(dir).fallback(index))
        }
        None => api.fallback(get(placeholder)),
    }
}

async fn ws_lobby(State(app): State<App>, req: Request) -> Response {
    upgrade_in(app, RoomId::parse_or_lobby(""), req)
}

async fn ws_room(State(app): State<App>, Path(room): Path<String>, req: Request) -> Response {
    upgrade_in(app, RoomId::parse_or_lobby(&room), req)
}

fn upgrade_in(app: App, room: RoomId, mut req: Request) -> Response {
    if app.hub.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    // Without connection info (a router served some other way), the peer is unknown.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
    let permit = match app
        .access
        .check(peer, req.headers(), tokio::time::Instant::now())
    {
        Ok(permit) => permit,
        Err(refused) => {
            app.hub.metrics().refused(refused);
            return (refused.status(), refused.message()).into_response();
        }
    };
    let (switching, on_upgrade) = match ws::accept(&mut req) {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.into_response(),
    };
    // Held by the socket's task: the place is given back when the socket is gone.
    let Some(capacity) = app.capacity.try_acquire() else {
        return at_capacity(&app.capacity);
    };
    // Browsers cannot set headers on a WebSocket: a token may ride on the URL. It is
    // never logged (the span records the room only).
    let url_token = req.uri().query().and_then(query_token);
    // The WebSocket layer's own hard limit sits above ours, so an oversized frame still
    // reaches the session and gets a clean 1009.
    let config = ws::config(
        app.max_frame_bytes * 4,
        app.session.outbox_bytes.max(64 * 1024) * 2,
    );
    let span = tracing::info_span!("socket", room = %room, id = tracing::field::Empty);
    let (hub, settings, auth) = (app.hub, app.session, app.auth);
    let task = async move {
        // Hold this socket's place in its address's count, and under the open-files
        // limit, until the task ends.
        let _permit = (permit, capacity);
        // The socket is bound only inside the match: held across the session's await,
        // it would cost every task its size for the socket's whole life.
        let session = match ws::upgraded(on_upgrade, config).await {
            Some(socket) => session::run(socket, hub, room, settings, auth, url_token),
            None => return,
        };
        session.await
    }
    .instrument(span);
    tokio::spawn(task);
    switching
}

/// HTTP 503 for an upgrade past [`Capacity`]: the client retries with its backoff, by
/// when a socket here may have closed (or its next try lands on another instance).
fn at_capacity(capacity: &Capacity) -> Response {
    // Logged on the first refusal and then once per 1,000, not once per socket.
    if capacity.refused() % 1_000 == 1 {
        tracing::warn!(
            open = capacity.open(),
            limit = capacity.limit(),
            refused = capacity.refused(),
            "at the open-files limit: refusing new sockets with 503"
        );
    }
    let body = json!({"error": "at capacity: this instance holds all the sockets its open-files limit allows; retry later"});
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        Json(body),
    )
        .into_response()
}

async fn readyz(State(app): State<App>) -> Response {
    let health = app.hub.store().health();
    let ready = app.ready.load(Relaxed) && !app.hub.is_draining();
    // A store outage keeps the instance ready: it still serves its own sockets, and a
    // load balancer must not drop every instance at once.
    let body = json!({
        "ready": ready,
        "draining": app.hub.is_draining(),
        "instance": &**app.hub.store().instance(),
        "store": health,
        "sockets": {
            "open": app.capacity.open(),
            "max": app.capacity.limit(),
            "refused": app.capacity.refused(),
        },
        "warnings": &*app.warnings,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The `token` query parameter, percent-decoded (`None` when absent or not UTF-8).
fn query_token(query: &str) -> Option<Box<str>> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(String::into_boxed_str)
}

async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    if app.metrics_elsewhere {
        return not_found().await;
    }
    if let Some(refusal) = app.admin.check(&headers) {
        return refusal;
    }
    metrics_text(&app)
}

/// The METRICS_ADDR listener: a private port, so only ADMIN_TOKEN (when set) guards it.
async fn metrics_only(State(app): State<App>, headers: HeaderMap) -> Response {
    if app.admin.token.is_some() {
        if let Some(refusal) = app.admin.check(&headers) {
            return refusal;
        }
    }
    metrics_text(&app)
}

fn metrics_text(app: &App) -> Response {
    let (rooms, members) = app.hub.counts();
    let text = app
        .hub
        .metrics()
        .render(rooms, members, app.hub.store().health().connected);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn room_snapshot(
    State(app): State<App>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = app.admin.check(&headers) {
        return refusal;
    }
    if !RoomId::is_valid(&room) {
        let body = json!({"error": "invalid room id: 1-64 characters of a-z, 0-9 and -"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let presence = app.hub.snapshot(&RoomId::parse_or_lobby(&room)).await;
    let mut body = serde_json::to_value(&presence).unwrap_or_default();
    body["type"] = json!("presence");
    Json(body).into_response()
}

/// `GET /server/dev/token?name=Ada[&sub=..][&role=viewer][&rooms=a,b][&ttl=600]`: a token
/// for anyone who asks (`DEV_TOKENS=true`, development only). `sub` defaults to one made
/// from the name, so the same name on two devices is one user.
async fn dev_token(
    State(app): State<App>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    use crate::auth::{mint_hs256, now_secs, Claims, Identity, Role};
    let Some(dev) = app.dev_tokens.as_ref() else {
        return not_found().await;
    };
    let bad = |m: String| (StatusCode::BAD_REQUEST, Json(json!({"error": m}))).into_response();
    let name = q
        .get("name")
        .map(|n| n.trim().to_owned())
        .unwrap_or_default();
    if name.is_empty() {
        return bad("name is required".into());
    }
    let sub = q.get("sub").cloned().unwrap_or_else(|| {
        let slug: String = name
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-");
        format!("dev:{slug}")
    });
    let role = match q.get("role").map(String::as_str) {
        None | Some("member") => Role::Member,
        Some("viewer") => Role::Viewer,
        Some(_) => return bad("role must be member or viewer".into()),
    };
    let ttl = match q.get("ttl").map(|t| t.parse::<u64>()) {
        None => DEV_TOKEN_TTL_SECS,
        Some(Ok(t)) if (1..=MAX_DEV_TOKEN_TTL_SECS).contains(&t) => t,
        Some(_) => return bad(format!("ttl must be 1-{MAX_DEV_TOKEN_TTL_SECS} seconds")),
    };
    let claims = Claims {
        sub,
        exp: now_secs() + ttl,
        name: Some(name),
        avatar: q.get("avatar").cloned(),
        color: q.get("color").cloned(),
        rooms: q
            .get("rooms")
            .map(|r| r.split(',').map(str::to_owned).collect()),
        role: Some(role),
    };
    let identity = match Identity::from_claims(claims.clone()) {
        Ok(identity) => identity,
        Err(err) => return bad(err),
    };
    match mint_hs256(
        &dev.secret,
        &claims,
        dev.issuer.as_deref(),
        dev.audience.as_deref(),
    ) {
        Ok(token) => {
            Json(json!({"token": token, "id": identity.id, "exp": claims.exp})).into_response()
        }
        Err(err) => {
            tracing::error!(%err, "dev token signing failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "signing failed"})),
            )
                .into_response()
        }
    }
}

/// Lifetime of a development token: short, so the client's refresh runs while you watch.
const DEV_TOKEN_TTL_SECS: u64 = 600;
/// Longest development token.
const MAX_DEV_TOKEN_TTL_SECS: u64 = 3600;

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response()
}

async fn placeholder() -> Html<&'static str> {
    Html(PLACEHOLDER)
}

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>herenow</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:.1em .3em;border-radius:4px}</style></head>
<body><h1>herenow is running</h1>
<p>The presence server is up: WebSockets at <code>/server/ws/:roomId</code>, health at
<code>/server/healthz</code>, a room's roster at <code>/server/rooms/:roomId</code>.</p>
<p>This page is a placeholder because no demo app is being served. Build and serve it with
<code>make run</code>, or build it yourself (<code>npm ci &amp;&amp; npm run build --workspace apps/demo</code>)
and start herenow with <code>STATIC_DIR=apps/demo/dist</code>.</p></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_token_is_read_and_decoded() {
        assert_eq!(query_token("token=a.b.c").as_deref(), Some("a.b.c"));
        assert_eq!(
            query_token("x=1&token=a%2Eb%2ec&y").as_deref(),
            Some("a.b.c")
        );
        assert_eq!(query_token("tokens=a"), None);
        assert_eq!(query_token("token=%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(query_token("token=%ff"), None, "not UTF-8");
        assert_eq!(query_token("token=").as_deref(), Some(""));
    }

    #[test]
    fn admin_checks() {
        let h = |v: Option<&str>| {
            let mut m = HeaderMap::new();
            if let Some(v) = v {
                m.insert(header::AUTHORIZATION, v.parse().unwrap());
            }
            m
        };
        let open = Admin {
            token: None,
            closed: false,
        };
        assert!(open.check(&h(None)).is_none());
        let closed = Admin {
            token: None,
            closed: true,
        };
        assert_eq!(closed.check(&h(Some("Bearer x"))).unwrap().status(), 401);
        let guarded = Admin {
            token: Some("s3cret-admin-token".into()),
            closed: true,
        };
        assert!(guarded
            .check(&h(Some("Bearer s3cret-admin-token")))
            .is_none());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("s3cret-admin-token"),
            Some("Basic s3cret-admin-token"),
        ] {
            assert_eq!(guarded.check(&h(bad)).unwrap().status(), 401, "{bad:?}");
        }
    }
}
