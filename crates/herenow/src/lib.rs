//! herenow: room-based presence over WebSockets.
//!
//! ```text
//!  browser tab ──ws──▶ session.rs ──▶ hub/ ──────────────▶ store/ (PresenceStore trait)
//!   (one task per socket: reader,     (this process's        memory.rs: one process
//!    bounded outbox, membership       sockets per room:      redis/:    every instance,
//!    guard)                           mirror, membership,               Lua scripts + pub/sub
//!                                     fan-out budget)        metered.rs: every call timed
//! ```
//!
//! - [`protocol`]: the wire messages and their validation (golden examples in
//!   `fixtures/protocol/`), and the server's close codes.
//! - [`room`]: pure roster logic: entries per instance, versions, net diffs.
//! - [`store`]: the one seam between this process and "who is in the room everywhere".
//! - [`hub`]: sockets held by this process, per room: a mirror of the store's roster in
//!   version order, this instance's members and their grace windows, and fan-out paced
//!   by one frame budget for the instance.
//! - [`session`]: one socket's lifetime, from hello to leave.
//! - [`outbox`]: a socket's bounded outbound queue.
//! - [`ws`]: the WebSocket handshake, and outgoing messages sent in shared fragments.
//! - [`rate`]: the token bucket behind the per-socket rate limit.
//! - [`http`]: the router (`/server/ws/:roomId`, health, readiness, metrics, REST
//!   roster, static files), [`serve`] on a listener, and [`http::Server`] for an entry
//!   point that brings its own (the Vercel function, `crates/herenow-vercel`).
//! - [`access`]: checks before the upgrade: origins, per-address limits, trusted proxies.
//! - [`auth`]: identity tokens (JWT, JWKS) and what they allow.
//! - [`capacity`]: sockets against the open-files limit (HTTP 503 past it).
//! - [`healthcheck`]: `herenow healthcheck`, for containers.
//! - [`config`]: every setting with its default, the command line and the env files;
//!   [`metrics`]: Prometheus counters.

pub mod access;
pub mod auth;
pub mod capacity;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod protocol;
pub mod rate;
pub mod room;
pub mod session;
pub mod store;
pub mod ws;

pub use http::{serve, Server};
