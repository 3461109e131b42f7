//! herenow: room-based presence over WebSockets.
//!
//! ```text
//!  browser tab ──ws──▶ session.rs ──▶ hub.rs ──▶ store/ (PresenceStore trait)
//!   (one task per socket: reader,     (this process's    memory.rs: one process
//!    bounded outbox, membership       sockets per room,  redis.rs:  every instance,
//!    guard)                           roster mirror,     Lua scripts + pub/sub
//!                                     coalesced broadcast)
//! ```
//!
//! - [`protocol`]: the wire messages and their validation (golden examples in
//!   `fixtures/protocol/`).
//! - [`room`]: pure roster logic: entries per instance, versions, net diffs.
//! - [`store`]: the one seam between this process and "who is in the room everywhere".
//! - [`hub`]: sockets held by this process, per room; applies store changes in version
//!   order and broadcasts them, serialised once and throttled per room.
//! - [`session`]: one socket's lifetime, from hello to leave.
//! - [`outbox`]: a socket's bounded outbound queue.
//! - [`ws`]: the WebSocket handshake, and outgoing messages sent in shared fragments.
//! - [`rate`]: the token bucket behind rate limits and broadcast throttling.
//! - [`http`]: the router (`/server/ws/:roomId`, health, readiness, metrics, REST
//!   roster, static files), [`serve`] on a listener, and [`http::Server`] for an entry
//!   point that brings its own (the Vercel function, `crates/herenow-vercel`).
//! - [`config`]: every setting with its default, the command line and the env files;
//!   [`metrics`]: Prometheus counters.
//! - [`capacity`]: sockets against the open-files limit (HTTP 503 past it).
//! - [`healthcheck`]: `herenow healthcheck`, for containers.

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
