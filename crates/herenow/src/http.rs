//! The router and [`serve`]: everything lives under `/server` (Vercel forwards the
//! prefix as is), and every other GET serves the demo app when it is built.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};
use tracing::Instrument;

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
    capacity: Arc<Capacity>,
    warnings: Arc<[String]>,
}

/// The server without a listener: the router to mount wherever requests arrive (our own
/// listener in [`serve`], the platform's runtime in the Vercel entry point), and
/// [`Server::drain`] to call on shutdown.
pub struct Server {
    app: App,
    static_dir: Option<PathBuf>,
    drain: Duration,
}

impl Server {
    /// Build the server for `config` with the store it names (`REDIS_URL`, or memory).
    /// Needs a running Tokio runtime (the store and the hub start their tasks).
    pub fn from_config(config: &Config) -> Server {
        let instance = config
            .instance_id
            .clone()
            .unwrap_or_else(random_instance_id);
        Server::with_store(config, store::from_config(config, instance.into()))
    }

    /// Build the server on a given store (tests share one memory backend between servers).
    pub fn with_store(config: &Config, store: Arc<dyn PresenceStore>) -> Server {
        let hub = build_hub(config, store);
        let warnings: Arc<[String]> = config.warnings().into();
        for warning in warnings.iter() {
            tracing::warn!("{warning}");
        }
        let capacity = Capacity::from_open_files_limit();
        tracing::info!(instance = %hub.store().instance(), store = hub.store().health().kind, max_sockets = capacity.limit(), "starting");
        Server {
            app: App {
                hub,
                session: Arc::new(SessionSettings::from_config(config)),
                max_frame_bytes: config.max_frame_bytes,
                ready: Arc::new(AtomicBool::new(true)),
                capacity,
                warnings,
            },
            static_dir: config.static_dir.clone(),
            drain: config.drain(),
        }
    }

    /// Every route: `/server/...` and the demo app (or its placeholder) for the rest.
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
}

/// The one place the hub is built, on `store`.
fn build_hub(config: &Config, store: Arc<dyn PresenceStore>) -> Arc<Hub> {
    let metrics = Arc::new(Metrics::default());
    Hub::new(store, HubSettings::from_config(config), metrics)
}

/// Serve on an already-bound `listener` (tests bind port 0) until `shutdown` resolves,
/// then close every socket with 1012 and return within the drain time.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(listener, Server::from_config(&config), shutdown).await
}

/// [`serve`] with a given store (tests share one memory backend between servers).
pub async fn serve_with_store(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn PresenceStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(listener, Server::with_store(&config, store), shutdown).await
}

async fn run(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "serving");
    let router = server.router();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            server.drain().await;
        })
        .await
}

fn random_instance_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("i{n:016x}")
}

fn router(app: App, static_dir: Option<PathBuf>) -> Router {
    let api = Router::new()
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
    let (switching, on_upgrade) = match ws::accept(&mut req) {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.into_response(),
    };
    // Held by the socket's task: the place is given back when the socket is gone.
    let Some(permit) = app.capacity.try_acquire() else {
        return at_capacity(&app.capacity);
    };
    // The WebSocket layer's own hard limit sits above ours, so an oversized frame still
    // reaches the session and gets a clean 1009.
    let config = ws::config(
        app.max_frame_bytes * 4,
        app.session.outbox_bytes.max(64 * 1024) * 2,
    );
    let span = tracing::info_span!("socket", room = %room, id = tracing::field::Empty);
    let (hub, settings) = (app.hub, app.session);
    let task = async move {
        // The socket is bound only inside the match: held across the session's await,
        // it would cost every task its size for the socket's whole life.
        let session = match ws::upgraded(on_upgrade, config).await {
            Some(socket) => session::run(socket, hub, room, settings),
            None => return,
        };
        session.await;
        drop(permit);
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

async fn metrics(State(app): State<App>) -> Response {
    let (rooms, members) = app.hub.counts();
    let text = app
        .hub
        .metrics()
        .render(rooms, members, app.hub.store().health().connected);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn room_snapshot(State(app): State<App>, Path(room): Path<String>) -> Response {
    if !RoomId::is_valid(&room) {
        let body = json!({"error": "invalid room id: 1-64 characters of a-z, 0-9 and -"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let presence = app.hub.snapshot(&RoomId::parse_or_lobby(&room)).await;
    let mut body = serde_json::to_value(&presence).unwrap_or_default();
    body["type"] = json!("presence");
    Json(body).into_response()
}

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
