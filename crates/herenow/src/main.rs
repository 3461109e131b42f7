//! The `herenow` binary: configuration, logs, signals; everything else is the library.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use herenow::config::{Command, Config, LogFormat, TokenArgs};
use tokio::net::{TcpListener, TcpSocket};
use tracing_subscriber::EnvFilter;

/// Pending connections the kernel may queue: a burst of reconnects (an instance
/// restarting, a deploy) must not be refused. Capped by net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.check().map_err(anyhow::Error::msg)?;
    if let Some(Command::Token(args)) = &config.command {
        println!("{}", mint(&config, args)?);
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout carries the one listening line, whatever is logged
    // before it (connecting to Redis comes first).
    match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init(),
    }
    raise_open_files_limit();
    // Before listening: Redis settings that can never work stop the start, in one line.
    let store = herenow::store::open(&config).await.unwrap_or_else(|err| {
        eprintln!("error: {err}");
        std::process::exit(1)
    });
    let listener = bind(SocketAddr::new(config.host, config.port))
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    // The one stdout line: scripts and tests read the port from it.
    println!("herenow listening on http://{}", listener.local_addr()?);
    herenow::http::serve_with_store(listener, config, store, shutdown_signal()).await?;
    Ok(())
}

/// `herenow token`: an HS256 token with AUTH_SECRET, for AUTH_ISSUER and AUTH_AUDIENCE.
fn mint(config: &Config, args: &TokenArgs) -> anyhow::Result<String> {
    use herenow::auth::{mint_hs256, now_secs, Claims, Identity};
    let secret = config.auth_secret.as_deref().context(
        "herenow token needs AUTH_SECRET (at least 32 bytes; try: openssl rand -hex 32)",
    )?;
    let claims = Claims {
        sub: args.sub.clone(),
        exp: now_secs() + args.ttl.as_secs(),
        name: args.name.clone(),
        avatar: args.avatar.clone(),
        color: args.color.clone(),
        rooms: args.rooms.clone(),
        role: Some(args.role.into()),
    };
    // The checks a server applies, so a token printed here is one it accepts.
    Identity::from_claims(claims.clone()).map_err(anyhow::Error::msg)?;
    Ok(mint_hs256(
        secret,
        &claims,
        config.auth_issuer.as_deref(),
        config.auth_audience.as_deref(),
    )?)
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Every socket is a file: take the hard limit, not the (often 1024) soft one.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the open-files limit");
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
