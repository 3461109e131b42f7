//! herenow as a Vercel Function (the `server` service of vercel.json). The platform runs
//! this binary and sends it requests through `vercel_runtime`, which owns the listener
//! (127.0.0.1, on the port Vercel names) and passes WebSocket upgrades through; the
//! router, hub and stores are the library's, exactly as `herenow` serves them.
//!
//! Settings come from the project's environment variables, as for `herenow` (no env
//! files: Vercel sets the variables itself). On SIGTERM, when the platform retires the
//! instance, the runtime stops accepting and every socket is closed with 1012, so its
//! clients reconnect to another instance inside the grace window.

use clap::Parser;
use herenow::config::Config;
use tower::Layer;
use vercel_runtime::axum::VercelLayer;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.check().map_err(anyhow::Error::msg)?;
    config.log_format.init();
    herenow::capacity::raise_open_files_limit();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Settings that can never work (a Redis password refused) stop the start.
        let server = herenow::Server::from_config(&config)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let service = VercelLayer::new().layer(server.router());
        // Returns once SIGTERM stopped it accepting; the sockets are still open then.
        let served = vercel_runtime::run(service).await;
        server.drain().await;
        served.map_err(|e| anyhow::anyhow!("the Vercel runtime stopped: {e}"))
    })
}
